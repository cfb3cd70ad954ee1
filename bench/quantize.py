"""int8 post-training quantization of an exported model, and the quantized model as a predictor.

- **ONNX Runtime**: static quantization in QDQ format (QuantizeLinear/DequantizeLinear pairs around
  every quantized operator, which the CPU execution provider fuses into int8 kernels), weights int8
  per output channel, activations int8 per tensor (ONNX Runtime's recommended S8S8 QDQ setting),
  ranges from min/max over the calibration inputs; the model is pre-processed (shape inference and
  graph optimization) first, as ONNX Runtime recommends.
- **OpenVINO**: NNCF's post-training quantization (``nncf.quantize``, its default preset:
  symmetric int8 weights per channel, int8 activations per tensor, fast bias correction) of the
  OpenVINO model read from the same ONNX file, over the same calibration inputs.

Both take the calibration inputs as an iterable of ``float32`` arrays of shape ``(B, C, H, W)``.
In a plan they are training slices of the item's own dataset; ``lfubench profile`` uses
:func:`calibration_inputs` (seeded random inputs, the convention :data:`bench.conventions.INT8`).

In a plan, the int8 model of each runtime in :data:`SCORED_RUNTIMES` that the plan measures is also
scored on the test cases (:func:`int8_predictor` gives the runtime's session as a predictor of
:func:`bench.evaluate.evaluate_cases`), and the report states the accuracy gate from those scores
(:mod:`reports.gate`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from .evaluate import Predictor
from .runtimes import Artifacts, Session, onnxruntime_session, openvino_session, quiet

#: the runtimes whose int8 model a plan scores on its test cases, on the CPU: ONNX Runtime runs the
#: QDQ file on its CPU execution provider, OpenVINO the NNCF IR on its CPU device (TensorRT builds
#: its own int8 engine from the QDQ file and is not scored)
SCORED_RUNTIMES = ("onnxruntime", "openvino")
#: the number of calibration inputs ``lfubench profile`` uses
CALIBRATION_INPUTS = 8


def calibration_inputs(shape: tuple[int, ...], n: int = CALIBRATION_INPUTS,
                       seed: int = 1) -> list[np.ndarray]:
    """``n`` seeded standard-normal ``float32`` inputs of ``shape`` (batch included)."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape, dtype=np.float32) for _ in range(n)]


def quantize_onnxruntime(onnx_path: str | Path, out_path: str | Path,
                         calibration: Iterable[np.ndarray]) -> Path:
    """Static QDQ int8 quantization (per-channel weights) of the ONNX model ``onnx_path``, written
    to ``out_path``; returns ``out_path``."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_path = Path(out_path)
    input_name = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name
    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in calibration]
    if not arrays:
        raise ValueError("int8 calibration needs at least one input")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(arrays)

        def get_next(self):
            a = next(self._it, None)
            return None if a is None else {input_name: a}

    with tempfile.TemporaryDirectory() as tmp, quiet():
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    return out_path


def quantize_openvino(onnx_path: str | Path, out_xml: str | Path, calibration: Iterable[np.ndarray]) -> Path:
    """NNCF post-training int8 quantization of the ONNX model ``onnx_path`` read by OpenVINO,
    saved as OpenVINO IR at ``out_xml`` (with its ``.bin``); returns ``out_xml``."""
    import nncf
    import openvino as ov

    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in calibration]
    if not arrays:
        raise ValueError("int8 calibration needs at least one input")
    model = ov.Core().read_model(str(onnx_path))
    with quiet():  # NNCF's progress bar and info lines, not the caller's output
        quantized = nncf.quantize(model, nncf.Dataset(arrays), subset_size=len(arrays))
    ov.save_model(quantized, str(out_xml), compress_to_fp16=False)
    return Path(out_xml)


class _PerBatch:
    """A predictor over sessions compiled for one batch size each (OpenVINO's static shapes), made
    on first use of each batch size."""

    def __init__(self, make: Callable[[int], Session]) -> None:
        self.make, self.sessions = make, {}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if len(x) not in self.sessions:
            self.sessions[len(x)] = self.make(len(x))
        return self.sessions[len(x)].run(x)


def int8_predictor(artifacts: Artifacts, runtime: str, threads: int | None = None) -> Predictor:
    """The int8 model of ``artifacts`` in ``runtime`` (one of :data:`SCORED_RUNTIMES`) as a predictor
    for :func:`bench.evaluate.evaluate_cases`: ``float32`` inputs ``(B, C, H, W)`` -> logits, on
    the CPU at ``threads`` threads (default: PyTorch's).

    The file is made as the latency rows make theirs (:meth:`bench.runtimes.Artifacts.int8`: one
    ONNX export, then :func:`quantize_onnxruntime` or :func:`quantize_openvino` over the
    artifacts' calibration inputs): the same weights and calibration inputs give the same int8
    model. A failure to export or quantize raises (again for every runtime that needs the failed
    file).
    """
    if runtime not in SCORED_RUNTIMES:
        raise ValueError(f"the int8 model of {runtime!r} is not scored; scored: {', '.join(SCORED_RUNTIMES)}")
    threads = threads or torch.get_num_threads()
    path = artifacts.int8(runtime)
    if runtime == "onnxruntime":
        return onnxruntime_session(path, torch.device("cpu"), threads, "int8").run
    return _PerBatch(lambda batch: openvino_session(path, batch, threads, "fp32"))
