"""A tiny plan measured in PyTorch and ONNX Runtime, unquantized and int8, through ``lfubench bench``
to its report: the efficiency rows of every runtime, the int8 model scored on the test cases beside
the fp32 model, the deployment table with the int8 gate, and the PDF."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from lfubench.cli import main
from lfubench.reports.document import escape

from ._plans import TINY_SECTIONS

PLAN = TINY_SECTIONS.format(epochs=1).replace(
    "[measure]\n", '[measure]\nruntimes = ["torch", "onnxruntime"]\nquantize = ["none", "int8"]\n'
) + """
[[models]]
name = "unet"
base_width = 4
label = "U-Net w4"
"""


@pytest.mark.slow
def test_a_plan_measured_in_two_runtimes_reports_each(tmp_path):
    pytest.importorskip("onnxruntime")
    plan = tmp_path / "deploy.toml"
    plan.write_text(PLAN)
    out = tmp_path / "run"
    assert main(["bench", str(plan), "--out", str(out), "--no-progress"]) == 0

    eff = pd.read_csv(out / "efficiency.csv")
    assert len(eff) == 4  # one model, level and configuration x (torch, onnxruntime) x (none, int8)
    by = eff.set_index(["runtime", "quantize"])
    assert by.loc[("torch", "int8"), "status"] == "unsupported"  # int8 runs in the ONNX-based runtimes
    for runtime, q in [("torch", "none"), ("onnxruntime", "none"), ("onnxruntime", "int8")]:
        r = by.loc[(runtime, q)]
        assert r["status"] == "ok" and r["latency_ms"] > 0, (runtime, q, r["error"])
        assert math.isfinite(r["max_abs_diff"]) and math.isfinite(r["pct_of_peak"]) and r["pct_of_peak"] > 0
    assert by.loc[("torch", "none"), "max_abs_diff"] <= 1e-6  # channels_last against contiguous
    assert by.loc[("onnxruntime", "none"), "max_abs_diff"] <= 1e-4
    assert by.loc[("onnxruntime", "none"), "model_peak_mb"] == by.loc[("torch", "none"), "model_peak_mb"] > 0
    assert by.loc[("onnxruntime", "int8"), "calibration"] == "8 training slices of lits"
    assert pd.isna(by.loc[("onnxruntime", "none"), "calibration"]) and pd.isna(by.loc[("torch", "int8"),
                                                                                        "calibration"])
    assert by.loc[("onnxruntime", "int8"), "model_file_mb"] < by.loc[("onnxruntime", "none"), "model_file_mb"]

    # the results table shows PyTorch eager's latency, as a plan measuring torch alone would
    table = pd.read_csv(out / "table.csv")
    assert table.loc[0, "latency_ms"] == pytest.approx(by.loc[("torch", "none"), "latency_ms"])
    md = (out / "deployment.md").read_text()
    for text in ("U-Net w4", "| torch ", "| onnxruntime ", "| int8 ", "Max abs diff", "% of peak",
                 "Runtimes: torch = PyTorch eager", "int8: static post-training quantization"):
        assert text in md, text
    rows = pd.read_csv(out / "deployment.csv")
    assert sorted(zip(rows["runtime"], rows["quantize"], strict=True)) == [
        ("onnxruntime", "int8"), ("onnxruntime", "none"), ("torch", "none")]
    assert (out / "deployment.tex").read_text().count(r"\begin{table}") == 1
    typ = (out / "report.typ").read_text()
    assert "= Deployment" in typ
    assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"

    # the int8 model scored on the test cases by the same evaluation, beside the fp32 model's rows
    res = pd.read_csv(out / "results.csv")
    assert sorted(set(zip(res["runtime"], res["quantize"], strict=True))) == [("onnxruntime", "int8"),
                                                                              ("torch", "none")]
    key = ["case", "region", "metric"]
    fp32 = res[res["quantize"] == "none"].set_index(key)["value"]
    int8 = res[res["quantize"] == "int8"].set_index(key)["value"]
    assert list(int8.index) == list(fp32.index) and len(fp32) == 4  # one test case x 2 regions x 2 metrics
    dice_fp32, dice_int8 = fp32.xs("dice", level="metric"), int8.xs("dice", level="metric")
    assert dice_fp32.max() > 0 and (dice_int8 - dice_fp32).abs().max() < 0.05
    # the results table is the fp32 model's alone
    assert table.loc[0, "dice liver"] == pytest.approx(dice_fp32.xs("liver", level="region").mean())
    # the gate: int8 Dice / fp32 Dice per region (one test case: the ratio of its values)
    gate = rows[rows["quantize"] == "int8"].iloc[0]
    verdict = True
    for region in ("liver", "tumor"):
        a, b = dice_int8.xs(region, level="region").mean(), dice_fp32.xs(region, level="region").mean()
        if b > 0:
            assert gate[f"int8/fp32 dice {region}"] == pytest.approx(a / b)
        verdict &= b > 0 and a / b >= 0.99
    assert gate["gate 99%"] == ("pass" if verdict else "fail")
    assert pd.isna(rows[rows["quantize"] == "none"]["gate 99%"]).all()
    for text in ("int8/fp32 Dice liver", "int8/fp32 Dice tumor", "Gate 99%", "Gate 99.9%", "lits: Each"):
        assert text in md and escape(text) in typ, text  # in the PDF's source too, its caption naming lits
