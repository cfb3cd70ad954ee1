"""A user's own model in a plan and a sweep study: built and dry-run when the file is read, and
each problem one line naming the entry."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState

from lfubench import models
from lfubench.bench.complexity import count_params
from lfubench.bench.train import seed_everything
from lfubench.cli import main
from lfubench.studies.engine import make_storage
from lfubench.studies.plan import PlanError, load_plan
from lfubench.studies.run import Run
from lfubench.studies.sweepfile import load_study

from ..models.user_model_helpers import write_user_module
from ._plans import TINY_SECTIONS, study_text, table


@pytest.fixture
def mod(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    return write_user_module(tmp_path)


def plan_file(tmp_path, *models: str) -> str:
    """A tiny plan (the LiTS phantom at 32 x 32) with ``models``, each the keys of one entry."""
    text = 'name = "mine"' + TINY_SECTIONS.format(epochs=1) + "".join(
        table("[[models]]", m) for m in models)
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return str(path)


def test_a_plan_takes_user_models_by_reference(tmp_path, mod):
    plan = load_plan(plan_file(tmp_path, f'name = "{mod}:build"',
                               f'name = "{mod}:build_heads"\nlabel = "heads"\nbase_width = 6',
                               'name = "unet"\nbase_width = 4'))
    assert [m.name for m in plan.models] == [f"{mod}:build", f"{mod}:build_heads", "unet"]
    assert [m.label for m in plan.models] == [f"{mod}:build", "heads", "unet base_width=4"]
    assert plan.models[1].kwargs == {"base_width": 6}


@pytest.mark.parametrize("entry,problem", [
    ('name = "no_such_module_xyz:build"',
     "name 'no_such_module_xyz:build': module 'no_such_module_xyz' not found"),
    ('name = "{mod}:missing"', "name '{mod}:missing': module '{mod}' has no 'missing'"),
    ('name = "{mod}:build_raises"',
     "name '{mod}:build_raises': building it raised ValueError: base_width 4 is too narrow"),
    ('name = "{mod}:build"\ndepth = 3',
     "name '{mod}:build': it takes no argument 'depth'; its arguments: in_channels, num_classes, base_width"),
    ('name = "{mod}:build_halves"', "name '{mod}:build_halves': forward of a 1x3x32x32 input returned "
                                    "1x3x16x16; expected 1x3x32x32"),
    ('name = "{mod}:build"\nprune_level = 2',
     "name '{mod}:build': prune_level needs a model with pruning levels, and '{mod}:build' has none (its "
     "arguments: in_channels, num_classes, base_width)"),
    ('name = "{mod}:build_ignoring"\nprune_level = 2',
     "name '{mod}:build_ignoring': prune_level needs a model with pruning levels (an integer prune_level "
     "and load_from_full), and it has none"),
    ('name = "{mod}:build_heads"\nlevels = [1, 2]',
     "name '{mod}:build_heads': levels needs a model with pruning levels"),
    ('name = "{mod}:build"\nin_channels = 1', "key 'in_channels' is not a plan setting here: the dataset"),
])
def test_each_problem_of_a_user_model_is_one_line_naming_the_entry(tmp_path, mod, entry, problem):
    path = plan_file(tmp_path, 'name = "unet"\nbase_width = 4', entry.format(mod=mod))
    with pytest.raises(PlanError) as err:
        load_plan(path)
    lines = str(err.value).splitlines()
    assert len(lines) == 2 and lines[0] == "1 problem(s) in plan:", lines
    assert lines[1].startswith(f"{path}: models[1]: {problem.format(mod=mod)}"), lines[1]


def test_a_sweep_searches_a_user_family_over_the_settings_its_callable_names(tmp_path, mod):
    path = tmp_path / "study.toml"
    path.write_text(study_text("mine", f'family = ["unet", "{mod}:build", "{mod}:build_ignoring"]\n'
                                       f'base_width = [2, 4]\n[search."{mod}:build"]\nbase_width = [3, 5]'))
    study = load_study(path)
    space = study.space
    assert space.families == ["unet", f"{mod}:build", f"{mod}:build_ignoring"]
    assert sorted(s.kwargs["base_width"] for s in space.combinations(f"{mod}:build")) == [3, 5]
    assert [s.kwargs for s in space.combinations(f"{mod}:build_ignoring")] == [{}]  # **options: none applies
    assert space.param(f"{mod}:build", "base_width")[0] == f"{mod}:build.base_width"
    over = load_study(path, [f"search.{mod}:build.base_width=[7]"])
    assert [s.kwargs for s in over.space.combinations(f"{mod}:build")] == [{"base_width": 7}]


def test_a_sweep_refuses_a_user_family_that_cannot_be_imported_or_run(tmp_path, mod):
    path = tmp_path / "study.toml"
    path.write_text(study_text("mine", f'family = ["no_such_module_xyz:build", "{mod}:build_halves"]'))
    with pytest.raises(PlanError) as err:
        load_study(path)
    lines = str(err.value).splitlines()
    assert lines[0] == "1 problem(s) in study:" and len(lines) == 2, lines
    assert lines[1] == (f"{path}: [search] family 'no_such_module_xyz:build': module "
                        "'no_such_module_xyz' not found (not installed, nor in the working folder "
                        f"{Path.cwd()})")
    path.write_text(study_text("mine", f'family = ["{mod}:build_halves"]'))
    with pytest.raises(PlanError) as err:
        load_study(path)
    assert str(err.value).splitlines()[1] == (
        f"{path}: [search] {mod}:build_halves: name '{mod}:build_halves': forward of a 1x3x32x32 input "
        "returned 1x3x16x16; expected 1x3x32x32 (batch, num_classes 3, the input's height and width) (1 of 1 "
        f"of {mod}:build_halves's combinations)")


@pytest.mark.slow
def test_user_models_go_through_a_plan_end_to_end(tmp_path, mod, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)  # the working folder holds the module, as a user's would
    path = plan_file(tmp_path, f'name = "{mod}:build_heads"\nlabel = "heads"\nbase_width = 6',
                     f'name = "{mod}:build"\nlabel = "plain"')
    text = Path(path).read_text().replace("[measure]\n", '[measure]\nruntimes = ["torch", "onnxruntime"]\n')
    Path(path).write_text(text)
    out = tmp_path / "run"
    assert main(["bench", path, "--out", str(out), "--no-progress"]) == 0
    tidy = pd.read_parquet(out / "results.parquet")
    assert set(tidy["label"]) == {"heads", "plain"} and set(tidy["model"]) == {f"{mod}:build_heads",
                                                                                f"{mod}:build"}
    assert set(tidy["level"]) == {0} and set(tidy["region"]) == {"liver", "tumor"}
    assert tidy["value"].notna().any()
    eff = pd.read_csv(out / "efficiency.csv")
    assert (eff["status"] == "ok").all() and sorted(eff["runtime"]) == ["onnxruntime", "onnxruntime", "torch",
                                                                         "torch"]
    heads = eff[(eff["label"] == "heads") & (eff["runtime"] == "torch")].iloc[0]
    rebuilt = models.create_model(f"{mod}:build_heads", in_channels=3, num_classes=3, base_width=6)
    assert heads["params"] == count_params(rebuilt) and heads["gmacs"] > 0
    assert (eff.loc[eff["runtime"] == "onnxruntime", "max_abs_diff"] < 1e-4).all()
    items = pd.read_csv(out / "items.csv")
    assert sorted(items["item"]) == ["heads|lits|s0", "plain|lits|s0"] and (items["train_seconds"] > 0).all()
    assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"
    item = Run(out).item_dir("heads|lits|s0")
    config = json.loads((item / "model.json").read_text())
    assert config == {"name": f"{mod}:build_heads", "in_channels": 3, "num_classes": 3, "base_width": 6}
    # deep supervision: training went through forward_heads, so the auxiliary head, which forward does
    # not use (and an optimizer leaves alone without a gradient), learned too
    trained = torch.load(item / "best.pt", map_location="cpu")
    seed_everything(0)  # the item's seed: the weights it started from
    initial = models.create_model(**config).state_dict()
    assert trained.keys() == initial.keys()
    assert not torch.equal(trained["aux.weight"], initial["aux.weight"])


@pytest.mark.slow
def test_a_sweep_over_a_user_family_runs_its_trials(tmp_path, mod, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "study.toml"
    path.write_text(study_text("mine", f'family = ["{mod}:build_heads"]\nbase_width = [2, 6]', n_trials=2))
    out = tmp_path / "run"
    assert main(["sweep", str(path), "--out", str(out), "--no-progress"]) == 0
    stored = optuna.load_study(study_name="mine", storage=make_storage(f"sqlite:///{out}/study.db"))
    trials = stored.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2, [t.user_attrs.get("fail_reason")
                                                                    for t in trials]
    for t in trials:
        spec, width = t.user_attrs["spec"], t.params["base_width"]
        assert spec["name"] == f"{mod}:build_heads" and spec["base_width"] == width and width in (2, 6)
        built = models.create_model(f"{mod}:build_heads", base_width=width)
        assert t.user_attrs["objectives"]["params"] == count_params(built)
