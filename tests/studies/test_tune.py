"""Equal tuning (a plan's ``[tune]``, :mod:`studies.tune`): the section's validation, the choice
made on validation Dice only (a planted case where validation and test disagree), the same search
and budget for every model, the record, the items table and the report's section."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from lfubench.bench import train as train_module
from lfubench.bench.train import TrainConfig, TrainingDiverged, TrainResult
from lfubench.cli import main
from lfubench.reports.document import Doc
from lfubench.reports.inputs import ReportInputs
from lfubench.reports.record import ItemRecord
from lfubench.reports.schema import ITEM_COLUMNS, TUNE_COLUMNS
from lfubench.reports.sections import tuning_section
from lfubench.studies import tune as tune_module
from lfubench.studies.pipeline import dataset_cache, run_item
from lfubench.studies.plan import PlanError, load_plan
from lfubench.studies.records import item_row
from lfubench.studies.schema import TuneSpec

from ..reports.fake import fake_run
from ._plans import TINY_SECTIONS, table

UNET = """[[models]]
name = "unet"
label = "U-Net w4"
base_width = 4
"""
MODELS = UNET + """[[models]]
name = "lfunet"
label = "LFU-Net w8"
"""


def plan_text(tune: str | None, train_steps: int = 2, models: str = MODELS) -> str:
    """The tiny plan (one LiTS phantom, CPU) at ``train_steps`` steps, with a ``[tune]`` of
    ``tune`` (its keys; None: no section)."""
    text = 'name = "tuned"' + TINY_SECTIONS.format(epochs=1).replace("epochs = 1", f"steps = {train_steps}")
    if tune is not None:
        text += table("[tune]", tune)
    return text + models


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


# --- the section ---------------------------------------------------------------------------------


def test_tune_section_is_read_with_its_defaults(tmp_path):
    plan = load_plan(write(tmp_path, plan_text("lr = [1e-3, 1, 0.03]\nbatch_size = [4, 8]")))
    assert plan.tune.search == {"lr": [0.001, 1.0, 0.03], "batch_size": [4, 8]}
    assert all(isinstance(v, float) for v in plan.tune.lr) and plan.tune.steps is None
    assert plan.to_dict()["tune"] == {"lr": [0.001, 1.0, 0.03], "batch_size": [4, 8]}
    assert [t for t in tune_module.grid(plan.tune)][:3] == [{"lr": 0.001, "batch_size": 4},
                                                             {"lr": 0.001, "batch_size": 8},
                                                             {"lr": 1.0, "batch_size": 4}]
    again = load_plan(write(tmp_path, plan_text(None)), overrides=["tune.lr=[0.01, 0.1]", "tune.steps=5"])
    assert again.tune.search == {"lr": [0.01, 0.1]} and again.tune.steps == 5
    assert again.to_dict()["tune"] == {"lr": [0.01, 0.1], "steps": 5}


def test_no_tune_section_is_the_plan_of_before(tmp_path):
    plan = load_plan(write(tmp_path, plan_text(None)))
    assert plan.tune is None and "tune" not in plan.to_dict()


@pytest.mark.parametrize("keys, line", [
    ("lr = []", "[tune]: lr must have at least 1 item(s), got 0"),
    ("lr = [0.0, 0.01]", "[tune]: lr items must be > 0, got 0.0"),
    ("lr = [-1e-3]", "[tune]: lr items must be > 0, got -0.001"),
    ("lr = [0.01, 0.01]", "[tune]: lr has duplicates: [0.01, 0.01]"),
    ("lr = 0.01", "[tune]: lr must be a list of numbers or absent, got 0.01"),
    ("batch_size = [0, 4]", "[tune]: batch_size items must be >= 1, got 0"),
    ("weight_decay = [-0.1]", "[tune]: weight_decay items must be >= 0, got -0.1"),
    ("lr = [0.01]\nsteps = 0", "[tune]: steps must be >= 1, got 0"),
    ("lrs = [0.01]", "[tune]: unknown key 'lrs' (did you mean 'lr'?)"),
    ("steps = 10", "[tune]: nothing to search; list values of at least one of lr, batch_size, weight_decay"),
])
def test_a_bad_tune_key_is_one_line_naming_it(tmp_path, keys, line):
    with pytest.raises(PlanError) as info:
        load_plan(write(tmp_path, plan_text(keys)))
    lines = str(info.value).splitlines()
    assert lines[0] == "1 problem(s) in plan:"
    assert len(lines) == 2 and lines[1].startswith(str(tmp_path / "plan.toml")) and line in lines[1]


def test_tune_section_must_be_a_table(tmp_path):
    text = plan_text(None).replace('name = "tuned"', 'name = "tuned"\ntune = [0.01]')
    with pytest.raises(PlanError, match=r"\[tune\]: expected a table, got \[0.01\]"):
        load_plan(write(tmp_path, text))


# --- the search, with a fake training function ----------------------------------------------------


class FakeTrain:
    """A stand-in for :func:`bench.train.train`: a trial's best validation Dice is ``scores[lr]``
    (an lr in ``diverges`` raises :class:`TrainingDiverged` at step 3), its last training loss
    ``losses[lr]`` (default 1.0); records each call."""

    def __init__(self, scores: dict[float, float], diverges=(),
                 losses: dict[float, float] | None = None) -> None:
        self.scores, self.diverges, self.calls = scores, set(diverges), []
        self.losses = losses or {}

    def __call__(self, model, train_set, val_set, num_classes, config, out_dir, *, on_validation=None):
        self.calls.append((config, Path(out_dir), on_validation))
        if config.lr in self.diverges:
            raise TrainingDiverged("loss became nan at step 3 (epoch 1)", 3)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        ckpt = Path(out_dir) / "best.pt"
        torch.save(model.state_dict(), ckpt)
        steps = config.steps or config.epochs * 10
        history = [{"epoch": 1, "step": steps, "loss": self.losses.get(config.lr, 1.0)}]
        return TrainResult(best_score=self.scores[config.lr], best_epoch=1, epochs_run=1, steps_run=steps,
                           seconds=0.5, checkpoint=str(ckpt), history=history)


def _tuned(monkeypatch, tmp_path, fake, spec, config=None, on_validation=None):
    monkeypatch.setattr(tune_module, "train", fake)
    config = config or TrainConfig(steps=8, lr=0.5)
    return tune_module.train_tuned(torch.nn.Linear(2, 2), [0], [0], 2, config, spec, tmp_path, item="m|d|s0",
                                   train_budget="8 steps, batch 16", on_validation=on_validation)


def test_a_tie_in_validation_dice_goes_to_the_lower_last_training_loss_then_to_the_grid_order(
        monkeypatch, tmp_path):
    spec = TuneSpec(lr=[1e-3, 1e-2, 1e-1], steps=3)
    fake = FakeTrain({1e-3: 0.0, 1e-2: 0.0, 1e-1: 0.0}, losses={1e-3: 0.9, 1e-2: 0.4, 1e-1: 0.6})
    tuned = _tuned(monkeypatch, tmp_path / "losses", fake, spec)
    assert tuned.record["tuned_lr"] == 1e-2 and tuned.record["trial"] == 1
    assert [t["last_loss"] for t in tuned.record["trials"]] == [0.9, 0.4, 0.6]
    # a better validation Dice still wins over a lower loss
    fake = FakeTrain({1e-3: 0.3, 1e-2: 0.2, 1e-1: 0.0}, losses={1e-3: 0.9, 1e-2: 0.4, 1e-1: 0.1})
    assert _tuned(monkeypatch, tmp_path / "dice", fake, spec).record["tuned_lr"] == 1e-3
    # equal on both: the first in the grid
    fake = FakeTrain({1e-3: 0.0, 1e-2: 0.0, 1e-1: 0.0})
    assert _tuned(monkeypatch, tmp_path / "grid", fake, spec).record["tuned_lr"] == 1e-3


def test_retrains_with_the_winner_at_the_training_budget(monkeypatch, tmp_path):
    fake = FakeTrain({1e-3: 0.4, 1e-2: 0.7, 1e-1: 0.2})
    hook = []
    spec = TuneSpec(lr=[1e-3, 1e-2, 1e-1], steps=3)
    tuned = _tuned(monkeypatch, tmp_path, fake, spec, on_validation=hook.append)
    trials = [c for c, out, _ in fake.calls if "tune" in out.parts]
    assert [c.lr for c in trials] == [1e-3, 1e-2, 1e-1] and all(c.steps == 3 for c in trials)
    final, out, hooked = fake.calls[-1]
    assert final.lr == 1e-2 and final.steps == 8 and out == tmp_path and hooked == hook.append
    assert all(h is None for _, _, h in fake.calls[:-1])  # a sweep's pruner sees the final run only
    assert tuned.config.lr == 1e-2 and tuned.result.steps_run == 8
    rec = tuned.record
    assert rec["tuned_lr"] == 1e-2 and rec["val_dice"] == 0.7 and rec["trial"] == 1 and not rec["kept"]
    assert [t["val_dice"] for t in rec["trials"]] == [0.4, 0.7, 0.2]
    assert rec["steps"] == 9 and rec["seconds"] == 1.5 and rec["trial_budget"] == "3 steps"
    assert "tuned_batch_size" not in rec and rec["search"] == {"lr": [1e-3, 1e-2, 1e-1]}
    assert "lr {0.001, 0.01, 0.1} (3 trials), each trial 3 steps" in rec["protocol"]
    assert "trained afresh with the chosen values" in rec["protocol"]


def test_keeps_the_winning_trial_when_its_budget_is_the_training_budget(monkeypatch, tmp_path, caplog):
    fake = FakeTrain({1e-3: 0.4, 1e-2: 0.7})
    with caplog.at_level("INFO", logger="lfubench.studies.tune"):
        tuned = _tuned(monkeypatch, tmp_path, fake, TuneSpec(lr=[1e-3, 1e-2], batch_size=[4, 8]))
    assert len(fake.calls) == 4 and all("tune" in out.parts for _, out, _ in fake.calls)  # no retraining
    assert [(c.lr, c.batch_size, c.steps) for c, _, _ in fake.calls] == [
        (1e-3, 4, 8), (1e-3, 8, 8), (1e-2, 4, 8), (1e-2, 8, 8)]
    rec = tuned.record
    assert rec["kept"] and rec["tuned_lr"] == 1e-2 and rec["tuned_batch_size"] == 4  # tie: first in grid
    assert tuned.result.checkpoint == str(tmp_path / "best.pt") and (tmp_path / "best.pt").is_file()
    assert tuned.config.lr == 1e-2 and tuned.config.batch_size == 4 and tuned.config.steps == 8
    assert rec["steps"] == 32 and rec["trial_budget"] == "the training budget (8 steps, batch 16)"
    assert ("m|d|s0: tuning chose lr 0.01, batch_size 4 (validation Dice 0.7000; 4 trials: lr 0.001, "
            "batch_size 4: 0.4000;") in caplog.text and "the winning trial is kept" in caplog.text


def test_a_diverged_trial_loses_and_counts_its_steps(monkeypatch, tmp_path):
    fake = FakeTrain({1e-3: 0.4, 1e-1: 0.9}, diverges={1e-1})
    tuned = _tuned(monkeypatch, tmp_path, fake, TuneSpec(lr=[1e-1, 1e-3], steps=8))
    rec = tuned.record
    assert rec["tuned_lr"] == 1e-3 and rec["trials"][0]["diverged"].startswith("loss became nan at step 3")
    assert rec["trials"][0]["val_dice"] is None and rec["trials"][0]["steps"] == 4 and rec["steps"] == 12
    with pytest.raises(TrainingDiverged, match=r"m\|d\|s0: every tuning trial diverged \(lr 0.1: loss"):
        _tuned(monkeypatch, tmp_path, FakeTrain({}, diverges={1e-1}), TuneSpec(lr=[1e-1]))


def test_without_tune_training_is_one_plain_run(monkeypatch, tmp_path):
    fake = FakeTrain({0.5: 0.3})
    tuned = _tuned(monkeypatch, tmp_path, fake, None)
    assert len(fake.calls) == 1 and fake.calls[0][1] == tmp_path and tuned.record is None
    assert tuned.config == TrainConfig(steps=8, lr=0.5)


# --- the planted case: validation and test disagree ------------------------------------------------

#: the planted scores: 0.01 wins on the test cases, 0.001 on the validation cases
VAL = {1e-3: 0.8, 1e-2: 0.3}
TEST = {1e-3: 0.2, 1e-2: 0.9}


def test_the_choice_is_made_on_validation_cases_never_test_cases(monkeypatch, tmp_path):
    """A scorer that knows which cases it scores prefers lr 0.01 on the test cases and 0.001 on the
    validation cases; every slice a tuning trial trains or validates on is checked against the
    split."""
    plan = load_plan(write(tmp_path, plan_text("lr = [0.001, 0.01]\nsteps = 2", train_steps=3, models=UNET)))
    run_dir = tmp_path / "run"
    cache, splits = dataset_cache(plan.datasets[0], run_dir)
    case_of = {int(i): cid for cid in cache.case_ids for i in cache.case_indices(cid)}
    test, val = set(splits["test"]), set(splits["val"])
    assert test and val and not test & val
    state = {"lr": None, "phase": None}
    seen: dict[str, list[set]] = {"tune-train": [], "tune-val": [], "final-val": []}
    real_train = tune_module.train

    def spying_train(model, train_set, val_set, num_classes, config, out_dir, **kw):
        state["lr"], state["phase"] = config.lr, "tune" if "tune" in Path(out_dir).parts else "final"
        if state["phase"] == "tune":
            seen["tune-train"].append({case_of[int(i)] for i in train_set.indices})
        return real_train(model, train_set, val_set, num_classes, config, out_dir, **kw)

    def planted_scorer(model, loader, num_classes, device):
        cases = {case_of[int(i)] for i in loader.dataset.indices}
        seen[f"{state['phase']}-val"].append(cases)
        return (TEST if cases <= test else VAL)[state["lr"]]

    monkeypatch.setattr(tune_module, "train", spying_train)
    monkeypatch.setattr(train_module, "validation_dice", planted_scorer)
    rec = run_item(plan.items()[0], plan, run_dir, progress=False)
    assert rec.tuning["tuned_lr"] == 1e-3  # the validation winner, not the test winner (0.01)
    assert [t["val_dice"] for t in rec.tuning["trials"]] == [VAL[1e-3], VAL[1e-2]]
    assert seen["tune-val"] and all(cases == val for cases in seen["tune-val"])
    assert seen["tune-train"] and all(not cases & (test | val) for cases in seen["tune-train"])
    assert rec.train["config"]["lr"] == 1e-3 and rec.train["steps"] == 3  # retrained at [train]'s budget
    assert [t["steps"] for t in rec.tuning["trials"]] == [2, 2] and rec.tuning["steps"] == 4
    row = item_row(rec)
    assert row["tuned_lr"] == 1e-3 and row["tune_trials"] == 2 and row["tune_steps"] == 4
    assert row["tuned_batch_size"] is None and row["tune_protocol"] == rec.tuning["protocol"]


def test_every_model_gets_the_same_search_and_budget(tmp_path):
    """Two models of one plan: the same values tried, the same steps per trial; each winner kept."""
    plan = load_plan(write(tmp_path, plan_text("lr = [0.001, 0.01]")))
    recs = [run_item(item, plan, tmp_path / "run", progress=False) for item in plan.items()]
    assert [r.label for r in recs] == ["U-Net w4", "LFU-Net w8"]
    a, b = (r.tuning for r in recs)
    assert [t["lr"] for t in a["trials"]] == [t["lr"] for t in b["trials"]] == [1e-3, 1e-2]
    assert [t["steps"] for t in a["trials"]] == [t["steps"] for t in b["trials"]] == [2, 2]
    assert a["steps"] == b["steps"] == 4 and a["protocol"] == b["protocol"] and a["kept"] and b["kept"]
    for rec in recs:
        scores = [t["val_dice"] for t in rec.tuning["trials"]]
        assert rec.tuning["tuned_lr"] == rec.tuning["trials"][scores.index(max(scores))]["lr"]
        assert rec.train["best_val_dice"] == max(scores) and rec.train["steps"] == 2
        delivered = Path(rec.checkpoint)  # the winning trial's weights, in the item folder
        assert delivered.name == "best.pt" and "tune" not in delivered.parts
        winner = torch.load(delivered.parent / "tune" / f"trial-{rec.tuning['trial']}" / "best.pt")
        assert all(torch.equal(v, winner[k]) for k, v in torch.load(delivered).items())


# --- the record, the items table and the report ---------------------------------------------------


def test_the_record_keeps_its_tuning_and_old_records_still_load():
    tuning = {"tuned_lr": 0.01, "val_dice": 0.5, "trials": [{"lr": 0.01, "val_dice": 0.5, "steps": 2,
                                                             "seconds": 1.0, "diverged": None}],
              "steps": 2, "seconds": 1.0, "protocol": "tuning: ..."}
    rec = ItemRecord(item="m|d|s0", metrics=[{"item": "m|d|s0"}], tuning=tuning)
    assert ItemRecord.from_attrs(rec.to_attrs()).tuning == tuning
    old = {k: v for k, v in rec.to_attrs().items() if k != "tuning"}
    assert ItemRecord.from_attrs(old).tuning is None
    train = {"best_val_dice": 0.5, "best_epoch": 1, "epochs": 1, "steps": 2, "seconds": 1.0}
    row = item_row({**old, "train": train})
    assert all(row[c] is None for c in TUNE_COLUMNS) and list(row) == ITEM_COLUMNS


def _inputs(tuned: dict | None) -> ReportInputs:
    results, efficiency, items = fake_run(overlays=False, seeds=(0, 1))
    if tuned:
        for column, values in tuned.items():
            items[column] = values
    return ReportInputs(results, efficiency, items)


def test_report_states_the_search_and_each_models_choice():
    n = 8  # 4 models x 2 seeds, in the fake run's order (model outer, seed inner)
    lr = [0.01, 0.01, 0.03, 0.001, 0.003, 0.003, 0.01, 0.01]
    doc = Doc()
    protocol = ["tuning: every model searched"] * n
    tuning_section(doc, _inputs({"tuned_lr": lr, "tune_trials": [4] * n, "tune_steps": [400] * n,
                                 "tune_seconds": [10.0] * n, "tune_protocol": protocol}))
    text = "".join(doc.parts).replace("\\", "")  # Typst's escapes left out
    assert "= Tuning" in text and text.count("Tuning: every model searched") == 1
    assert "[U-Net w8], [0.01]" in text
    assert "[0.03 (s0), 0.001 (s1)]" in text  # a choice per seed where the seeds differ
    assert "weight decay" not in text and "batch size" not in text  # settings not searched have no column
    assert "Tuning spent 3,200 steps and 80.00 s in all over 8 items" in text
    empty = Doc()
    tuning_section(empty, _inputs(None))
    assert empty.parts == []


@pytest.mark.slow
def test_bench_with_tune_records_and_reports_the_choice(tmp_path, caplog):
    path = write(tmp_path, plan_text("lr = [0.001, 0.01]\nsteps = 1", train_steps=2))
    out = tmp_path / "run"
    with caplog.at_level("INFO", logger="lfubench.studies.tune"):
        assert main(["bench", str(path), "--out", str(out), "--no-progress"]) == 0
    items = pd.read_csv(out / "items.csv").set_index("label")
    assert set(items["tuned_lr"]) <= {0.001, 0.01} and items["tuned_lr"].notna().all()
    assert (items["tune_trials"] == 2).all() and (items["tune_steps"] == 2).all()
    assert items["tuned_batch_size"].isna().all() and (items["steps"] == 2).all()
    for label in ("U-Net w4", "LFU-Net w8"):
        assert f"{label}|lits|s0: tuning chose lr {items.loc[label, 'tuned_lr']:g}" in caplog.text
    typ = (out / "report.typ").read_text().replace("\\", "")
    assert "= Tuning" in typ and "lr {0.001, 0.01} (2 trials), each trial 1 step from" in typ
    for label in ("U-Net w4", "LFU-Net w8"):
        assert f"[{label}], [{items.loc[label, 'tuned_lr']:g}]" in typ
    assert math.isfinite(items["tune_seconds"].sum()) and (out / "report.pdf").stat().st_size > 0
