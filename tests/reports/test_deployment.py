"""Runtimes and quantization in the reports: the results table keeps PyTorch eager unquantized, the
deployment table shows every runtime."""

from __future__ import annotations

import pytest

from lfubench.reports.aggregate import aggregate, primary_config, series
from lfubench.reports.schema import BASE_EFFICIENCY_COLUMNS, EFFICIENCY_COLUMNS, RESULT_COLUMNS, frame, row
from lfubench.reports.tables import deployment_display, deployment_frame, deploys, to_markdown


def _tables():
    key = dict(model="unet", label="a", dataset="lits", level=0, stage="final")
    results, eff = [], []
    for seed in (0, 1):
        item = dict(key, item=f"a|lits|s{seed}", seed=seed)
        results += [row(RESULT_COLUMNS, **item, case=f"c{c}", region="liver", metric="dice",
                        value=0.5 + c / 10, ref_empty=False, pred_empty=False) for c in range(3)]
        common = dict(item, params=100, gmacs=0.5, input="3x32x32", device="cpu", batch=1, precision="fp32",
                      p90_ms=None, peak_mb=10.0, precision_used="fp32", calibration=None,
                      argmax_agreement=1.0, model_file_mb=None, prepare_s=None, model_peak_mb=3.0,
                      joules_per_image=None, error="")
        # the ONNX Runtime rows come first: the results table must still show torch's
        eff += [
            row(EFFICIENCY_COLUMNS, **common | dict(runtime="onnxruntime", quantize="none", latency_ms=1.0,
                max_abs_diff=1e-6 * (seed + 1), pct_of_peak=20.0, status="ok")),
            row(EFFICIENCY_COLUMNS, **common | dict(runtime="onnxruntime", quantize="int8", latency_ms=0.5,
                max_abs_diff=0.01, pct_of_peak=40.0, status="ok", model_peak_mb=None,
                calibration="8 training slices of lits")),
            row(EFFICIENCY_COLUMNS, **common | dict(runtime="torch", quantize="int8", latency_ms=None,
                max_abs_diff=None, pct_of_peak=None, status="unsupported", error="int8 is measured in ...")),
            row(EFFICIENCY_COLUMNS, **common | dict(runtime="torch", quantize="none", latency_ms=2.0 + seed,
                max_abs_diff=0.0, pct_of_peak=10.0, status="ok")),
        ]
    return frame(results, RESULT_COLUMNS), frame(eff, EFFICIENCY_COLUMNS)


def test_the_results_table_shows_pytorch_eager_unquantized():
    results, eff = _tables()
    assert primary_config(eff) == {"device": "cpu", "batch": 1, "precision": "fp32"}
    agg = aggregate(results, eff)
    assert series(agg, "latency_ms").tolist() == [2.5]  # torch's, mean over the seeds
    assert series(agg, "peak_mb").tolist() == [10.0]


def test_the_deployment_table_has_each_runtime_and_quantization():
    _, eff = _tables()
    assert deploys(eff)
    frame_ = deployment_frame(eff)
    got = frame_.set_index(["runtime", "quantize"])
    assert sorted(got.index) == [("onnxruntime", "int8"), ("onnxruntime", "none"), ("torch", "none")]
    assert got.loc[("onnxruntime", "none"), "max_abs_diff"] == pytest.approx(2e-6)  # the largest over seeds
    assert got.loc[("torch", "none"), "latency_ms"] == 2.5
    assert got.loc[("onnxruntime", "int8"), "pct_of_peak"] == 40.0
    (disp,) = deployment_display(frame_, "caption text")
    assert disp.name == "lits" and disp.caption == "caption text"
    assert disp.columns == ["Model", "Level", "Runtime", "Quantize", "Batch", "Precision", "Latency (ms)",
                            "Max abs diff", "Model peak (MB)", "% of peak", "Status"]
    md = to_markdown([disp])
    assert "| onnxruntime | int8 " in md and "2.000e-06" in md


def test_tables_of_one_runtime_or_recorded_before_runtimes_have_no_deployment_table():
    results, eff = _tables()
    assert not deploys(eff[(eff["runtime"] == "torch") & (eff["quantize"] == "none")])
    old = eff[eff["runtime"] == "torch"][BASE_EFFICIENCY_COLUMNS].iloc[[1, 3]]  # no runtime columns
    assert not deploys(old)
    old = frame(old.to_dict("records"), EFFICIENCY_COLUMNS)  # read with the columns empty
    assert not deploys(old)
    assert series(aggregate(results, old), "latency_ms").tolist() == [2.5]
