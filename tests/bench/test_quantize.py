"""int8 post-training quantization (bench.quantize), the int8 models scored through the evaluation
(bench.evaluate) and the MLPerf-style gate (reports.gate) from those scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from lfubench import models
from lfubench.bench.data import PreprocessConfig, open_cache, prepare_cache, write_phantom
from lfubench.bench.evaluate import evaluate_cases
from lfubench.bench.quantize import SCORED_RUNTIMES, calibration_inputs, int8_predictor
from lfubench.reports.gate import GATE, GATE_HIGH, gate_frame
from lfubench.reports.schema import RESULT_COLUMNS, frame, row

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install 'lfubench[onnx]')")


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


# --- the int8 model scored, and the gate from its scores --------------------------------------------


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """LiTS phantoms cached at 32 x 32, and a small network fitted to their slices: a fixed random
    3x3 convolution and ReLU, then a 1x1 convolution solved by weighted least squares against the
    one-hot labels (a real liver Dice in a fraction of a second, not a planted one)."""
    root = tmp_path_factory.mktemp("int8_lits")
    write_phantom("lits", root, cases=3, shape=(48, 40, 11), seed=3)
    cache = open_cache(prepare_cache("lits", root, tmp_path_factory.mktemp("int8_lits_cache"),
                                     PreprocessConfig("lits", size=32)))
    x, y = cache.read_batch(np.arange(len(cache)))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 1)).eval()
    with torch.no_grad():
        features = net[1](net[0](torch.from_numpy(x))).permute(0, 2, 3, 1).reshape(-1, 16).numpy()
        features = np.hstack([features, np.ones((len(features), 1), np.float32)])
        weight = np.sqrt(np.array([1.0, 4.0, 16.0], np.float32)[y.ravel()])[:, None]  # rarer: heavier
        target = np.eye(3, dtype=np.float32)[y.ravel()]
        solved = np.linalg.lstsq(features * weight, target * weight, rcond=None)[0]
        net[2].weight.copy_(10 * torch.from_numpy(np.ascontiguousarray(solved[:16].T)).reshape(3, 16, 1, 1))
        net[2].bias.copy_(10 * torch.from_numpy(np.ascontiguousarray(solved[16])))
    return cache, net, x


def _results(rows, runtime, quantize):
    key = dict(item="i", model="m", label="m", dataset="lits", seed=0, level=0, stage="final")
    return [row(RESULT_COLUMNS, **key, runtime=runtime, quantize=quantize, **r) for r in rows]


def _mean_dice(rows, region, cases):
    return float(np.mean([r["value"] for r in rows if r["metric"] == "dice" and r["region"] == region
                          and r["case"] in cases]))


@pytest.mark.parametrize("runtime", SCORED_RUNTIMES)
def test_the_int8_model_is_scored_by_the_evaluation_and_gated_on_those_scores(fitted, runtime, tmp_path):
    pytest.importorskip(runtime)
    if runtime == "openvino":
        pytest.importorskip("nncf")
    from lfubench.bench.runtimes import Artifacts

    cache, net, x = fitted
    ids = cache.case_ids
    fp32 = evaluate_cases(net, cache, ids, channels_last=False)
    artifacts = Artifacts(net, torch.zeros(1, 3, 32, 32), tmp_path, [a[None] for a in x[::4][:8]])
    predict = int8_predictor(artifacts, runtime, threads=1)
    with torch.no_grad():
        logits = net(torch.from_numpy(x[:5])).numpy()
    diff = np.abs(predict(x[:5]) - logits).max()
    assert 0 < diff < 0.1 * np.abs(logits).max()  # the quantized model, not the fp32 one
    int8 = evaluate_cases(predict, cache, ids)
    assert [(r["case"], r["region"], r["metric"]) for r in int8] == [(r["case"], r["region"], r["metric"])
                                                                     for r in fp32]
    assert _mean_dice(fp32, "liver", ids) > 0.4  # a fitted model
    for a, b in zip(fp32, int8, strict=True):
        if a["metric"] == "dice" and a["value"] is not None:
            assert abs(a["value"] - b["value"]) < 0.05, (a, b)

    results = frame(_results(fp32, "torch", "none") + _results(int8, runtime, "int8"), RESULT_COLUMNS)
    (gate,) = gate_frame(results).to_dict("records")
    assert gate["runtime"] == runtime and gate["quantize"] == "int8"
    verdicts = {}
    for region in ("liver", "tumor"):
        both = [r["case"] for r, s in zip(fp32, int8, strict=True) if r["region"] == region
                and r["metric"] == "dice" and r["value"] is not None and s["value"] is not None]
        want_fp32, want_int8 = _mean_dice(fp32, region, both), _mean_dice(int8, region, both)
        assert gate[f"fp32 dice {region}"] == pytest.approx(want_fp32)
        assert gate[f"int8 dice {region}"] == pytest.approx(want_int8)
        ratio = want_int8 / want_fp32 if want_fp32 > 0 else None
        assert gate[f"int8/fp32 dice {region}"] == pytest.approx(ratio)
        verdicts[region] = ratio
    for threshold, name in ((GATE, "gate 99%"), (GATE_HIGH, "gate 99.9%")):
        passed = all(v is not None and v >= threshold for v in verdicts.values())
        assert gate[name] == ("pass" if passed else "fail")


def test_a_runtime_whose_int8_model_is_not_scored_is_refused(fitted, tmp_path):
    from lfubench.bench.runtimes import Artifacts

    cache, net, x = fitted
    with pytest.raises(ValueError, match="int8 model of 'tensorrt' is not scored"):
        int8_predictor(Artifacts(net, torch.zeros(1, 3, 32, 32), tmp_path, [x[:1]]), "tensorrt")
