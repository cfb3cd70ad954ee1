"""The smoke study end to end: real training, evaluation and measurement of every trial, the
same record as a bench item, the front, and a re-run with nothing left to do."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import models
from bench.complexity import count_params
from lfubench.cli import main
from studies.engine import make_storage
from studies.records import collect

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
