"""int8 post-training quantization (bench.quantize) and the MLPerf-style int8 gate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lfubench import models
from lfubench.bench.quantize import GATE, calibration_inputs, int8_gate

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install 'lfubench[onnx]')")


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
    strict = {g.region: g.passed for g in int8_gate(fp32, int8, threshold=0.999)}
    assert strict["liver"] is False and GATE == 0.99


def test_calibration_inputs_are_seeded():
    a, b = calibration_inputs((1, 3, 8, 8)), calibration_inputs((1, 3, 8, 8))
    assert len(a) == 8 and a[0].dtype == np.float32 and a[0].shape == (1, 3, 8, 8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], a[1])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from lfubench.bench.runtimes import export_onnx

    torch.manual_seed(0)
    model = models.create_model("unet", base_width=8).eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    path = export_onnx(model, x, tmp_path_factory.mktemp("int8") / "unet.onnx")
    with torch.inference_mode():
        ref = model(x).numpy()
    return path, x.numpy(), ref


def _agreement(out, ref):
    return float((out.argmax(1) == ref.argmax(1)).mean()), float(np.abs(out - ref).max())


def test_onnxruntime_int8_is_quantized_and_agrees_with_fp32(exported):
    pytest.importorskip("onnxruntime")
    from lfubench.bench.quantize import quantize_onnxruntime
    from lfubench.bench.runtimes import onnxruntime_session

    path, x, ref = exported
    q = quantize_onnxruntime(path, path.with_name("unet_int8.onnx"), calibration_inputs((1, 3, 32, 32)))
    graph = onnx.load(str(q)).graph
    ops = [n.op_type for n in graph.node]
    convs = ops.count("Conv")
    assert ops.count("QuantizeLinear") >= convs and ops.count("DequantizeLinear") >= 2 * convs
    weights = {i.name: i for i in graph.initializer}
    int8_weights = [w for w in weights.values() if w.data_type == onnx.TensorProto.INT8 and len(w.dims) == 4]
    assert len(int8_weights) == convs  # every convolution's weights are int8 ...
    per_channel = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights
                   and len(weights[n.input[0]].dims) == 4]
    assert all(len(weights[n.input[1]].dims) == 1 for n in per_channel)  # ... with one scale per channel
    assert q.stat().st_size < 0.5 * path.stat().st_size
    out = onnxruntime_session(q, torch.device("cpu"), threads=1, quantize="int8").run(x)
    agree, diff = _agreement(out, ref)
    assert agree >= 0.95 and 0 < diff < 0.1 * float(np.abs(ref).max())


def test_openvino_int8_runs_convolutions_in_int8_and_agrees_with_fp32(exported):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from lfubench.bench.quantize import quantize_openvino
    from lfubench.bench.runtimes import openvino_session

    path, x, ref = exported
    xml = quantize_openvino(path, path.with_name("unet_int8.xml"), calibration_inputs((1, 3, 32, 32)))
    assert xml.exists() and xml.with_suffix(".bin").exists()
    session = openvino_session(xml, batch=1, threads=1)
    assert "u8" in session.precision_used or "i8" in session.precision_used
    agree, diff = _agreement(session.run(x), ref)
    assert agree >= 0.95 and 0 < diff < 0.1 * float(np.abs(ref).max())
    assert not math.isnan(diff)


def test_empty_calibration_is_refused(exported):
    from lfubench.bench.quantize import quantize_onnxruntime

    with pytest.raises(ValueError, match="at least one input"):
        quantize_onnxruntime(exported[0], exported[0].with_name("x.onnx"), [])
