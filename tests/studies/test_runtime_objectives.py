"""Sweep objectives per runtime (``latency_ms@onnxruntime``): checked against the study's
``[measure] runtimes`` when it is read, and read from that runtime's unquantized row of a record."""

from __future__ import annotations

import pytest

from lfubench.studies.objectives import (
    MINIMIZE,
    RUNTIME_COSTS,
    FigureError,
    direction_of,
    record_figures,
    runtime_of,
)
from lfubench.studies.schema import MeasureSpec, PlanError

from ._plans import lits, measure, table, toml_text, train

#: latency (ms) of each (runtime, quantize) row of the fake record, all different
LATENCY = {("torch", "none"): 9.0, ("onnxruntime", "none"): 4.0, ("onnxruntime", "int8"): 2.5,
           ("openvino", "none"): 3.0}


def study(runtimes: str, minimize: str, constraints: str = "[]") -> str:
    return toml_text('name = "rt"\nseed = 0\nn_trials = 3', train(), measure(f"runtimes = {runtimes}"),
                     lits(),
                     table("[search]", 'family = ["unet"]', "base_width = [4, 8]"),
                     table("[objectives]", 'maximize = ["dice:mean"]', f"minimize = {minimize}",
                           f"constraints = {constraints}"),
                     table("[sampler]", 'name = "nsga2"', "seed = 0", "population_size = 2"))


def record(latency: dict = LATENCY, status: dict | None = None, dice: float = 0.8) -> dict:
    """A record like run_item's: one Dice row per region, one efficiency row per runtime x quantize."""
    metrics = [{"level": 0, "stage": "final", "case": "c0", "region": region, "metric": "dice", "value": dice}
               for region in ("liver", "tumor")]
    efficiency = [{"level": 0, "stage": "final", "batch": 1, "precision": "fp32", "params": 1000,
                   "gmacs": 0.1, "runtime": rt, "quantize": q, "latency_ms": ms,
                   "status": (status or {}).get((rt, q), "ok"),
                   "peak_mb": None if q == "int8" else 12.5, "model_peak_mb": None if q == "int8" else 12.5,
                   "peak_rss_mb": 800.0}
                  for (rt, q), ms in latency.items()]
    return {"value": dice, "metrics": metrics, "efficiency": efficiency, "train": {"seconds": 1.0}}


def test_each_runtime_but_eager_has_a_latency_objective():
    assert set(RUNTIME_COSTS) == {"latency_ms@compile", "latency_ms@onnxruntime", "latency_ms@openvino",
                                  "latency_ms@tensorrt"}
    assert all(direction_of(n) == MINIMIZE for n in RUNTIME_COSTS)
    assert direction_of("latency_ms@tvm") is None
    assert [runtime_of(n) for n in ("latency_ms", "latency_ms@openvino", "peak_mb")] == [
        "torch", "openvino", "torch"]


def test_figures_come_from_their_runtimes_unquantized_row():
    names = ["latency_ms", "latency_ms@onnxruntime", "latency_ms@openvino", "peak_mb", "params"]
    figs = record_figures(record(), names, MeasureSpec(runtimes=["torch", "onnxruntime", "openvino"],
                                                        quantize=["none", "int8"]))
    assert figs == {"latency_ms": 9.0, "latency_ms@onnxruntime": 4.0, "latency_ms@openvino": 3.0,
                    "peak_mb": 12.5, "params": 1000.0}  # not the int8 row's 2.5 ms, not the RSS


def test_a_failed_or_missing_runtime_row_fails_the_figure_not_another_runtimes():
    rec = record(status={("onnxruntime", "none"): "error"})
    assert record_figures(rec, ["latency_ms"], MeasureSpec()) == {"latency_ms": 9.0}
    with pytest.raises(FigureError, match=r"^latency_ms@onnxruntime: not measured \(error\)$"):
        record_figures(rec, ["latency_ms@onnxruntime"], MeasureSpec())
    old = record(latency={("torch", "none"): 7.0})  # a record made before runtimes were: eager's rows
    for r in old["efficiency"]:
        del r["runtime"], r["quantize"]
    figs = record_figures(old, ["latency_ms", "peak_mb"], MeasureSpec())
    assert figs == {"latency_ms": 7.0, "peak_mb": 12.5}
    with pytest.raises(FigureError, match=r"^latency_ms@compile: no efficiency figures in compile at batch"):
        record_figures(old, ["latency_ms@compile"], MeasureSpec())
    # peak_mb of a study without torch: the model's memory of the first unquantized row
    ort_only = record(latency={("onnxruntime", "int8"): 2.0, ("onnxruntime", "none"): 4.0})
    assert record_figures(ort_only, ["peak_mb"], MeasureSpec()) == {"peak_mb": 12.5}


def test_a_runtime_objective_the_study_does_not_measure_is_one_line_naming_it(tmp_path):
    from lfubench.studies.sweepfile import load_study

    path = tmp_path / "rt.toml"
    path.write_text(study('["torch", "onnxruntime"]',
                          '["latency_ms@openvino", "latency_ms@tvm", "peak_mb@onnxruntime"]',
                          '["latency_ms@compile <= 5", "latency_ms@onnxruntime <= 5"]'))
    with pytest.raises(PlanError) as info:
        load_study(path)
    at = f"{path}: [objectives]"
    assert str(info.value).splitlines() == [
        "4 problem(s) in study:",
        f"{at} minimize: 'latency_ms@openvino': runtime 'openvino' is not measured; [measure] runtimes = "
        "['torch', 'onnxruntime']; add 'openvino' there",
        f"{at} minimize: 'latency_ms@tvm': 'tvm' is not a runtime; latency_ms@RUNTIME with RUNTIME in "
        "compile, onnxruntime, openvino, tensorrt",
        f"{at} minimize: 'peak_mb@onnxruntime': only latency_ms is read per runtime (latency_ms@RUNTIME)",
        f"{at} constraints: 'latency_ms@compile': runtime 'compile' is not measured; [measure] runtimes = "
        "['torch', 'onnxruntime']; add 'compile' there",
    ]
    path.write_text(study('["onnxruntime"]', '["latency_ms"]'))
    with pytest.raises(PlanError, match=r"'latency_ms': runtime 'torch' is not measured \(plain "
                                        r"latency_ms is PyTorch eager's"):
        load_study(path)


def test_a_sweep_minimises_the_named_runtimes_latency(tmp_path):
    from lfubench.studies.sweep import Sweep, trials_frame
    from lfubench.studies.sweepfile import load_study

    path = tmp_path / "rt.toml"
    path.write_text(study('["torch", "onnxruntime"]', '["latency_ms@onnxruntime"]',
                          '["latency_ms@onnxruntime <= 4.5"]'))
    spec = load_study(path)
    assert spec.objectives.names == ["dice:mean", "latency_ms@onnxruntime"]
    assert spec.objectives.to_toml()["minimize"] == ["latency_ms@onnxruntime"]

    def evaluate(model, trial):  # onnxruntime's latency grows with the trial, eager's falls
        n = trial.number
        return record({("torch", "none"): 10.0 - n, ("onnxruntime", "none"): 3.0 + n}, dice=0.5 + 0.1 * n)

    sweep = Sweep(spec, f"sqlite:///{tmp_path}/s.db")
    assert sweep.run(evaluate) == {"complete": 3, "failed": 0, "pruned": 0}
    df = trials_frame(sweep.study, sweep.spec).sort_values("number")
    assert df["latency_ms@onnxruntime"].tolist() == [3.0, 4.0, 5.0]
    assert df["feasible"].tolist() == [True, True, False]  # 5.0 ms > 4.5
    assert [t.values[1] for t in sweep.study.trials] == [3.0, 4.0, 5.0]
