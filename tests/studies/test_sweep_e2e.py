"""The smoke study end to end: real training, evaluation and measurement of every trial, the
same record as a bench item, the front, and a re-run with nothing left to do."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from pypdf import PdfReader

from lfubench import models
from lfubench.bench.complexity import count_params
from lfubench.cli import main
from lfubench.studies.engine import make_storage
from lfubench.studies.records import collect

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_smoke_study_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    study = str(ROOT / "studies/sweeps/smoke.toml")
    assert main(["sweep", study, "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "sweep smoke: 4 complete, 0 failed, 0 pruned" in printed
    assert "Pareto front of sweep smoke: " in printed
    stored = optuna.load_study(study_name="smoke", storage=make_storage(f"sqlite:///{out}/study.db"))
    trials = stored.get_trials()
    reasons = [t.user_attrs.get("fail_reason") for t in trials]
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4, reasons
    assert sorted(t.user_attrs["slot"] for t in trials) == [0, 1, 2, 3]
    # every trial holds a bench item's record: the tidy tables read it as they read a plan
    results, efficiency, items = collect(trials)
    assert sorted(items["item"]) == sorted(t.user_attrs["item"] for t in trials)
    assert set(results["metric"]) == {"dice", "hd95"} and set(results["region"]) == {"liver", "tumor"}
    for t in trials:
        spec = t.user_attrs["spec"]
        figures = t.user_attrs["objectives"]
        assert t.values == [figures["dice:mean"], figures["params"]]
        mine = results[(results["item"] == t.user_attrs["item"]) & (results["metric"] == "dice")]
        top = mine[mine["level"] == mine["level"].max()]
        if "stage" in top:
            top = top[top["stage"] == "final"]
        assert figures["dice:mean"] == pytest.approx(top.groupby("region")["value"].mean().mean())
        kwargs = {k: v for k, v in spec.items() if k not in ("name", "label", "levels") and not k.startswith(
            ("prune_", "finetune_"))}
        full = count_params(models.create_model(spec["name"], in_channels=3, num_classes=3, **kwargs))
        if spec["prune_ratio"] == 0:
            assert figures["params"] == full
        else:
            assert figures["params"] <= full
        assert t.constraints == {"params <= 2000000": pytest.approx(figures["params"] - 2_000_000)}
    assert (out / "sweep" / "sweep_front.png").stat().st_size > 0
    # a second run has nothing left to do
    assert main(["sweep", study, "--out", str(out), "--no-progress", "--no-show"]) == 0
    assert "sweep smoke: 4 complete, 0 failed, 0 pruned" in capsys.readouterr().out
    assert len(stored.get_trials()) == 4
    # the paper-style report reads the sweep's folder: its trials as models, its front and figures
    assert main(["report", str(out)]) == 0
    text = " ".join(" ".join(page.extract_text().split()) for page in PdfReader(out / "report.pdf").pages)
    assert "Sweeps" in text and "the trials on the Pareto front" in text
    assert all(f"#{t.number} " in text for t in trials)  # every trial is a row of the results table
    for name in ("sweep_front", "sweep_history", "sweep_importance"):
        assert (out / "sweep_smoke" / f"{name}.pdf").stat().st_size > 0


def test_gp_sampler_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    sets = ["sampler.name=gp", "sampler.n_startup_trials=1", "n_trials=2"]
    assert main(["sweep", str(ROOT / "studies/sweeps/smoke.toml"), "--out", str(out), "--no-progress",
                 "--no-show", *[f"--set={s}" for s in sets]]) == 0
    assert "sweep smoke: 2 complete, 0 failed, 0 pruned" in capsys.readouterr().out
    stored = optuna.load_study(study_name="smoke", storage=make_storage(f"sqlite:///{out}/study.db"))
    assert [t.state for t in stored.get_trials()] == [TrialState.COMPLETE] * 2


def test_median_pruner_stops_a_trial_from_real_training(tmp_path, capsys, monkeypatch):
    """Real training reports every validation after epoch 0; trial 2's reports are planted
    below any Dice, so the median pruner stops it at its first validation."""
    import lfubench.studies.sweep as studies_sweep

    real = studies_sweep.pruning_reporter

    def planted(trial):
        report = real(trial)
        return lambda epoch, dice: report(epoch, -1.0 if trial.number == 2 else dice)

    monkeypatch.setattr(studies_sweep, "pruning_reporter", planted)
    out = tmp_path / "run"
    sets = ["n_trials=3", "train.epochs=2", "train.val_every=1", "objectives.minimize=[]", "sampler.name=tpe",
            "pruner.name=median", "pruner.n_startup_trials=2"]
    assert main(["sweep", str(ROOT / "studies/sweeps/smoke.toml"), "--out", str(out), "--no-progress",
                 *[f"--set={s}" for s in sets]]) == 0
    printed = capsys.readouterr().out
    assert "sweep smoke: 2 complete, 0 failed, 1 pruned" in printed
    assert "of 2 complete trials (0 failed, 1 pruned)" in printed
    stored = optuna.load_study(study_name="smoke", storage=make_storage(f"sqlite:///{out}/study.db"))
    trials = stored.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2 + [TrialState.PRUNED]
    for t in trials[:2]:  # the main run's validations, epoch 0 not reported
        history = t.user_attrs["train"]["history"]
        assert t.intermediate_values == {h["epoch"]: h["val_dice"] for h in history if h["epoch"] > 0}
        assert sorted(t.intermediate_values) == [1, 2]
    assert trials[2].intermediate_values == {1: -1.0} and trials[2].user_attrs["pruned_epoch"] == 1
