"""Latency, throughput and peak memory of a model's inference forward and training step, in each runtime.

One call of :func:`profile` measures a model in a list of runtimes (:mod:`bench.runtimes`: PyTorch
eager, ``torch.compile``, ONNX Runtime, OpenVINO, TensorRT on CUDA), unquantized and int8
(:mod:`bench.quantize`), at a list of batch sizes and precisions, in inference and/or training
mode, and returns tidy rows (one per model x runtime x quantization x batch x precision x mode;
training only in ``torch`` and ``compile``) that carry the environment record
(:mod:`bench.environment`), ready for ``pandas.DataFrame(rows)``.

Every row also carries ``max_abs_diff`` (the largest absolute difference of its output from
PyTorch fp32 eager on one seeded input; ``argmax_agreement``: the fraction of pixels whose arg-max
class agrees), the model file's size, ``model_peak_mb`` (the model's own tensor memory,
:mod:`bench.memory`), the hardware limit and the row's share of it (:mod:`bench.hardware`) and
``joules_per_image`` where an energy counter can be read. The sentences are
:mod:`bench.conventions`' (``RUNTIMES``, ``INT8``, ``MODEL_MEMORY``, ``PEAK``, ``INTENSITY``,
``ENERGY``).

Conventions (also carried by every row):

- **CUDA**: ``cudnn.benchmark`` on; every iteration is bracketed by CUDA events and
  synchronised, so each sample is the latency of one iteration from an idle GPU. Inference
  runs under ``torch.inference_mode()``. Peak statistics are reset after warm-up;
  ``peak_allocated_mb`` / ``peak_reserved_mb`` are ``torch.cuda.max_memory_allocated`` /
  ``max_memory_reserved`` over the measured loop (weights, input and optimizer state included).
- **CPU**: ``time.perf_counter`` around each iteration at a fixed, recorded thread count;
  ``peak_rss_mb`` is the peak resident set size of the whole process during the measured loop
  (``VmHWM`` reset through ``/proc/self/clear_refs`` after warm-up; where that is not
  possible ``VmRSS`` sampled every 2 ms; the row says which).
- Warm-up runs until the last ``window`` iteration times are within ``tolerance`` of each other
  (at least ``min_warmup``, at most ``max_warmup`` iterations or ``max_warmup_s`` seconds);
  ``warmup_stable`` says whether it got there. The measured loop runs at least ``min_iters``
  and at most ``max_iters`` iterations, stopping once ``max_time_s`` has passed.
- Statistics over the iteration times in ms: median, p90, p99 (linear interpolation), IQR
  (p75 - p25); ``images_per_s`` = batch / median. MB are MiB (2^20 bytes).
- Precision ``fp16``/``bf16`` is ``torch.autocast`` (weights stay fp32); on CUDA ``fp32`` convs
  may use TF32 when ``torch.backends.cudnn.allow_tf32`` is on (its value is recorded).
- A training step is forward (all deep-supervision heads) + backward of a synthetic loss
  (mean of squared logits) + ``Adam`` step (``GradScaler`` with fp16 on CUDA).
- An out-of-memory error, or any other exception, at one configuration becomes a row with
  ``status`` ``"oom"`` or ``"error"`` and the message; the run goes on with the others. A
  runtime that cannot measure a quantization or precision gives a row with ``status``
  ``"unsupported"`` and the reason.
- Every runtime runs at the same fixed thread count; the ONNX-based runtimes are timed with
  ``time.perf_counter`` on every device (their run call returns with the output on the host).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import json
import math
import re
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import runtimes as rt
from .environment import environment_record
from .hardware import EnergyMeter, achieved, hardware_limit
from .memory import CPU_METHOD, CUDA_METHOD, model_peak_mb, traffic_bytes

#: the precisions lfubench measures, name -> autocast dtype (``None``: no autocast); the one list,
#: imported by everything that accepts a precision
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
#: what is timed: an inference forward, a training step
MODES = ("inference", "train")
MB = 2**20

CUDA_TIMER = "CUDA events around each iteration, synchronised per iteration"
CPU_TIMER = "time.perf_counter around each iteration"
CUDA_MEMORY = (
    "torch.cuda.max_memory_allocated / max_memory_reserved over the measured loop, "
    "peak statistics reset after warm-up; MiB"
)


@dataclass(frozen=True)
class Timing:
    """Warm-up and measurement bounds (see the module docstring)."""

    min_warmup: int = 3
    max_warmup: int = 50
    max_warmup_s: float = 10.0
    window: int = 3
    tolerance: float = 0.10
    min_iters: int = 5
    max_iters: int = 200
    max_time_s: float = 3.0

    def __post_init__(self) -> None:
        if self.min_warmup < 1 or self.window < 1 or self.min_iters < 1 or self.max_iters < self.min_iters:
            raise ValueError(f"invalid timing bounds: {self}")


def summarize(times_ms: Sequence[float], batch: int) -> dict:
    """Median, p90, p99, IQR, mean, min, max (ms) and images/s of iteration times."""
    t = np.asarray(times_ms, dtype=float)
    p25, p50, p75, p90, p99 = np.percentile(t, [25, 50, 75, 90, 99])
    return {
        "iters": int(t.size),
        "median_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "iqr_ms": float(p75 - p25),
        "mean_ms": float(t.mean()),
        "min_ms": float(t.min()),
        "max_ms": float(t.max()),
        "images_per_s": float(batch * 1000.0 / p50) if p50 > 0 else math.inf,
    }


# --- CPU memory -------------------------------------------------------------------------------


def _status_kb(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+)\s*kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) if match else None


class PeakRSS:
    """Peak resident set size of this process between :meth:`start` and :meth:`stop`.

    Uses the kernel's high-water mark ``VmHWM`` after resetting it through
    ``/proc/self/clear_refs`` (Linux); else samples ``VmRSS`` from a thread every
    ``interval_s``; else ``resource.getrusage`` (peak since the process started, not reset).
    ``method`` names the one used.
    """

    def __init__(self, interval_s: float = 0.002) -> None:
        self.interval_s = interval_s
        self.method = ""
        self.start_mb: float | None = None
        self._peak_kb = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> PeakRSS:
        rss = _status_kb("VmRSS")
        self.start_mb = None if rss is None else rss / 1024
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
            if _status_kb("VmHWM") is None:
                raise OSError("no VmHWM")
            self.method = "VmHWM reset via /proc/self/clear_refs"
        except OSError:
            if rss is not None:
                self.method = f"VmRSS sampled every {self.interval_s * 1e3:g} ms"
                self._peak_kb = rss
                self._stop.clear()
                self._thread = threading.Thread(target=self._sample, daemon=True)
                self._thread.start()
            else:
                self.method = "resource.getrusage ru_maxrss (peak since process start, not reset)"
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak_kb = max(self._peak_kb, _status_kb("VmRSS") or 0)
            self._stop.wait(self.interval_s)

    def stop(self) -> float:
        """The peak in MiB."""
        if self.method.startswith("VmHWM"):
            return (_status_kb("VmHWM") or 0) / 1024
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._peak_kb = max(self._peak_kb, _status_kb("VmRSS") or 0)
            return self._peak_kb / 1024
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


# --- timing loop ------------------------------------------------------------------------------


def time_loop(step: Callable[[], object], timing: Timing, device: torch.device) -> dict:
    """Warm ``step`` up, then time it; returns warm-up facts, statistics inputs and peak memory."""
    cuda = device.type == "cuda"

    def once() -> float:
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))
        t0 = time.perf_counter()
        step()
        return (time.perf_counter() - t0) * 1e3

    warm: list[float] = []
    stable = False
    t0 = time.perf_counter()
    while True:
        warm.append(once())
        n = len(warm)
        if n >= max(timing.min_warmup, timing.window):
            last = warm[-timing.window :]
            if max(last) <= min(last) * (1 + timing.tolerance):
                stable = True
                break
        if n >= timing.max_warmup or time.perf_counter() - t0 >= timing.max_warmup_s:
            break
    result: dict = {"warmup_iters": len(warm), "warmup_s": time.perf_counter() - t0, "warmup_stable": stable}
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        gc.collect()
        rss = PeakRSS().start()
    times: list[float] = []
    t0 = time.perf_counter()
    while len(times) < timing.max_iters and (
        len(times) < timing.min_iters or time.perf_counter() - t0 < timing.max_time_s
    ):
        times.append(once())
    result["times_ms"] = times
    if cuda:
        result["peak_allocated_mb"] = torch.cuda.max_memory_allocated(device) / MB
        result["peak_reserved_mb"] = torch.cuda.max_memory_reserved(device) / MB
        result["memory_convention"] = CUDA_MEMORY
    else:
        result["peak_rss_mb"] = rss.stop()
        result["rss_start_mb"] = rss.start_mb
        result["memory_convention"] = (
            f"peak RSS of the whole process over the measured loop ({rss.method}); MiB"
        )
    return result


# --- steps ------------------------------------------------------------------------------------


def _autocast(device: torch.device, precision: str):
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def inference_step(
    model: Callable, x: torch.Tensor, device: torch.device, precision: str
) -> Callable[[], None]:
    """One ``torch.inference_mode()`` forward under the precision's autocast."""

    def step() -> None:
        with torch.inference_mode(), _autocast(device, precision):
            model(x)

    return step


def train_step(
    model: nn.Module, x: torch.Tensor, device: torch.device, precision: str, compile: bool = False
) -> Callable[[], None]:
    """One training step: forward of every head, backward of the mean squared logits, Adam step."""
    model.train()
    forward = getattr(model, "forward_heads", None) or model
    if compile:
        forward = torch.compile(forward)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" and device.type == "cuda" else None

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with _autocast(device, precision):
            out = forward(x)
            heads = out if isinstance(out, list | tuple) else [out]
            loss = sum(h.float().square().mean() for h in heads)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()

    return step


def is_oom(err: BaseException) -> bool:
    """Whether ``err`` is an out-of-memory error (CUDA or host allocator)."""
    if isinstance(err, torch.cuda.OutOfMemoryError | MemoryError):
        return True
    text = str(err).lower()
    return "out of memory" in text or "can't allocate memory" in text or "failed to allocate" in text


# --- profile ----------------------------------------------------------------------------------

ROW_KEYS = (
    "model",
    "model_kwargs",
    "input",
    "batch",
    "precision",
    "mode",
    "device",
    "channels_last",
    "compile",
    "threads",
    "status",
    "error",
    "warmup_iters",
    "warmup_s",
    "warmup_stable",
    "iters",
    "median_ms",
    "p90_ms",
    "p99_ms",
    "iqr_ms",
    "mean_ms",
    "min_ms",
    "max_ms",
    "images_per_s",
    "peak_allocated_mb",
    "peak_reserved_mb",
    "peak_rss_mb",
    "rss_start_mb",
    "timer",
    "memory_convention",
    "cudnn_benchmark",
    "tf32_conv",
    # the runtime and what it ran (bench.runtimes, bench.quantize)
    "runtime",
    "runtime_version",
    "provider",
    "runtime_settings",
    "quantize",
    "precision_used",
    "model_file_mb",
    "prepare_s",
    "max_abs_diff",
    "argmax_agreement",
    # the model's own memory (bench.memory)
    "model_peak_mb",
    "model_memory_convention",
    # the hardware's limit and energy (bench.hardware)
    "achieved_gmacs_per_s",
    "pct_of_peak",
    "arithmetic_intensity",
    "roofline_gmacs_per_s",
    "peak_gmacs_per_s",
    "bandwidth_gb_s",
    "hardware_method",
    "joules_per_image",
    "energy_note",
)


def profile(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    name: str | None = None,
    model_kwargs: dict | None = None,
    batch_sizes: Sequence[int] = (1,),
    precisions: Sequence[str] = ("fp32",),
    modes: Sequence[str] = MODES,
    device: str | torch.device = "cpu",
    channels_last: bool = False,
    compile: bool = False,
    threads: int | None = None,
    timing: Timing = Timing(),
    extra: dict | None = None,
    seed: int = 0,
    runtimes: Sequence[str] = ("torch",),
    quantize: Sequence[str] = ("none",),
    calibration: Sequence[np.ndarray] | None = None,
    gmacs: float | None = None,
    hardware: bool = True,
    energy: bool = True,
) -> list[dict]:
    """Measure ``model`` (left untouched: copies run) on ``(batch, *input_shape)`` inputs.

    Args:
        model: the model (any device; copies are moved to ``device``).
        input_shape: ``(C, H, W)``.
        name: model name for the rows. Defaults to ``model.model_name`` or the class name.
        model_kwargs: constructor arguments to record (JSON in the row).
        batch_sizes, precisions, modes: the grid; precisions from :data:`PRECISIONS`, modes
            from :data:`MODES` (``train`` in the ``torch`` and ``compile`` runtimes only).
        device: ``"cpu"`` or ``"cuda"`` / ``"cuda:N"``.
        channels_last: run model and input in ``torch.channels_last`` (PyTorch runtimes).
        compile: wrap the forward in ``torch.compile`` (compile time is spent in warm-up); the same
            as the runtime ``compile`` in place of ``torch``.
        threads: intra-op threads of every runtime (restored afterwards); default: torch's current count.
        timing: warm-up and loop bounds.
        extra: fields added to every row (parameter counts, GMACs ...).
        seed: seed of the measured input (the same input gives ``max_abs_diff``).
        runtimes: of :data:`bench.runtimes.RUNTIMES`; a runtime that cannot run here raises
            :class:`bench.runtimes.RuntimeUnavailable` (one line naming the extra to install).
        quantize: of :data:`bench.runtimes.QUANTIZE` (``int8``: static post-training quantization).
        calibration: int8 calibration inputs, arrays ``(B, C, H, W)``; default
            :func:`bench.quantize.calibration_inputs` (seeded random inputs).
        gmacs: GMACs per image for ``pct_of_peak``; default ``extra["gmacs"]``, else counted by fvcore.
        hardware: measure the device's limit (once per process) and give each row its share.
        energy: read the energy counter over a window of at least 1 s after each measured loop.

    Returns:
        One row per runtime x quantization x batch x precision x mode, in that order, each with
        the environment record as ``env_*`` fields. A configuration that fails has ``status``
        ``"oom"`` or ``"error"``; one a runtime cannot measure has ``"unsupported"``.
    """
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("CUDA is not available on this machine")
    bad = [p for p in precisions if p not in PRECISIONS] + [m for m in modes if m not in MODES]
    if bad:
        raise ValueError(
            f"unknown precision or mode {bad[0]!r}; precisions {', '.join(PRECISIONS)}, "
            f"modes {', '.join(MODES)}"
        )
    runtimes = list(dict.fromkeys("compile" if compile and r == "torch" else r for r in runtimes))
    rt.check_runtimes(runtimes, quantize, dev)
    name = name or getattr(model, "model_name", type(model).__name__)
    old_threads = torch.get_num_threads()
    old_benchmark = torch.backends.cudnn.benchmark
    if threads:
        torch.set_num_threads(threads)
    try:
        torch.backends.cudnn.benchmark = True
        return _profile(model, input_shape, name, model_kwargs, batch_sizes, precisions, modes, dev,
                        channels_last, timing, extra, seed, runtimes, quantize, calibration, gmacs, hardware,
                        energy)
    finally:
        torch.set_num_threads(old_threads)
        torch.backends.cudnn.benchmark = old_benchmark


class _Context:
    """What every row of one :func:`profile` call shares, made once: the models, the seeded inputs'
    fp32 reference outputs, the model's memory per configuration and the exported files."""

    def __init__(self, model, input_shape, dev, channels_last, seed, calibration, quantize, folder):
        self.dev, self.input_shape, self.seed = dev, tuple(input_shape), seed
        self.channels_last = channels_last
        self.base = copy.deepcopy(model).to(dev).eval()
        self.reference = self.base
        if channels_last:
            self.base = copy.deepcopy(self.base).to(memory_format=torch.channels_last)
        self._outputs: dict[int, np.ndarray] = {}
        self._memory: dict[tuple, float | None] = {}
        if "int8" in quantize and calibration is None:
            from .quantize import calibration_inputs

            calibration = calibration_inputs((1, *self.input_shape))
        self._artifacts = (model, folder, calibration)

    @functools.cached_property
    def artifacts(self) -> rt.Artifacts:
        """The exported and quantized files, made on the first row of an ONNX-based runtime."""
        model, folder, calibration = self._artifacts
        return rt.Artifacts(copy.deepcopy(model).cpu().eval(), self.input(1).cpu(), folder,
                            None if calibration is None else list(calibration))

    def input(self, batch: int) -> torch.Tensor:
        """The seeded fp32 NCHW input of ``batch`` images, on the device."""
        g = torch.Generator().manual_seed(self.seed)
        return torch.randn(batch, *self.input_shape, generator=g).to(self.dev)

    def reference_output(self, batch: int) -> np.ndarray:
        """PyTorch fp32 eager's output on :meth:`input` (cached per batch)."""
        if batch not in self._outputs:
            with torch.inference_mode():
                self._outputs[batch] = self.reference(self.input(batch)).float().cpu().numpy()
        return self._outputs[batch]

    def model_memory(self, batch: int, precision: str, mode: str) -> float | None:
        key = (batch, precision, mode)
        if key not in self._memory:
            try:
                measured = model_peak_mb(self.reference, self.input(batch), mode, PRECISIONS[precision])
                self._memory[key] = measured.peak_mb
            except Exception:  # the row's own measurement reports the failure
                self._memory[key] = None
        return self._memory[key]


def _profile(model, input_shape, name, model_kwargs, batch_sizes, precisions, modes, dev, channels_last,
             timing, extra, seed, runtimes, quantize, calibration, gmacs, hardware, energy) -> list[dict]:
    threads = torch.get_num_threads()
    env = {f"env_{k}": v for k, v in environment_record(dev).items()}
    gmacs = gmacs if gmacs is not None else (extra or {}).get("gmacs")
    limit = bytes_moved = None
    if hardware:
        limit = hardware_limit(dev, threads)
        with contextlib.suppress(Exception):  # a model fvcore cannot trace has no intensity
            if gmacs is None:
                from .complexity import fvcore_macs

                gmacs = fvcore_macs(model, tuple(input_shape)) / 1e9
            bytes_moved = traffic_bytes(model, torch.zeros(1, *input_shape))[0]
    meter = EnergyMeter(dev) if energy else None
    shared = {
        "model": name,
        "model_kwargs": json.dumps(model_kwargs or {}, sort_keys=True),
        "input": "x".join(map(str, input_shape)),
        "device": str(dev) if dev.type == "cpu" else f"cuda:{dev.index or 0}",
        "threads": threads,
        "cudnn_benchmark": dev.type == "cuda" or None,
        "tf32_conv": torch.backends.cudnn.allow_tf32 if dev.type == "cuda" else None,
    }
    if limit is not None:
        shared.update(peak_gmacs_per_s=limit.peak_gmacs_per_s, bandwidth_gb_s=limit.bandwidth_gb_s,
                      hardware_method=limit.method)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lfubench-runtimes-") as folder:
        ctx = _Context(model, input_shape, dev, channels_last, seed, calibration, quantize, folder)
        for runtime in runtimes:
            torch_rt = runtime in rt.TORCH_RUNTIMES
            forward: Callable = ctx.base
            if runtime == "compile" and "inference" in modes:
                forward = torch.compile(ctx.base)
            grid = [(q, b, p, m) for q in quantize for b in batch_sizes for p in precisions for m in modes
                    if m == "inference" or (torch_rt and q == "none")]  # training: PyTorch's, unquantized
            for q, batch, precision, mode in grid:
                row = dict.fromkeys(ROW_KEYS)
                row.update(shared, batch=int(batch), precision=precision, mode=mode, status="ok", error="",
                           channels_last=channels_last if torch_rt else False, compile=runtime == "compile",
                           timer=CUDA_TIMER if dev.type == "cuda" and torch_rt else CPU_TIMER,
                           runtime=runtime, runtime_version=rt.runtime_version(runtime), quantize=q)
                why = rt.unsupported(runtime, q, precision, dev)
                if why:
                    row.update(status="unsupported", error=why, peak_gmacs_per_s=None, bandwidth_gb_s=None,
                               hardware_method=None)
                else:
                    if torch_rt:
                        measured = _measure_one(ctx, forward, runtime, batch, precision, mode, timing, meter)
                    else:
                        measured = _measure_runtime(ctx, runtime, q, batch, precision, timing, threads, meter)
                    row.update(measured)
                    if q == "none":
                        method = CUDA_METHOD if dev.type == "cuda" else CPU_METHOD
                        row["model_peak_mb"] = ctx.model_memory(batch, precision, mode)
                        row["model_memory_convention"] = method if torch_rt else f"{method}; in PyTorch eager"
                    if limit is not None and mode == "inference":  # a step's MACs are not a forward's
                        row.update(achieved(gmacs, batch, row.get("median_ms"), limit, bytes_moved))
                if row["status"] not in ("ok", "unsupported"):  # the failed configuration's tensors are gone
                    gc.collect()
                    if dev.type == "cuda":
                        torch.cuda.empty_cache()
                row.update(extra or {})
                row.update(env)
                rows.append(row)
    return rows


def _agreement(out: np.ndarray, ref: np.ndarray) -> dict:
    out = np.asarray(out, dtype=np.float32)
    return {"max_abs_diff": float(np.abs(out - ref).max()),
            "argmax_agreement": float((out.argmax(1) == ref.argmax(1)).mean())}


def _timed(step: Callable[[], object], batch: int, timer_device: torch.device, timing: Timing,
           meter: EnergyMeter | None) -> dict:
    result = time_loop(step, timing, timer_device)
    out = {k: v for k, v in result.items() if k != "times_ms"}
    out.update(summarize(result["times_ms"], batch))
    if meter is not None:
        out["joules_per_image"] = meter.measure(step, batch)
        out["energy_note"] = meter.source or meter.reason
    return out


def _failure(err: BaseException) -> dict:
    first = re.sub(r"\x1b\[[0-9;]*m", "", (str(err).strip().splitlines() or [""])[0])  # no terminal colours
    return {"status": "oom" if is_oom(err) else "error", "error": f"{type(err).__name__}: {first}"[:300]}


def _measure_one(ctx: _Context, forward, runtime, batch, precision, mode, timing, meter) -> dict:
    """One PyTorch row (eager or compiled)."""
    dev = ctx.dev
    out: dict = {"provider": "inductor" if runtime == "compile" else "eager",
                 "precision_used": precision if precision == "fp32" else f"{precision} (torch.autocast)",
                 "runtime_settings": json.dumps({"channels_last": ctx.channels_last}, sort_keys=True)}
    try:
        ref = ctx.reference_output(batch)
        x = ctx.input(batch)
        if ctx.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if dev.type == "cuda":
            gc.collect()
            torch.cuda.empty_cache()
        if mode == "inference":
            step = inference_step(forward, x, dev, precision)
            with torch.inference_mode(), _autocast(dev, precision):
                out.update(_agreement(forward(x).float().cpu().numpy(), ref))
        else:
            step = train_step(copy.deepcopy(ctx.base), x, dev, precision, runtime == "compile")
        out.update(_timed(step, batch, dev, timing, meter))
    except Exception as err:  # recorded, never raised: the other configurations still run
        out.update(_failure(err))
    return out


def _measure_runtime(ctx: _Context, runtime, q, batch, precision, timing, threads, meter) -> dict:
    """One row of an ONNX-based runtime: its session made (exporting and quantizing on first use),
    its output compared with PyTorch fp32's, then timed with :func:`time_loop` like PyTorch."""
    out: dict = {}
    try:
        ref = ctx.reference_output(batch)
        session, path, seconds = ctx.artifacts.session(runtime, q, precision, batch, ctx.dev, threads)
        out.update(session.record(), model_file_mb=rt.file_mb(path), prepare_s=seconds)
        x = ctx.input(batch).cpu().numpy()
        if rt.fp16_model(runtime, q, precision):
            x = x.astype(np.float16)
        out.update(_agreement(session.run(x), ref))
        out.update(_timed(lambda: session.run(x), batch, torch.device("cpu"), timing, meter))
    except Exception as err:  # recorded, never raised: the other configurations still run
        out.update(_failure(err))
    return out
