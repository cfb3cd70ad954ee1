"""A tiny plan measured in PyTorch and ONNX Runtime, unquantized and int8, through ``lfubench bench``
to its report: the efficiency rows of every runtime, the deployment table and the PDF."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from lfubench.cli import main

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
    assert "= Deployment" in (out / "report.typ").read_text()
    assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"
