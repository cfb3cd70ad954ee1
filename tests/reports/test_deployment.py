"""Runtimes and quantization in the reports: the results table keeps PyTorch eager unquantized, the
deployment table shows every runtime, and the int8 gate (reports.gate) from the results' int8 rows."""

from __future__ import annotations

import pandas as pd
import pytest

from lfubench.reports.aggregate import aggregate, primary_config, series, wide
from lfubench.reports.captions import deployment_caption
from lfubench.reports.gate import GATE, GATE_HIGH, gate_frame, int8_gate
from lfubench.reports.schema import BASE_EFFICIENCY_COLUMNS, EFFICIENCY_COLUMNS, RESULT_COLUMNS, frame, row
from lfubench.reports.tables import deployment_display, deployment_frame, deploys, gated, to_markdown
from lfubench.reports.text import MISSING

KEY = dict(model="unet", label="a", dataset="lits", level=0, stage="final")


def _tables():
    results, eff = [], []
    for seed in (0, 1):
        item = dict(KEY, item=f"a|lits|s{seed}", seed=seed)
        results += [row(RESULT_COLUMNS, **item, case=f"c{c}", region="liver", metric="dice",
                        value=0.5 + c / 10, ref_empty=False, pred_empty=False) for c in range(3)]
        common = dict(item, params=100, gmacs=0.5, input="3x32x32", device="cpu", batch=1, precision="fp32",
                      p90_ms=None, peak_mb=10.0, precision_used="fp32", calibration=None,
                      argmax_agreement=1.0, model_file_mb=None, prepare_s=None, model_peak_mb=3.0,
                      peak_rss_mb=700.0, arithmetic_intensity=2.0, joules_per_image=None, error="")
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


#: planted per-seed Dice of three cases: fp32 (PyTorch eager) and the int8 models of two runtimes
PLANTED = {
    ("torch", "none"): {"liver": [[0.9, 0.8, 0.7], [0.8, 0.8, 0.8]],
                        "tumor": [[0.5, 0.5, None], [0.5, 0.5, 0.5]]},
    ("onnxruntime", "int8"): {"liver": [[0.9, 0.8, 0.69], [0.8, 0.8, 0.8]],
                              "tumor": [[0.45, 0.45, 0.0], [0.45, 0.45, 0.45]]},
    ("openvino", "int8"): {"liver": [[0.9, 0.8, 0.7], [0.8, 0.8, 0.8]],
                           "tumor": [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]},
}


def _planted_results():
    rows = []
    for (runtime, q), regions in PLANTED.items():
        for region, seeds in regions.items():
            for seed, values in enumerate(seeds):
                item = dict(KEY, item=f"a|lits|s{seed}", seed=seed)
                rows += [row(RESULT_COLUMNS, **item, runtime=runtime, quantize=q, case=f"c{c}", region=region,
                             metric=m, value=v if m == "dice" else 3.0, ref_empty=False, pred_empty=False)
                         for c, v in enumerate(values) for m in ("dice", "hd95")]
    return frame(rows, RESULT_COLUMNS)


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
    assert disp.name == "lits" and disp.caption == "lits: caption text"  # the caption names its dataset
    assert disp.columns == ["Model", "Level", "Runtime", "Quantize", "Batch", "Precision", "Latency (ms)",
                            "Max abs diff", "Model peak (MB)", "% of peak", "Status"]
    md = to_markdown([disp])
    assert "| onnxruntime | int8 " in md and "2.000e-06" in md
    assert not gated(frame_, "lits")  # no int8 scores, no gate columns


def test_tables_of_one_runtime_or_recorded_before_runtimes_have_no_deployment_table():
    results, eff = _tables()
    assert not deploys(eff[(eff["runtime"] == "torch") & (eff["quantize"] == "none")])
    old = eff[eff["runtime"] == "torch"][BASE_EFFICIENCY_COLUMNS].iloc[[1, 3]]  # no runtime columns
    assert not deploys(old)
    old = frame(old.to_dict("records"), EFFICIENCY_COLUMNS)  # read with the columns empty
    assert not deploys(old)
    assert series(aggregate(results, old), "latency_ms").tolist() == [2.5]


def test_gate_on_known_numbers():
    fp32 = {"liver": 0.950, "tumor": 0.600, "empty": 0.0, "missing": float("nan"), "absent": 0.5}
    int8 = {"liver": 0.9405, "tumor": 0.5930, "empty": 0.1, "missing": 0.4}
    gate = {g.region: g for g in int8_gate(fp32, int8)}
    assert list(gate) == list(fp32)
    assert gate["liver"].ratio == pytest.approx(0.99) and gate["liver"].passed  # exactly at 99%: passes
    assert gate["tumor"].ratio == pytest.approx(0.98833, abs=1e-5) and not gate["tumor"].passed
    assert gate["empty"].ratio is None and not gate["empty"].passed  # no fraction of 0
    assert gate["missing"].fp32_dice is None and not gate["missing"].passed
    assert gate["absent"].int8_dice is None and not gate["absent"].passed
    strict = {g.region: g.passed for g in int8_gate(fp32, int8, threshold=GATE_HIGH)}
    assert strict["liver"] is False and (GATE, GATE_HIGH) == (0.99, 0.999)


def test_gate_frame_pairs_cases_and_averages_seeds_as_the_results_table_does():
    gates = gate_frame(_planted_results()).set_index("runtime")
    assert list(gates.index) == ["onnxruntime", "openvino"] and set(gates["quantize"]) == {"int8"}
    ort = gates.loc["onnxruntime"]
    # liver: each case averaged over the seeds, then the mean over cases
    fp32_liver = ((0.9 + 0.8) / 2 + 0.8 + (0.7 + 0.8) / 2) / 3
    int8_liver = ((0.9 + 0.8) / 2 + 0.8 + (0.69 + 0.8) / 2) / 3
    assert ort["fp32 dice liver"] == pytest.approx(fp32_liver)
    assert ort["int8/fp32 dice liver"] == pytest.approx(int8_liver / fp32_liver)
    assert 0.99 <= ort["int8/fp32 dice liver"] < 0.999
    # tumor: case c2 of seed 0 has no fp32 value, so its int8 value (0) does not count either
    assert ort["int8 dice tumor"] == pytest.approx(0.45) and ort["int8/fp32 dice tumor"] == pytest.approx(0.9)
    assert ort["gate 99%"] == "fail" and ort["gate 99.9%"] == "fail"  # tumor fails both
    ov = gates.loc["openvino"]
    assert ov[["int8/fp32 dice liver", "int8/fp32 dice tumor"]].tolist() == pytest.approx([1.0, 1.0])
    assert ov["gate 99%"] == "pass" and ov["gate 99.9%"] == "pass"


def test_int8_rows_never_reach_the_results_table():
    results = _planted_results()
    fp32 = results[results["quantize"] == "none"]
    pd.testing.assert_frame_equal(wide(aggregate(results)), wide(aggregate(fp32)))
    old = fp32.drop(columns=["runtime", "quantize"])  # recorded before int8 was scored
    pd.testing.assert_frame_equal(wide(aggregate(old)), wide(aggregate(fp32)))
    assert gate_frame(old).empty
    read = frame(old.to_dict("records"), RESULT_COLUMNS)  # an old record read: the model as trained
    assert set(read["runtime"]) == {"torch"} and set(read["quantize"]) == {"none"}


def test_the_deployment_table_shows_the_gate_of_each_scored_int8_model():
    _, eff = _tables()
    # OpenVINO's int8 scored although its latency row could not be measured (it stays, for its gate)
    ov = eff[eff["runtime"] == "torch"].assign(runtime="openvino")
    eff = pd.concat([eff, ov.assign(status="unsupported", latency_ms=None)], ignore_index=True)
    frame_ = deployment_frame(eff, _planted_results())
    got = frame_.set_index(["runtime", "quantize"])
    assert sorted(got.index) == [("onnxruntime", "int8"), ("onnxruntime", "none"), ("openvino", "int8"),
                                 ("torch", "none")]  # not OpenVINO's unscored fp32 row
    assert got.loc[("onnxruntime", "int8"), "gate 99%"] == "fail"
    assert got.loc[("openvino", "int8"), "gate 99%"] == "pass"
    assert pd.isna(got.loc[("torch", "none"), "gate 99%"])
    assert gated(frame_, "lits")
    caption = deployment_caption(pd.DataFrame({"dataset": ["lits"], "conv_deployment": ["runtimes: ..."]}),
                                 "lits", gated=True)
    assert caption.startswith("lits: ") and "99%" in caption and "99.9%" in caption
    (disp,) = deployment_display(frame_, {"lits": caption})
    assert disp.caption == caption
    assert disp.columns[-4:] == ["int8/fp32 Dice liver", "int8/fp32 Dice tumor", "Gate 99%", "Gate 99.9%"]
    cells = {(r[2], r[3]): r[-4:] for r in disp.rows}
    assert cells[("onnxruntime", "int8")][1:] == ["0.9000", "fail", "fail"]
    assert cells[("openvino", "int8")][2:] == ["pass", "pass"]
    assert cells[("torch", "none")] == [MISSING] * 4
