"""A zoo model exported to ONNX and run in the inference runtimes it is deployed with.

:func:`bench.latency.profile` times every runtime with one loop; this module makes the sessions it
times. The runtimes (:data:`RUNTIMES`):

- ``torch``: PyTorch eager (``bench.latency``'s own path); ``compile``: ``torch.compile``.
- ``onnxruntime``: ONNX Runtime, CPU execution provider (CUDA execution provider with
  ``--device cuda``, which needs the ``onnxruntime-gpu`` build); graph optimization level "all",
  sequential execution, ``intra_op_num_threads`` = the run's threads, ``inter_op_num_threads`` = 1.
- ``openvino``: OpenVINO on its CPU device, compiled per batch size at a static shape with
  ``INFERENCE_PRECISION_HINT`` = the row's precision (``f32`` for fp32: on a CPU with bf16 support
  OpenVINO otherwise runs fp32 models in bf16), ``INFERENCE_NUM_THREADS`` = the run's threads,
  ``NUM_STREAMS`` = 1, ``PERFORMANCE_HINT`` = ``LATENCY``. The precision it actually used is read
  back from the compiled model (its convolutions' runtime precisions).
- ``tensorrt`` (CUDA only): ONNX Runtime's TensorRT execution provider, chosen over Torch-TensorRT
  because it runs the very ONNX file (and the very int8 QDQ file) the other runtimes run, through
  the same session and timing code, while Torch-TensorRT is a second compiler front end with wheels
  pinned to one torch release each and an int8 path of its own. **Untested on the machine this was
  written on (no GPU)**: :func:`tensorrt_session` is kept small for that reason.

Export (:func:`export_onnx`): ``torch.onnx.export`` with the ``torch.export``-based exporter
(``dynamo=True``), opset :data:`OPSET`, batch dimension dynamic, checked with ``onnx.checker``.
Both of torch's exporters export every family, preset, pruning level and channel-pruned model
exactly (outputs within 1e-7 of PyTorch); the ``torch.export``-based one is chosen because it is
torch's default and maintained exporter (the TorchScript-based one is deprecated since torch 2.9
and warns), and because it captures the graph symbolically, so the models' Python-side input checks
become export-time guards instead of silently traced constants. It is slower (seconds per model,
within the 20 s export + quantize budget) and needs ``onnxscript``.

A runtime whose package is missing is refused by :func:`check_runtimes` in one line naming the
extra to install (:data:`EXTRAS`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import LfubenchError

#: the runtimes lfubench measures; the first two are PyTorch's own
RUNTIMES = ("torch", "compile", "onnxruntime", "openvino", "tensorrt")
TORCH_RUNTIMES = ("torch", "compile")
#: what is done to the weights before timing
QUANTIZE = ("none", "int8")
#: the optional-dependency extra that installs each runtime
EXTRAS = {"onnxruntime": "onnx", "openvino": "openvino", "tensorrt": "tensorrt"}
#: the import names each runtime needs (export included), and int8's additions
PACKAGES = {
    "onnxruntime": ("onnx", "onnxscript", "onnxruntime"),
    "openvino": ("onnx", "onnxscript", "openvino"),
    "tensorrt": ("onnx", "onnxscript", "onnxruntime"),
}
INT8_PACKAGES = {"openvino": ("nncf",)}
#: the ONNX opset of every export
OPSET = 18
INPUT, OUTPUT = "input", "logits"


class RuntimeUnavailable(LfubenchError):
    """A runtime that this machine cannot run: a package missing, or TensorRT without CUDA."""


def check_runtimes(runtimes, quantize=("none",), device: str | torch.device = "cpu") -> None:
    """Raise :class:`RuntimeUnavailable` (one line) for the first runtime that cannot run here: an
    unknown name, a missing package (naming the extra to install), or ``tensorrt`` on the CPU."""
    dev = torch.device(device)
    for name in runtimes:
        if name not in RUNTIMES:
            raise RuntimeUnavailable(f"unknown runtime {name!r}; choose from {', '.join(RUNTIMES)}")
    for q in quantize:
        if q not in QUANTIZE:
            raise RuntimeUnavailable(f"unknown quantization {q!r}; choose from {', '.join(QUANTIZE)}")
    for name in runtimes:
        if name == "tensorrt" and dev.type != "cuda":
            raise RuntimeUnavailable("runtime 'tensorrt' runs on NVIDIA GPUs only: give --device cuda")
        needed = PACKAGES.get(name, ()) + (INT8_PACKAGES.get(name, ()) if "int8" in quantize else ())
        missing = [p for p in needed if importlib.util.find_spec(p) is None]
        if missing:
            raise RuntimeUnavailable(
                f"runtime {name!r} needs {', '.join(missing)}, not installed: "
                f"pip install 'lfubench[{EXTRAS[name]}]'"
            )


def runtime_version(name: str) -> str:
    """The installed version of the runtime's package (``"n/a"`` if it is not installed)."""
    package = {"torch": "torch", "compile": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino",
               "tensorrt": "tensorrt"}[name]
    try:
        return version(package)
    except PackageNotFoundError:
        if name == "onnxruntime":  # the GPU build's distribution name
            with contextlib.suppress(PackageNotFoundError):
                return version("onnxruntime-gpu")
        return "n/a"


def unsupported(runtime: str, quantize: str, precision: str, device: torch.device) -> str | None:
    """Why ``runtime`` cannot measure this quantization and precision on ``device`` (``None``: it can)."""
    if quantize == "int8" and runtime in TORCH_RUNTIMES:
        return "int8 is measured in onnxruntime, openvino and tensorrt (static post-training quantization)"
    if quantize == "int8" and precision != "fp32":
        return f"int8 rows run the quantized model with its other operators in fp32, not {precision}"
    if runtime == "onnxruntime" and precision != "fp32" and device.type == "cpu":
        return f"onnxruntime's CPU execution provider runs fp32 models only, not {precision}"
    if runtime == "onnxruntime" and quantize == "int8" and device.type == "cuda":
        return "int8 on CUDA is measured with the tensorrt runtime"
    if runtime in ("onnxruntime", "tensorrt") and precision == "bf16":
        return f"{runtime} is measured in fp32 and fp16 only"
    if runtime == "openvino" and device.type == "cuda":
        return "openvino is measured on the CPU only"
    return None


# --- export -------------------------------------------------------------------------------------


@contextlib.contextmanager
def quiet():
    """Silence the progress lines, log records below ERROR and warnings of the exporter, the
    quantizers and their graph passes while they run (errors still raise); stdout stays the caller's."""
    before = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(before)


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path) -> Path:
    """Export ``model`` (a copy in eval mode, on the CPU, in ``example``'s dtype) to ONNX at ``path``,
    with the batch dimension dynamic; checked with ``onnx.checker``. Returns ``path``."""
    import copy

    import onnx

    path = Path(path)
    net = copy.deepcopy(model).cpu().eval().to(example.dtype)
    x = example.detach().cpu()
    if x.shape[0] < 2:  # torch.export specialises a dimension of size 1; export at batch 2
        x = x.expand(2, *x.shape[1:]).contiguous()
    with quiet(), torch.no_grad():
        program = torch.onnx.export(net, (x,), None, dynamo=True, opset_version=OPSET, input_names=[INPUT],
                                    output_names=[OUTPUT], dynamic_shapes=({0: torch.export.Dim("batch")},),
                                    verbose=False)
        program.save(str(path))
    onnx.checker.check_model(str(path), full_check=True)
    return path


def file_mb(path: str | Path) -> float:
    """Size of a model file in MiB (an OpenVINO ``.xml`` with its ``.bin``; ONNX external data too)."""
    path = Path(path)
    parts = [path, path.with_suffix(".bin"), Path(str(path) + ".data")]
    return sum(p.stat().st_size for p in parts if p.exists()) / 2**20


# --- sessions -------------------------------------------------------------------------------------


@dataclass
class Session:
    """A runnable model: ``run(x)`` takes a ``float32`` (or ``float16``) array and returns the logits
    as an array; ``record`` is what the row records about the runtime."""

    run: Callable[[np.ndarray], np.ndarray]
    provider: str
    precision_used: str
    settings: dict = field(default_factory=dict)

    def record(self) -> dict:
        return {"provider": self.provider, "precision_used": self.precision_used,
                "runtime_settings": json.dumps(self.settings, sort_keys=True)}


def onnxruntime_session(path: str | Path, device: torch.device, threads: int, quantize: str = "none",
                        providers: list | None = None) -> Session:
    """An ONNX Runtime session of the model at ``path`` (see the module docstring for the settings)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if providers is None:
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeUnavailable("onnxruntime has no CUDA execution provider here: pip install "
                                         "onnxruntime-gpu (in place of onnxruntime)")
            providers = [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    session = ort.InferenceSession(str(path), opts, providers=providers)
    name = session.get_inputs()[0].name
    dtype = session.get_inputs()[0].type
    used = "fp16" if "float16" in dtype else "fp32"
    if quantize == "int8":
        used = "int8 QDQ (weights per channel, activations per tensor), fp32 elsewhere"
    settings = {"graph_optimization_level": "ORT_ENABLE_ALL", "execution_mode": "ORT_SEQUENTIAL",
                "intra_op_num_threads": threads, "inter_op_num_threads": 1}
    return Session(lambda x: session.run(None, {name: x})[0], session.get_providers()[0], used, settings)


def tensorrt_session(path: str | Path, device: torch.device, threads: int, precision: str,
                     quantize: str = "none") -> Session:
    """ONNX Runtime's TensorRT execution provider (CUDA execution provider for what TensorRT does not
    take). UNTESTED on the machine this was written on (no GPU)."""
    options = {"device_id": device.index or 0, "trt_fp16_enable": precision == "fp16",
               "trt_int8_enable": quantize == "int8"}
    providers = [("TensorrtExecutionProvider", options),
                 ("CUDAExecutionProvider", {"device_id": device.index or 0})]
    session = onnxruntime_session(path, device, threads, quantize, providers=providers)
    if session.provider != "TensorrtExecutionProvider":
        raise RuntimeUnavailable("onnxruntime has no TensorRT execution provider here: pip install "
                                 "'lfubench[tensorrt]' on a machine with CUDA and TensorRT")
    session.precision_used = "int8 QDQ" if quantize == "int8" else precision
    session.settings.update({k: v for k, v in options.items() if k != "device_id"})
    return session


#: OpenVINO's name of each lfubench precision
OV_PRECISION = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}


def openvino_session(path: str | Path, batch: int, threads: int, precision: str = "fp32") -> Session:
    """An OpenVINO CPU compiled model of the model at ``path`` (ONNX or IR) at a static batch."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    shape = list(model.inputs[0].partial_shape.get_min_shape())
    model.reshape([batch, *shape[1:]])
    config = {"INFERENCE_PRECISION_HINT": OV_PRECISION[precision], "INFERENCE_NUM_THREADS": threads,
              "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    output = compiled.outputs[0]
    counts: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info and info["layerType"].value == "Convolution":
            p = info["runtimePrecision"].value
            counts[p] = counts.get(p, 0) + 1
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    hint = hint.to_string() if hasattr(hint, "to_string") else str(hint)
    used = (f"convolutions in {', '.join(f'{p} ({n})' for p, n in sorted(counts.items()))}; "
            f"INFERENCE_PRECISION_HINT {hint}")
    config = {k: str(v) for k, v in config.items()}

    def run(x: np.ndarray) -> np.ndarray:
        return request.infer({0: x})[output]

    return Session(run, "CPU", used, config)


# --- files per model ----------------------------------------------------------------------------


class Artifacts:
    """The exported and quantized files of one model, made on first use, in ``folder``, each with the
    seconds it took; a failure is kept and raised again for every row that needs the file."""

    def __init__(self, model: nn.Module, example: torch.Tensor, folder: str | Path,
                 calibration: list[np.ndarray] | None = None) -> None:
        self.model, self.example, self.folder = model, example, Path(folder)
        self.calibration = calibration
        self.seconds: dict[str, float] = {}
        self._done: dict[str, Path | BaseException] = {}

    def _make(self, key: str, fn: Callable[[Path], Path], filename: str) -> Path:
        if key not in self._done:
            t0 = time.perf_counter()
            try:
                self._done[key] = fn(self.folder / filename)
            except Exception as err:
                self._done[key] = err
            self.seconds[key] = time.perf_counter() - t0
        got = self._done[key]
        if isinstance(got, BaseException):
            raise got
        return got

    def onnx(self, precision: str = "fp32") -> Path:
        """The exported ONNX file (fp16: the model and input in float16, for GPU runtimes)."""
        dtype = torch.float16 if precision == "fp16" else torch.float32
        return self._make(f"export_{precision}", lambda p: export_onnx(self.model, self.example.to(dtype), p),
                          f"model_{precision}.onnx")

    def int8(self, runtime: str) -> Path:
        """The int8 model for ``runtime`` (ONNX Runtime's QDQ file serves ``tensorrt`` too)."""
        from .quantize import quantize_onnxruntime, quantize_openvino

        if self.calibration is None:
            raise ValueError("int8 needs calibration inputs")
        source = self.onnx()
        if runtime == "openvino":
            return self._make("int8_openvino", lambda p: quantize_openvino(source, p, self.calibration),
                              "model_int8_openvino.xml")
        return self._make("int8_onnxruntime", lambda p: quantize_onnxruntime(source, p, self.calibration),
                          "model_int8_qdq.onnx")

    def session(self, runtime: str, quantize: str, precision: str, batch: int, device: torch.device,
                threads: int) -> tuple[Session, Path, float]:
        """The session for one row, its model file and the seconds spent making that file."""
        half = fp16_model(runtime, quantize, precision)
        path = self.int8(runtime) if quantize == "int8" else self.onnx("fp16" if half else "fp32")
        keys = ["export_fp16" if half else "export_fp32"]
        if quantize == "int8":
            keys.append("int8_openvino" if runtime == "openvino" else "int8_onnxruntime")
        seconds = sum(self.seconds.get(k, 0.0) for k in keys)
        if runtime == "onnxruntime":
            return onnxruntime_session(path, device, threads, quantize), path, seconds
        if runtime == "openvino":
            return openvino_session(path, batch, threads, precision), path, seconds
        if runtime == "tensorrt":
            return tensorrt_session(path, device, threads, precision, quantize), path, seconds
        raise ValueError(f"{runtime!r} has no ONNX session")


def fp16_model(runtime: str, quantize: str, precision: str) -> bool:
    """Whether the row runs a model exported in float16 (fed float16 inputs): ONNX Runtime's fp16 on
    CUDA. TensorRT builds its fp16 engine from the fp32 file (``trt_fp16_enable``), OpenVINO takes
    its precision from ``INFERENCE_PRECISION_HINT``."""
    return runtime == "onnxruntime" and quantize == "none" and precision == "fp16"

