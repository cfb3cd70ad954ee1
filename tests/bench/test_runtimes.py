"""Runtimes (bench.runtimes): ONNX export of every zoo model, parity of ONNX Runtime and OpenVINO with
PyTorch fp32, the precision each runtime used, and a missing runtime refused in one line."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from lfubench import models
from lfubench.bench.errors import LfubenchError
from lfubench.bench.latency import Timing, profile
from lfubench.bench.runtimes import EXTRAS, OPSET, RuntimeUnavailable, check_runtimes, unsupported

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed (pip install 'lfubench[onnx]')")
pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

FAST = Timing(min_warmup=1, window=1, max_warmup=1, min_iters=1, max_iters=2, max_time_s=0.0)
ORT_TOLERANCE, OPENVINO_TOLERANCE = 1e-4, 1e-3


def _pruned():
    torch.manual_seed(0)
    return models.prune_channels(models.create_model("lfunet", base_width=16), 0.5)


#: every family and preset at its defaults, every pruning level below 4, a channel-pruned model
CASES = (
    [(name, {}) for name in models.list_models() if models.model_source(name) not in models.OUTSIDE_SOURCES]
    + [(name, {"prune_level": k}) for name in ("lfunet", "unetpp") for k in (1, 2, 3)]
    + [("lfunet w16 channel-pruned 0.5", None)]
)


def _model(name, kwargs):
    torch.manual_seed(0)
    return _pruned() if kwargs is None else models.create_model(name, **kwargs)


def _export_and_run(model, tmp_path, batch=2):
    from lfubench.bench.runtimes import export_onnx, onnxruntime_session, openvino_session

    model.eval()
    x = torch.randn(batch, model.in_channels, 32, 32, generator=torch.Generator().manual_seed(3))
    path = export_onnx(model, x[:1], tmp_path / "m.onnx")
    with torch.inference_mode():
        ref = model(x).numpy()
    ort = onnxruntime_session(path, torch.device("cpu"), threads=1)
    ov = openvino_session(path, batch=batch, threads=1)
    return path, ref, ort.run(x.numpy()), ov, ov.run(x.numpy())


@pytest.mark.slow
@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}{'-' + str(k) if k else ''}" for n, k in CASES])
def test_parity_of_every_model(name, kwargs, tmp_path):
    path, ref, ort, ov_session, ov = _export_and_run(_model(name, kwargs), tmp_path)
    assert np.abs(ort - ref).max() <= ORT_TOLERANCE
    assert np.abs(ov - ref).max() <= OPENVINO_TOLERANCE
    assert "INFERENCE_PRECISION_HINT f32" in ov_session.precision_used
    assert "bf16" not in ov_session.precision_used and "f16" not in ov_session.precision_used


def test_export_is_checked_at_the_opset_with_a_dynamic_batch(tmp_path):
    model = models.create_model("lfunet", prune_level=1)
    path, ref, ort, _, ov = _export_and_run(model, tmp_path, batch=3)  # exported at 1, run at 3
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == OPSET >= 17
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    assert ort.shape == ref.shape == (3, model.num_classes, 32, 32)
    assert np.abs(ort - ref).max() <= ORT_TOLERANCE and np.abs(ov - ref).max() <= OPENVINO_TOLERANCE


def test_openvino_records_the_precision_it_used(tmp_path):
    from lfubench.bench.runtimes import export_onnx, openvino_session

    model = models.create_model("unet", base_width=4)
    path = export_onnx(model, torch.randn(1, 3, 32, 32), tmp_path / "u.onnx")
    fp32 = openvino_session(path, batch=1, threads=1, precision="fp32")
    assert fp32.precision_used.startswith("convolutions in f32 (") and fp32.precision_used.endswith("f32")
    assert json.loads(json.dumps(fp32.settings))["INFERENCE_PRECISION_HINT"] == "f32"
    bf16 = openvino_session(path, batch=1, threads=1, precision="bf16")
    assert bf16.precision_used.endswith(("bf16", "f32"))  # bf16 where the CPU has it, else OpenVINO's f32


def test_profile_rows_of_every_runtime(tmp_path):
    model = models.create_model("lfunet", prune_level=2)
    rows = profile(model, (3, 32, 32), runtimes=["torch", "compile", "onnxruntime", "openvino"],
                   quantize=["none"], modes=["inference"], threads=1, timing=FAST, energy=False)
    by = {r["runtime"]: r for r in rows}
    assert list(by) == ["torch", "compile", "onnxruntime", "openvino"]
    for r in rows:
        assert r["status"] == "ok", r["error"]
        assert r["threads"] == 1 and r["median_ms"] > 0 and r["quantize"] == "none"
        assert r["runtime_version"] != "n/a" and r["provider"]
        assert isinstance(json.loads(r["runtime_settings"]), dict)
        assert r["model_peak_mb"] == by["torch"]["model_peak_mb"] > 0
        assert r["pct_of_peak"] > 0 and r["arithmetic_intensity"] > 0
    assert by["torch"]["max_abs_diff"] == 0.0
    assert by["compile"]["max_abs_diff"] <= 1e-4 and by["compile"]["provider"] == "inductor"
    assert by["onnxruntime"]["max_abs_diff"] <= ORT_TOLERANCE
    assert by["onnxruntime"]["provider"] == "CPUExecutionProvider"
    assert by["openvino"]["max_abs_diff"] <= OPENVINO_TOLERANCE
    assert json.loads(by["onnxruntime"]["runtime_settings"])["intra_op_num_threads"] == 1
    assert json.loads(by["openvino"]["runtime_settings"])["INFERENCE_NUM_THREADS"] == "1"
    assert by["onnxruntime"]["model_file_mb"] == by["openvino"]["model_file_mb"] > 0  # one ONNX file
    assert by["torch"]["model_file_mb"] is None


def test_unsupported_combinations_become_rows():
    rows = profile(models.create_model("unet", base_width=4), (3, 32, 32), runtimes=["torch", "onnxruntime"],
                   quantize=["int8"], precisions=["bf16"], modes=["inference", "train"], timing=FAST,
                   hardware=False, energy=False)
    assert [(r["runtime"], r["mode"], r["status"]) for r in rows] == [
        ("torch", "inference", "unsupported"), ("onnxruntime", "inference", "unsupported")]
    assert "int8 is measured in onnxruntime" in rows[0]["error"]
    assert unsupported("onnxruntime", "none", "fp16", torch.device("cpu")).startswith("onnxruntime's CPU")
    assert unsupported("openvino", "int8", "fp32", torch.device("cpu")) is None


def test_missing_runtime_is_one_line_naming_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "openvino" else real(n, *a))
    with pytest.raises(RuntimeUnavailable) as info:
        check_runtimes(["torch", "openvino"])
    message = str(info.value)
    assert message == ("runtime 'openvino' needs openvino, not installed: pip install 'lfubench[openvino]'")
    assert isinstance(info.value, LfubenchError) and EXTRAS["openvino"] == "openvino"
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "nncf" else real(n, *a))
    check_runtimes(["openvino"])  # fp32 needs no nncf
    with pytest.raises(RuntimeUnavailable, match=r"needs nncf, not installed: pip install 'lfubench\["):
        check_runtimes(["openvino"], ["none", "int8"])


def test_tensorrt_is_refused_on_the_cpu_and_unknown_names_are_named():
    with pytest.raises(RuntimeUnavailable, match="'tensorrt' runs on NVIDIA GPUs only"):
        check_runtimes(["tensorrt"], device="cpu")
    with pytest.raises(RuntimeUnavailable, match="unknown runtime 'tvm'"):
        check_runtimes(["tvm"])
    with pytest.raises(RuntimeUnavailable, match="unknown quantization 'int4'"):
        check_runtimes(["torch"], ["int4"])


def test_an_export_failure_is_a_row_and_the_run_goes_on():
    class DataDependent(torch.nn.Module):  # control flow on a value: torch.export cannot capture it
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 1)

        def forward(self, x):
            return self.conv(x) if x.sum() > 0 else -self.conv(x)

    rows = profile(DataDependent(), (3, 16, 16), runtimes=["torch", "onnxruntime", "openvino"],
                   modes=["inference"], timing=FAST, hardware=False, energy=False)
    assert [(r["runtime"], r["status"]) for r in rows] == [
        ("torch", "ok"), ("onnxruntime", "error"), ("openvino", "error")]
    assert rows[1]["error"] == rows[2]["error"] and len(rows[1]["error"].splitlines()) == 1
    assert rows[1]["error"].startswith("TorchExportError: Failed to export")
    assert "\x1b" not in rows[1]["error"]  # no terminal colours


def test_fp16_export_for_gpu_runtimes(tmp_path):
    from lfubench.bench.runtimes import Artifacts, fp16_model

    model = models.create_model("lfunet", prune_level=1)
    path = Artifacts(model, torch.randn(1, 3, 32, 32), tmp_path).onnx("fp16")
    proto = onnx.load(str(path))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert {i.data_type for i in proto.graph.initializer if len(i.dims) == 4} == {onnx.TensorProto.FLOAT16}
    assert fp16_model("onnxruntime", "none", "fp16") and not fp16_model("tensorrt", "none", "fp16")
