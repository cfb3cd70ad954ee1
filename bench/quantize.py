"""int8 post-training quantization of an exported model, and the int8 accuracy gate.

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

:func:`int8_gate` states the accuracy gate as MLPerf Inference states it for its 3D U-Net: per
region, int8 Dice as a fraction of fp32 Dice, passing at 99%.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .runtimes import quiet

#: MLPerf Inference's accuracy target for int8: at least this fraction of the fp32 reference
GATE = 0.99
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


@dataclass(frozen=True)
class GateResult:
    """One region's gate: ``ratio`` = int8 Dice / fp32 Dice (``None`` where fp32 Dice is 0 or
    missing, or int8's is missing), ``passed`` = ``ratio >= threshold`` (``False`` without a ratio)."""

    region: str
    fp32_dice: float | None
    int8_dice: float | None
    ratio: float | None
    passed: bool


def _value(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def int8_gate(fp32_dice: Mapping[str, float], int8_dice: Mapping[str, float],
              threshold: float = GATE) -> list[GateResult]:
    """The int8 accuracy gate per region of ``fp32_dice`` (mean Dice per region), in its order.

    A region passes when int8 Dice is at least ``threshold`` (MLPerf: 0.99; 0.999 for its
    high-accuracy target) of fp32 Dice. A region without an fp32 value, with fp32 Dice 0 (no
    fraction of it is defined) or missing from ``int8_dice`` has no ratio and does not pass.
    """
    out = []
    for region, ref in fp32_dice.items():
        ref, got = _value(ref), _value(int8_dice.get(region))
        ratio = None if ref is None or got is None or ref == 0 else got / ref
        out.append(GateResult(region, ref, got, ratio, ratio is not None and ratio >= threshold))
    return out
