"""Objectives of a sweep: the figures read from a trial's record, and what a figure without a
value does to the trial (it fails, and stays off the Pareto front)."""

from __future__ import annotations

import math
import warnings

import optuna
import pytest
from optuna.trial import TrialState

from lfubench.studies.objectives import FigureError, record_figures
from lfubench.studies.schema import MeasureSpec

from ._plans import nsga2, study_text

STUDY = study_text("nan", 'family = ["unet"]\nbase_width = [4, 8]',
                   sampler=nsga2(2))


def record(liver: list[float], tumor: list[float], params: int = 1000) -> dict:
    """A record shaped like run_item's: one dice row per case and region at level 0."""
    metrics = []
    for region, values in (("liver", liver), ("tumor", tumor)):
        for k, value in enumerate(values):
            metrics.append({"level": 0, "stage": "final", "case": f"c{k}", "region": region,
                            "metric": "dice", "value": value})
    efficiency = [{"level": 0, "stage": "final", "batch": 1, "precision": "fp32", "params": params,
                   "gmacs": 0.1, "latency_ms": 1.0, "peak_mb": 5.0, "status": "ok"}]
    return {"value": 0.0, "metrics": metrics, "efficiency": efficiency, "train": {"seconds": 1.0}}


def test_mean_over_regions_averages_each_regions_case_mean():
    figs = record_figures(record([0.9, 0.7], [0.4, math.nan, 0.2]), ["dice:mean", "dice:tumor"],
                          MeasureSpec())
    assert figs["dice:tumor"] == pytest.approx(0.3)  # a NaN case is left out of its region's mean
    assert figs["dice:mean"] == pytest.approx((0.8 + 0.3) / 2)


@pytest.mark.parametrize("tumor", [[math.nan, math.nan], [None, None]])
def test_a_region_without_a_value_leaves_the_mean_without_one(tumor):
    """Averaging over the other regions only would score the model on its liver alone."""
    rec = record([0.9, 0.9], tumor)
    assert record_figures(rec, ["dice:liver"], MeasureSpec()) == {"dice:liver": pytest.approx(0.9)}
    with pytest.raises(FigureError, match=r"^dice:mean: region tumor has no finite value"):
        record_figures(rec, ["dice:mean"], MeasureSpec())
    with pytest.raises(FigureError, match=r"^dice:tumor: no finite value"):
        record_figures(rec, ["dice:tumor"], MeasureSpec())


def test_optuna_marks_a_trial_told_nan_as_failed():
    """What Optuna itself does with a NaN value (the objectives refuse it before, with a reason;
    either way the trial is FAIL, never COMPLETE)."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.tell(trial, [math.nan, 1.0])
    assert study.trials[0].state == TrialState.FAIL
    assert study.best_trials == []


def test_a_trial_with_an_all_nan_region_fails_and_stays_off_the_front(tmp_path):
    from lfubench.studies.sweep import Sweep, pareto_numbers, trials_frame
    from lfubench.studies.sweepfile import load_study

    path = tmp_path / "nan.toml"
    path.write_text(STUDY)
    study = load_study(path)

    def evaluate(spec, trial):
        if trial.number == 0:  # the best liver and the fewest parameters, but no tumor value
            return record([0.99, 0.99], [math.nan, math.nan], params=10)
        return record([0.8, 0.8], [0.5, 0.5], params=1000 + trial.number)

    sweep = Sweep(study, f"sqlite:///{tmp_path}/s.db")
    assert sweep.run(evaluate) == {"complete": 3, "failed": 1, "pruned": 0}
    failed = [t for t in sweep.study.trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [0]
    reason = failed[0].user_attrs["fail_reason"]
    assert reason.startswith("objective dice:mean: region tumor has no finite value"), reason
    assert 0 not in pareto_numbers(sweep.study)
    assert pareto_numbers(sweep.study) == {1}
    df = trials_frame(sweep.study, sweep.spec)
    assert not df.loc[df["number"] == 0, "pareto"].any()
