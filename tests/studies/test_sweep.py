"""Sweeps: the study file and its validation, the conditional space, objectives and
constraints, the budget across workers and restarts, lost and failing trials.

Trials here run the fake item of :mod:`tests.studies.helpers` (no training); the multi-process
tests start that module as sweep workers.
"""

from __future__ import annotations

import math
import signal
import time
import warnings
from collections import Counter

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from lfubench import models
from lfubench.bench.complexity import count_params
from lfubench.bench.errors import LfubenchError
from lfubench.studies.engine import EngineConfig
from lfubench.studies.schema import PlanError
from lfubench.studies.space import families

from .helpers import ROOT, STUDY, complete_by_slot, fake_record, start_sweep_worker, write_study

# --- the study file ---------------------------------------------------------------------------


def test_smoke_study_file_reads_and_its_effective_form_reads_back_the_same(tmp_path):
    import tomli_w

    from lfubench.studies.sweepfile import load_study

    study = load_study(ROOT / "studies/sweeps/smoke.toml")
    assert study.settings.n_trials == 4 and study.sampler.name == "nsga2" and study.sampler.seed == 0
    assert study.objectives.names == ["dice:mean", "params"]
    assert study.objectives.directions == ["maximize", "minimize"]
    assert [c.text for c in study.objectives.constraints] == ["params <= 2000000"]
    assert study.space.families == ["lfunet", "unet"]
    again = tmp_path / "again.toml"
    again.write_text(tomli_w.dumps(study.to_dict()))
    assert load_study(again).to_dict() == study.to_dict()


@pytest.mark.parametrize("path", sorted((ROOT / "studies/sweeps").glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_studies_are_valid(path):
    from lfubench.studies.sweepfile import load_study

    study = load_study(path)
    assert study.sampler.name in ("nsga2", "tpe", "gp") and isinstance(study.sampler.seed, int)


def test_default_sampler_is_named_by_lfubench_not_optuna(tmp_path):
    from lfubench.studies.sweep import make_sampler
    from lfubench.studies.sweepfile import load_study

    text = STUDY.format(n_trials=3, constraints="[]").replace('name = "nsga2"\n', "")
    multi = load_study(write_study(tmp_path, text=text))
    assert multi.sampler.name == "nsga2"
    assert isinstance(make_sampler(multi.sampler, 2), optuna.samplers.NSGAIISampler)
    single = load_study(write_study(tmp_path, text=text), overrides=['objectives.minimize=[]'])
    assert single.sampler.name == "tpe"
    assert isinstance(make_sampler(single.sampler, 1), optuna.samplers.TPESampler)


BROKEN = """
name = "broken"
n_trials = 0
[train]
epochs = 1
[[datasets]]
name = "lits"
kind = "phantom-lits"
[[datasets]]
name = "lits2"
kind = "phantom-lits"
[search]
family = ["lfunet", "unte"]
base_width = [4, 6]
groups = [4]
prune_ratio = {low = 0.0, high = 0.95}
widht = 3
[objectives]
maximize = ["dice:mean", "hd95:liver", "dice:kidney"]
minimize = ["flops"]
constraints = ["params < 5", "latency_ms <= 5"]
[sampler]
name = "cmaes"
"""


def test_every_problem_of_a_study_file_is_one_line_naming_file_and_key(tmp_path):
    from lfubench.studies.sweepfile import load_study

    path = write_study(tmp_path, text=BROKEN)
    with pytest.raises(PlanError) as info:
        load_study(path)
    lines = str(info.value).splitlines()
    where = str(path)
    expected = [
        f"{where}: n_trials must be >= 1, got 0",
        f"{where}: a sweep takes one [[datasets]] entry (its objectives name its regions), got 2: "
        "lits, lits2",
        f"{where}: [search] prune_ratio: 0.95 is above 0.9",
        f"{where}: [search] family: 'unte' is not a model family a sweep can size (did you mean 'unet'?); "
        f"families: {', '.join(families())}",
        f"{where}: [objectives] maximize: 'hd95:liver' is to be minimized (list it under minimize)",
        f"{where}: [objectives] maximize: 'dice:kidney': region 'kidney' is not one of the dataset's regions "
        "(liver, tumor) or 'mean'",
        f"{where}: [objectives] minimize: 'flops' is not a figure; costs: params, gmacs, latency_ms, "
        "peak_mb, train_seconds; scores: METRIC:REGION with METRIC in dice, hd95",
        f"{where}: [objectives] constraints: 'params < 5' must look like 'FIGURE <= NUMBER' or "
        "'FIGURE >= NUMBER' (e.g. 'params <= 100_000')",
        f"{where}: [sampler]: name 'cmaes' is not one of nsga2, tpe, gp",
    ]
    for line in expected:
        assert line in lines, (line, lines)
    assert any(line.startswith(f"{where}: [search]: unknown key 'widht'") for line in lines), lines
    assert lines[0] == f"{len(lines) - 1} problem(s) in study:"
    assert len(lines) - 1 == 10  # nothing else, and nothing reported twice


def test_groups_that_divide_no_width_and_settings_no_family_takes_are_refused(tmp_path):
    from lfubench.studies.sweepfile import load_study

    text = STUDY.format(n_trials=2, constraints="[]").replace("groups = [1, 2, 4, 8]", "groups = [8]")
    with pytest.raises(PlanError, match=r"\[search\] groups: no value of \[8\] divides base_width 4, 12 of "
                                        r"'lfunet'; add 1 or narrow base_width"):
        load_study(write_study(tmp_path, text=text))
    text = STUDY.format(n_trials=2, constraints="[]").replace('family = ["lfunet", "unet", "unetpp"]',
                                                              'family = ["unet"]')
    with pytest.raises(PlanError) as info:
        load_study(write_study(tmp_path, text=text))
    lines = str(info.value).splitlines()
    at = f"{tmp_path / 'fake.toml'}: [search]"
    assert f"{at} groups: none of the families ['unet'] takes 'groups'" in lines
    assert f"{at} prune_level: none of the families ['unet'] takes 'prune_level'" in lines


def test_cli_prints_a_study_problem_as_one_line(tmp_path, capsys):
    from lfubench.cli import main

    path = write_study(tmp_path, text=STUDY.format(n_trials=2, constraints='["params <= 1k"]'))
    assert main(["sweep", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["lfubench sweep: error: 1 problem(s) in study:",
                   f"  {path}: [objectives] constraints: 'params <= 1k' must look like 'FIGURE <= NUMBER' or "
                   "'FIGURE >= NUMBER' (e.g. 'params <= 100_000')"]


# --- the conditional space --------------------------------------------------------------------


def test_conditional_space_never_draws_a_model_that_cannot_be_built(tmp_path):
    from lfubench.studies.sweepfile import load_study

    text = STUDY.format(n_trials=2, constraints="[]").replace(
        'family = ["lfunet", "unet", "unetpp"]', 'family = ["lfunet", "unet", "unetpp", "unet3p"]').replace(
        "base_width = [4, 8, 12]", "base_width = {low = 2, high = 16, step = 2}").replace(
        "prune_level = [2, 4]", "prune_level = [1, 2, 3, 4]\ndeep_supervision = [true, false]\n"
        'skip_mode = ["full", "nested"]\nprune_mode = ["finetune", "init"]\nfinetune_epochs = [1, 2]')
    space = load_study(write_study(tmp_path, text=text)).space
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=3))
    seen = Counter()
    for _ in range(120):
        trial = study.ask()
        spec = space.suggest(trial)  # Optuna raises if a name kept two distributions
        models.create_model(spec.name, in_channels=3, num_classes=3, **spec.kwargs)
        seen[spec.name] += 1
        width = spec.kwargs["base_width"]
        if spec.name == "lfunet":
            assert width % spec.kwargs["groups"] == 0
            groups_names = [k for k in trial.params if k.startswith("groups")]
            assert groups_names == [f"groups@w{width}"]
        else:
            assert "groups" not in spec.kwargs and "skip_mode" not in spec.kwargs
        if spec.name in ("unet", "unet3p"):
            assert "prune_level" not in spec.kwargs and "deep_supervision" not in spec.kwargs
        pruned = spec.prune_ratio > 0
        assert ("prune_mode" in trial.params) == pruned
        assert ("finetune_epochs" in trial.params) == (pruned and spec.prune_mode == "finetune")
        study.tell(trial, [0.5, 1.0])
    assert set(seen) == {"lfunet", "unet", "unetpp", "unet3p"}
    # widths 2, 6, 10 and 14 allow only groups 1 and 2: per-width names there, one name each
    names = {k for t in study.trials for k in t.params if k.startswith("groups")}
    assert "groups@w2" in names and "groups@w8" in names and "groups" not in names


@pytest.mark.parametrize("name", ["lits", "brats"])
def test_example_study_spaces_build_only_valid_models(name):
    """The shipped LiTS and BraTS studies: every drawn model builds for the dataset's channels
    and classes (each family runs at the study's input size), and each family has a model within
    the study's constraint."""
    import torch

    from lfubench.bench.datasets import get_dataset
    from lfubench.studies.sweepfile import load_study

    study = load_study(ROOT / f"studies/sweeps/{name}.toml")
    info = get_dataset(study.dataset.kind)
    assert study.dataset.dataset == name and study.space.families == ["lfunet", "unet", "unetpp"]
    assert study.objectives.names == ["dice:mean", "params"] and study.pruner.name == "none"
    optuna_study = optuna.create_study(directions=["maximize", "minimize"],
                                       sampler=optuna.samplers.RandomSampler(seed=0))
    built: dict[tuple, int] = {}
    for _ in range(40):
        trial = optuna_study.ask()
        spec = study.space.suggest(trial)
        key = (spec.name, tuple(sorted(spec.kwargs.items())))
        if key not in built:
            net = models.create_model(spec.name, in_channels=info.in_channels, num_classes=info.num_classes,
                                      **spec.kwargs).eval()
            if spec.name not in {f for f, _ in built}:  # one forward pass per family (a second each)
                with torch.no_grad():
                    out = net(torch.zeros(1, info.in_channels, study.dataset.size, study.dataset.size))
                assert out.shape == (1, info.num_classes, study.dataset.size, study.dataset.size)
            built[key] = count_params(net)
        kwargs = spec.kwargs
        if spec.name == "lfunet":
            assert kwargs["base_width"] in (8, 16) and kwargs["groups"] in (4, 8)
            assert kwargs["prune_level"] in (3, 4)
        else:
            assert kwargs["base_width"] in (2, 3, 4) and "groups" not in kwargs
            assert ("prune_level" in kwargs) == (spec.name == "unetpp")
        assert spec.prune_ratio in (0.0, 0.25, 0.5)
        optuna_study.tell(trial, [0.5, 1.0])
    families = {f for f, _ in built}
    assert families == {"lfunet", "unet", "unetpp"}
    # every family has a model within the constraint (params <= 150 000) before channel pruning
    for family in families:
        assert min(n for (f, _), n in built.items() if f == family) <= 150_000, family


def test_per_family_settings_override_the_shared_ones(tmp_path):
    from lfubench.studies.sweepfile import load_study

    text = STUDY.format(n_trials=2, constraints="[]") + "\n[search.unet]\nbase_width = [2, 3]\n"
    space = load_study(write_study(tmp_path, text=text)).space
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    widths = Counter()
    for _ in range(40):
        trial = study.ask()
        spec = space.suggest(trial)
        widths[(spec.name, spec.kwargs["base_width"])] += 1
        if spec.name == "unet":
            assert "unet.base_width" in trial.params and "base_width" not in trial.params
        study.tell(trial, 0.0)
    assert {w for f, w in widths if f == "unet"} == {2, 3}
    assert {w for f, w in widths if f != "unet"} == {4, 8, 12}


def test_set_a_per_family_search_setting_is_validated_like_the_file(tmp_path):
    from lfubench.studies.space import Param, model_arguments
    from lfubench.studies.sweepfile import load_study

    path = write_study(tmp_path, text=STUDY.format(n_trials=2, constraints="[]")
                       + "\n[search.unet]\nprune_ratio = 0.0\n")
    study = load_study(path, overrides=["search.unet.base_width=[2, 3]", "search.lfunet.groups=4"])
    assert study.space.per_family == {
        "unet": {"prune_ratio": Param("prune_ratio", float, fixed=0.0),
                 "base_width": Param("base_width", int, choices=(2, 3))},
        "lfunet": {"groups": Param("groups", int, fixed=4)}}
    assert study.to_dict()["search"]["unet"] == {"prune_ratio": 0.0, "base_width": [2, 3]}

    def problems(*overrides):
        with pytest.raises(PlanError) as info:
            load_study(path, overrides=list(overrides))
        return str(info.value).splitlines()

    at = f"{path}: [search.unet]"
    assert problems("search.unet.base_widht=3") == [
        "1 problem(s) in study:", f"{at}: unknown key 'base_widht' (did you mean 'base_width'?)"]
    assert problems("search.unet.groups=[1, 2]") == [
        "1 problem(s) in study:",
        f"{at} groups: model 'unet' has no argument 'groups'; its arguments: "
        + ", ".join(model_arguments("unet"))]
    assert problems("search.unet.base_width=[0, 2]") == ["1 problem(s) in study:",
                                                          f"{at} base_width: 0 is below 1"]
    assert problems("search.unet3p.base_width=2") == [
        "1 problem(s) in study:",
        f"{path}: [search.unet3p]: 'unet3p' is not among the searched families ['lfunet', 'unet', 'unetpp']"]
    assert problems("search.unte.base_width=2", "search.base_width.low=2", "train.epochz.x=1") == [
        "3 problem(s) in --set:",
        "--set 'train.epochz.x=1': 'train.epochz.x' is not a plan setting (use train.KEY, measure.KEY, "
        "search.KEY, objectives.KEY, sampler.KEY, pruner.KEY, datasets.NAME.KEY, models.LABEL.KEY or a "
        "top-level key)",
        "--set 'search.unte.base_width=2': 'unte' is not a model family (did you mean 'unet'?); families: "
        + ", ".join(families()),
        "--set 'search.base_width.low=2': use search.KEY=VALUE or search.FAMILY.KEY=VALUE (a setting of one "
        "family, as in a [search.FAMILY] table)"]


# --- objectives and constraints ---------------------------------------------------------------


def test_objective_figures_come_from_the_final_model_at_its_level():
    from lfubench.studies.objectives import FigureError, record_figures
    from lfubench.studies.schema import MeasureSpec, ModelSpec

    spec = ModelSpec(name="lfunet", kwargs={"base_width": 8, "groups": 4, "prune_level": 2})
    record = fake_record(spec)
    # a before-pruning stage and another level must not count
    record["metrics"].append({"level": 2, "stage": "before-pruning", "case": "c1", "region": "liver",
                              "metric": "dice", "value": 0.0})
    record["metrics"].append({"level": 1, "stage": "final", "case": "c1", "region": "liver",
                              "metric": "dice", "value": 0.0})
    measure = MeasureSpec(batch_sizes=[8, 1])
    figs = record_figures(record, ["dice:mean", "dice:liver", "hd95:tumor", "params", "latency_ms",
                                   "train_seconds"], measure)
    dice = 0.4 + 0.32 + 0.05
    assert figs["dice:liver"] == pytest.approx(dice + 0.1)
    assert figs["dice:mean"] == pytest.approx(dice)
    assert figs["hd95:tumor"] == pytest.approx(10 / 8)
    params = record["efficiency"][0]["params"]
    assert figs["params"] == params and figs["latency_ms"] == pytest.approx(0.008 * params)  # batch 8 first
    assert figs["train_seconds"] == 1.5
    for r in record["metrics"]:
        if r["metric"] == "hd95":
            r["value"] = math.nan
    with pytest.raises(FigureError, match="hd95:tumor: no finite value"):
        record_figures(record, ["hd95:tumor"], measure)


def _run_fake(tmp_path, n_trials=6, constraints="[]", fail_slot=None, storage=None):
    from lfubench.studies.sweep import Sweep
    from lfubench.studies.sweepfile import load_study

    study = load_study(write_study(tmp_path, n_trials=n_trials, constraints=constraints))
    storage = storage or f"sqlite:///{tmp_path}/s.db"

    def evaluate(spec, trial):
        if trial.user_attrs.get("slot") == fail_slot:
            raise FloatingPointError("training diverged: loss is nan at step 3")
        return fake_record(spec)

    sweep = Sweep(study, storage, EngineConfig(heartbeat_s=0.2, grace_s=30))
    return sweep, sweep.run(evaluate)


def test_constraints_mark_infeasible_trials_and_keep_them_off_the_front(tmp_path):
    from lfubench.studies.sweep import trials_frame

    sweep, counts = _run_fake(tmp_path, n_trials=8, constraints='["params <= 60_000", "dice:mean >= 0.5"]')
    assert counts == {"complete": 8, "failed": 0, "pruned": 0}
    df = trials_frame(sweep.study, sweep.spec)
    assert len(df) == 8
    expect = (df["params <= 60000"] <= 60000) & (df["dice:mean >= 0.5"] >= 0.5)
    assert (df["feasible"] == expect).all()
    assert 0 < expect.sum() < 8  # the space has both kinds
    assert set(df.loc[df["pareto"], "number"]) <= set(df.loc[df["feasible"], "number"])
    for t in sweep.study.trials:
        assert set(t.constraints) == {"params <= 60000", "dice:mean >= 0.5"}
        assert t.constraints["params <= 60000"] == pytest.approx(t.user_attrs["objectives"]["params"] - 60000)
    # the front is non-dominated among the feasible trials
    feas = df[df["feasible"]]
    for _, a in feas[feas["pareto"]].iterrows():
        assert not ((feas["dice:mean"] >= a["dice:mean"]) & (feas["params"] <= a["params"])
                    & ((feas["dice:mean"] > a["dice:mean"]) | (feas["params"] < a["params"]))).any()


def test_single_objective_mode_with_a_constraint(tmp_path):
    from lfubench.studies.sweep import Sweep, hypervolume_history, trials_frame
    from lfubench.studies.sweepfile import load_study

    study = load_study(write_study(tmp_path, n_trials=6, constraints='["params <= 130_000"]'),
                       overrides=["objectives.minimize=[]", "sampler.name=tpe", "sampler.n_startup_trials=3"])
    assert study.objectives.names == ["dice:mean"]
    sweep = Sweep(study, f"sqlite:///{tmp_path}/s.db")
    assert isinstance(sweep.study.sampler, optuna.samplers.TPESampler)
    assert sweep.run(lambda spec, trial: fake_record(spec)) == {"complete": 6, "failed": 0, "pruned": 0}
    df = trials_frame(sweep.study, study)
    feasible = df[df["feasible"]]
    assert len(feasible) and (feasible["params <= 130000"] <= 130000).all()
    best = df[df["pareto"]]  # the feasible trials of the best value (ties included)
    assert sweep.study.best_trial.number in set(best["number"]) and best["feasible"].all()
    assert (best["dice:mean"] == feasible["dice:mean"].max()).all()
    hv = hypervolume_history(df, study)
    assert list(hv.columns) == ["trials", "best"] and hv["best"].iloc[-1] == feasible["dice:mean"].max()


def test_a_failing_trial_is_recorded_and_the_study_goes_on_and_resumes_to_its_budget(tmp_path):
    from lfubench.studies.sweep import Sweep
    from lfubench.studies.sweepfile import load_study

    sweep, counts = _run_fake(tmp_path, n_trials=5, fail_slot=2)
    assert counts == {"complete": 4, "failed": 1, "pruned": 0}
    failed = sweep.study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 1 and failed[0].user_attrs["slot"] == 2
    reason = failed[0].user_attrs["fail_reason"]
    assert reason == "FloatingPointError: training diverged: loss is nan at step 3"
    # the budget holds across runs: nothing left to do ...
    _, again = _run_fake(tmp_path, n_trials=5)
    assert again == {"complete": 0, "failed": 0, "pruned": 0}
    # ... until it is raised
    study = load_study(write_study(tmp_path, n_trials=7))
    more = Sweep(study, f"sqlite:///{tmp_path}/s.db").run(lambda spec, trial: fake_record(spec))
    assert more == {"complete": 2, "failed": 0, "pruned": 0}
    slots = sorted(t.user_attrs["slot"] for t in sweep.study.get_trials())
    assert slots == list(range(7))


def test_a_timeout_alone_bounds_each_worker_and_a_rerun_goes_on(tmp_path):
    from lfubench.studies.sweep import Sweep
    from lfubench.studies.sweepfile import load_study

    text = STUDY.format(n_trials=1, constraints="[]").replace("n_trials = 1", "timeout = 0.5")
    study = load_study(write_study(tmp_path, text=text))
    assert study.settings.n_trials is None and study.settings.timeout == 0.5

    def evaluate(spec, trial):
        time.sleep(0.2)
        return fake_record(spec)

    t0 = time.monotonic()
    first = Sweep(study, f"sqlite:///{tmp_path}/s.db").run(evaluate)
    took = time.monotonic() - t0
    assert first["complete"] >= 1 and first["failed"] == 0
    assert took < 0.5 + took / first["complete"] + 2.0  # no trial starts after 0.5 s
    second = Sweep(study, f"sqlite:///{tmp_path}/s.db").run(evaluate)
    assert second["complete"] >= 1
    trials = Sweep(study, f"sqlite:///{tmp_path}/s.db").study.get_trials()
    assert len(trials) == first["complete"] + second["complete"]
    assert sorted(t.user_attrs["slot"] for t in trials) == list(range(len(trials)))


def test_an_objective_without_a_finite_value_fails_the_trial_with_its_reason(tmp_path):
    from lfubench.studies.sweep import Sweep
    from lfubench.studies.sweepfile import load_study

    study = load_study(write_study(tmp_path, n_trials=2), overrides=['objectives.minimize=["hd95:tumor"]'])

    def evaluate(spec, trial):
        record = fake_record(spec)
        for r in record["metrics"]:
            r["value"] = math.nan if r["metric"] == "hd95" else r["value"]
        return record

    sweep = Sweep(study, f"sqlite:///{tmp_path}/s.db")
    assert sweep.run(evaluate) == {"complete": 0, "failed": 2, "pruned": 0}
    reasons = {t.user_attrs["fail_reason"] for t in sweep.study.trials}
    assert reasons == {"objective hd95:tumor: no finite value in the trial's record (got nan)"}
    assert all("metrics" in t.user_attrs for t in sweep.study.trials)  # the record is kept


def test_a_study_of_another_objective_set_in_the_storage_is_refused(tmp_path):
    from lfubench.studies.sweep import Sweep
    from lfubench.studies.sweepfile import load_study

    _run_fake(tmp_path, n_trials=1)
    other = load_study(write_study(tmp_path, n_trials=1), overrides=['objectives.minimize=["gmacs"]'])
    with pytest.raises(LfubenchError, match=r"study 'fake' in this storage optimises \['dice:mean', "
                                            r"'params'\]"):
        Sweep(other, f"sqlite:///{tmp_path}/s.db")


def test_unreachable_storage_and_missing_driver_are_one_line(tmp_path):
    from lfubench.studies.sweep import Sweep
    from lfubench.studies.sweepfile import load_study

    study = load_study(write_study(tmp_path, n_trials=1))
    with pytest.raises(LfubenchError, match=r"^storage postgresql://u:\*\*\*@127.0.0.1:1/x: cannot connect"):
        Sweep(study, "postgresql://u:secret@127.0.0.1:1/x")
    with pytest.raises(LfubenchError,
                       match=r"^storage mysql://u:\*\*\*@h/x: its database driver is not installed"):
        Sweep(study, "mysql://u:secret@h/x")


# --- samplers and pruners ---------------------------------------------------------------------


def test_gp_sampler_runs_a_study_past_its_random_start(tmp_path):
    from lfubench.studies.sweep import Sweep
    from lfubench.studies.sweepfile import load_study

    study = load_study(write_study(tmp_path, n_trials=4, constraints='["params <= 130_000"]'),
                       overrides=["sampler.name=gp", "sampler.n_startup_trials=2"])
    sweep = Sweep(study, f"sqlite:///{tmp_path}/s.db")
    assert isinstance(sweep.study.sampler, optuna.samplers.GPSampler)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the conditional space draws quietly
        assert sweep.run(lambda spec, trial: fake_record(spec)) == {"complete": 4, "failed": 0, "pruned": 0}
    trials = sweep.study.get_trials()
    assert all(t.state == TrialState.COMPLETE and "family" in t.params for t in trials)
    assert len(trials) == 4


def _poor_trial_run_item(planted: int, calls: list):
    """A stand-in for run_item: validates at epochs 0-3 through ``on_validation`` (trial
    ``planted`` scores 0.05, the others 0.5 + 0.1 x epoch), then returns a fake record."""

    def run_item(item, plan, run_dir, progress=True, on_validation=None):
        calls.append([])
        poor = len(calls) - 1 == planted
        for epoch in range(4):
            calls[-1].append(epoch)
            if on_validation is not None:
                on_validation(epoch, 0.05 if poor else 0.5 + 0.1 * epoch)
        return fake_record(item.model)

    return run_item


def test_median_pruner_stops_a_planted_poor_trial_which_uses_its_slot(tmp_path, monkeypatch, capsys):
    from lfubench.cli import main
    from lfubench.studies import pipeline
    from lfubench.studies.sweep import Sweep, item_evaluator, trials_frame
    from lfubench.studies.sweepfile import load_study

    path = write_study(tmp_path, n_trials=5)
    overrides = ["objectives.minimize=[]", "sampler.name=tpe", "pruner.name=median",
                 "pruner.n_startup_trials=2"]
    study = load_study(path, overrides=overrides)
    assert study.pruner.name == "median" and study.pruner.n_warmup_steps == 0
    calls: list[list[int]] = []
    monkeypatch.setattr(pipeline, "run_item", _poor_trial_run_item(3, calls))
    storage = f"sqlite:///{tmp_path}/s.db"
    sweep = Sweep(study, storage)
    assert isinstance(sweep.study.pruner, optuna.pruners.MedianPruner)
    assert sweep.run(item_evaluator(study, tmp_path, progress=False)) == {"complete": 4, "failed": 0,
                                                                          "pruned": 1}
    # trial 3 reported epoch 1 (never epoch 0), fell below the median and stopped there
    assert calls == [[0, 1, 2, 3]] * 3 + [[0, 1]] + [[0, 1, 2, 3]]
    trials = sweep.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3 + [TrialState.PRUNED, TrialState.COMPLETE]
    pruned = trials[3]
    assert pruned.user_attrs["pruned_epoch"] == 1 and pruned.intermediate_values == {1: 0.05}
    assert "fail_reason" not in pruned.user_attrs and "objectives" not in pruned.user_attrs
    assert trials[0].intermediate_values == pytest.approx({1: 0.6, 2: 0.7, 3: 0.8})
    assert sweep.counts() == {"complete": 4, "failed": 0, "pruned": 1, "running": 0, "waiting": 0}
    df = trials_frame(sweep.study, study)
    row = df[df["number"] == 3].iloc[0]
    assert row["state"] == "pruned" and row["pruned_epoch"] == 1 and not row["feasible"]
    assert df.loc[df["number"] != 3, "pruned_epoch"].isna().all()
    # the pruned trial used up its slot: nothing is left to run
    assert Sweep(study, storage).run(item_evaluator(study, tmp_path)) == {"complete": 0, "failed": 0,
                                                                         "pruned": 0}
    assert len(calls) == 5
    # sweep show counts it
    assert main(["sweep", "show", str(path), "--storage", storage, "--out", str(tmp_path / "run"),
                 *[f"--set={o}" for o in overrides]]) == 0
    assert "of 4 complete trials (0 failed, 1 pruned)" in capsys.readouterr().out.splitlines()[0]
    written = pd.read_csv(tmp_path / "run" / "sweep" / "trials.csv")
    assert written.loc[written["state"] == "pruned", "pruned_epoch"].tolist() == [1]
    # without a pruner, training gets no callback and no trial is stopped
    plain = load_study(path, overrides=["objectives.minimize=[]"])
    calls.clear()
    monkeypatch.setattr(pipeline, "run_item", _poor_trial_run_item(0, calls))
    other = Sweep(plain, f"sqlite:///{tmp_path}/plain.db")
    assert other.run(item_evaluator(plain, tmp_path), max_trials=1) == {"complete": 1, "failed": 0,
                                                                       "pruned": 0}
    assert isinstance(other.study.pruner, optuna.pruners.NopPruner)
    assert other.study.get_trials()[0].intermediate_values == {}


def test_a_pruner_needs_one_maximized_objective(tmp_path):
    from lfubench.studies.sweep import make_pruner
    from lfubench.studies.sweepfile import load_study

    path = write_study(tmp_path, n_trials=2)

    def problems(*overrides):
        with pytest.raises(PlanError) as info:
            load_study(path, overrides=list(overrides))
        return str(info.value).splitlines()

    assert problems("pruner.name=median") == [
        "1 problem(s) in study:",
        f"{path}: [pruner] name 'median': pruners need one objective, the study has 2 (dice:mean, params); "
        "Optuna's Trial.report and should_prune raise for multi-objective studies (keep one objective, or "
        'name = "none")']
    assert problems("pruner.name=halving", "objectives.maximize=[]") == [
        "1 problem(s) in study:",
        f"{path}: [pruner] name 'halving': a pruner judges trials by validation Dice, which is maximized, "
        'but the objective params is minimized (name = "none", or maximize a dice score)']
    assert problems("pruner.name=hyperband", "pruner.reduction_factor=1") == [
        "2 problem(s) in study:",
        f"{path}: [pruner]: name 'hyperband' is not one of none, median, halving",
        f"{path}: [pruner]: reduction_factor must be >= 2, got 1"]
    halving = load_study(path, overrides=["objectives.minimize=[]", "pruner.name=halving",
                                          "pruner.min_resource=2"])
    assert isinstance(make_pruner(halving.pruner), optuna.pruners.SuccessiveHalvingPruner)
    assert halving.to_dict()["pruner"] == {"name": "halving", "n_startup_trials": 5, "n_warmup_steps": 0,
                                           "min_resource": 2, "reduction_factor": 3}


# --- several workers, lost workers ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_two_workers_run_exactly_n_trials(tmp_path, kind):
    storage = f"sqlite:///{tmp_path}/s.db" if kind == "sqlite" else f"journal:{tmp_path}/s.log"
    study = write_study(tmp_path, n_trials=6)
    log = tmp_path / "runs.log"
    procs = [start_sweep_worker(str(study), storage, log, 0.3) for _ in range(2)]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    starts = Counter(line.split()[2] for line in log.read_text().splitlines())
    assert starts == Counter({str(k): 1 for k in range(6)})  # every slot run once, by one worker
    done = complete_by_slot(study, storage)
    assert sorted(done) == list(range(6)) and all(len(v) == 1 for v in done.values())
    assert all("'complete': 0" not in o for o in outs), outs  # both took part
    # the first generation (random draws) of workers sharing one study seed holds no repeats:
    # each trial's sampler is seeded by the trial's number, not by the worker
    first = [tuple(sorted(done[k][0].params.items())) for k in range(4)]
    assert len(set(first)) == 4, first


def test_killed_worker_loses_only_its_trial_which_is_retried_with_its_parameters(tmp_path):
    storage = f"sqlite:///{tmp_path}/s.db"
    study = write_study(tmp_path, n_trials=4)
    log = tmp_path / "runs.log"
    first = start_sweep_worker(str(study), storage, log, 0.8)
    deadline = time.time() + 60
    while time.time() < deadline and not (log.exists() and "start 1 1" in log.read_text()):
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    time.sleep(2.0)  # past the grace period
    rerun = start_sweep_worker(str(study), storage, log, 0.05)
    assert rerun.communicate(timeout=120)[0].strip() == "{'complete': 3, 'failed': 0, 'pruned': 0}"
    done = complete_by_slot(study, storage)
    assert sorted(done) == [0, 1, 2, 3] and all(len(v) == 1 for v in done.values())
    from lfubench.studies.engine import make_storage

    stored = optuna.load_study(study_name="fake", storage=make_storage(storage))
    lost = stored.get_trials(states=(TrialState.FAIL,))
    assert len(lost) == 1 and lost[0].user_attrs["slot"] == 1 and lost[0].user_attrs["lost"] is True
    assert lost[0].user_attrs["fail_reason"].startswith("worker lost: no heartbeat for")
    retry = done[1][0]
    assert retry.user_attrs["retry_of"] == lost[0].number and retry.params == lost[0].params
    third = start_sweep_worker(str(study), storage, log, 0.05)
    assert third.communicate(timeout=60)[0].strip() == "{'complete': 0, 'failed': 0, 'pruned': 0}"



def test_the_families_a_sweep_can_size_are_the_models_with_a_width_but_no_presets():
    names = set(families())
    assert {"lfunet", "unet", "unet3p", "unetpp", "monai_basicunet", "nnunet_resenc", "smp_unet"} <= names
    assert not {"lfunet_deng2023", "unet_zhou2018", "unetpp_zhou2018", "unet3p_huang2020"} & names
