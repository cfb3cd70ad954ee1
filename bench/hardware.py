"""The device's limits, measured once per process, and the energy a measured loop used.

- **Peak compute**: the faster of the best of several large fp32 matrix products (``torch.mm``,
  square, n = 2048 on the CPU, 8192 on CUDA) and the best of several 3x3 convolutions (256 to 256
  channels at 64x64, direct MAC count), on the thread count of the run, in GMAC/s (one multiply-add
  = one MAC, as everywhere in lfubench). These are the best-tuned kernels of the libraries the
  runtimes use, so the figure is what this machine achieves, not a datasheet's. A runtime whose
  kernels do better (or do fewer multiplications than the direct count, as Winograd convolutions
  do), and every int8 row, can exceed 100%.
- **Memory bandwidth**: the best of several copies of a 256 MiB fp32 tensor into another
  (``Tensor.copy_``), counted as bytes read + bytes written, in GB/s (10^9 bytes).
- **Per row**: achieved GMAC/s = GMACs per image x batch / median seconds; ``pct_of_peak`` =
  100 x achieved / peak compute; ``arithmetic_intensity`` = MACs / bytes moved (the bytes of
  :func:`bench.memory.traffic_bytes`); ``roofline_gmacs_per_s`` = min(peak, intensity x bandwidth),
  the most a model of that intensity can achieve on this device.
- **Energy**: on CUDA, NVML's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ,
  package ``nvidia-ml-py``) over a window of repeated iterations of at least
  :data:`ENERGY_WINDOW_S`; on the CPU, RAPL's ``energy_uj`` counters of the package domains under
  ``/sys/class/powercap`` (summed, wrap-around handled) over the same kind of window. RAPL counts the
  whole socket (other processes included). Where neither can be read the figure is ``None`` and
  :attr:`EnergyMeter.reason` says why. Never estimated from a TDP.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

#: the shortest window the energy counters are read over, seconds
ENERGY_WINDOW_S = 1.0
POWERCAP = Path("/sys/class/powercap")


@dataclass(frozen=True)
class HardwareLimit:
    """The measured ceilings of one device at one thread count."""

    device: str
    threads: int
    peak_gmacs_per_s: float
    bandwidth_gb_s: float
    method: str


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_seconds(fn: Callable[[], object], device: torch.device, repeats: int, min_s: float) -> float:
    fn()  # warm-up: first call pays for allocation and kernel selection
    _sync(device)
    best = float("inf")
    start = time.perf_counter()
    n = 0
    while n < repeats or time.perf_counter() - start < min_s:
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
        n += 1
        if n >= 50:
            break
    return best


@functools.lru_cache(maxsize=8)
def _measure(device: str, threads: int, n: int, copy_mb: int) -> HardwareLimit:
    dev = torch.device(device)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gemm = n**3 / _gemm_seconds(dev, n) / 1e9
        conv = _conv_gmacs_per_s(dev)
        copy_s = _copy_seconds(dev, copy_mb)
    finally:
        torch.set_num_threads(before)
    return HardwareLimit(
        device=device,
        threads=threads,
        peak_gmacs_per_s=max(gemm, conv),
        bandwidth_gb_s=2 * copy_mb * 2**20 / copy_s / 1e9,
        method=f"{'torch.mm' if gemm >= conv else '3x3 conv'}: best of fp32 torch.mm {n}x{n} ({gemm:.1f}) "
        f"and 3x3 conv 256->256 at 64x64 ({conv:.1f} GMAC/s), TF32 off; bandwidth: best {copy_mb} MiB copy "
        f"(read + write); {threads} thread{'s' if threads != 1 else ''}",
    )


def _gemm_seconds(dev: torch.device, n: int) -> float:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dev)
    b = torch.randn(n, n, generator=g).to(dev)
    out = torch.empty(n, n, device=dev)
    with _no_tf32():
        return _best_seconds(lambda: torch.mm(a, b, out=out), dev, repeats=3, min_s=0.3)


def _conv_gmacs_per_s(dev: torch.device, channels: int = 256, size: int = 64) -> float:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, channels, size, size, generator=g).to(dev)
    w = torch.randn(channels, channels, 3, 3, generator=g).to(dev)
    with torch.inference_mode(), _no_tf32():
        seconds = _best_seconds(lambda: torch.nn.functional.conv2d(x, w, padding=1), dev, repeats=3,
                                min_s=0.2)
    return channels * channels * 9 * size * size / seconds / 1e9


def _copy_seconds(dev: torch.device, copy_mb: int) -> float:
    src = torch.ones(copy_mb * 2**20 // 4, device=dev)
    dst = torch.empty_like(src)
    return _best_seconds(lambda: dst.copy_(src), dev, repeats=3, min_s=0.2)


class _no_tf32:
    """TF32 off for the GEMM, so the peak is fp32's (restored afterwards)."""

    def __enter__(self):
        self.old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.old


def hardware_limit(device: str | torch.device = "cpu", threads: int | None = None, *, n: int | None = None,
                   copy_mb: int = 256) -> HardwareLimit:
    """The device's peak fp32 GMAC/s and memory bandwidth at ``threads`` (default: torch's current
    count), measured on the first call and cached for the process."""
    dev = torch.device(device)
    name = "cpu" if dev.type == "cpu" else f"cuda:{dev.index or 0}"
    return _measure(name, threads or torch.get_num_threads(), n or (8192 if dev.type == "cuda" else 2048),
                    copy_mb)


def achieved(gmacs_per_image: float | None, batch: int, median_ms: float | None, limit: HardwareLimit,
             bytes_moved: float | None) -> dict:
    """``achieved_gmacs_per_s``, ``pct_of_peak``, ``arithmetic_intensity`` (MACs per byte moved, per
    image) and ``roofline_gmacs_per_s`` of one measured row (``None`` where an input is missing)."""
    out = dict.fromkeys(("achieved_gmacs_per_s", "pct_of_peak", "arithmetic_intensity",
                         "roofline_gmacs_per_s"))
    if gmacs_per_image and bytes_moved:
        out["arithmetic_intensity"] = gmacs_per_image * 1e9 / bytes_moved
        out["roofline_gmacs_per_s"] = min(limit.peak_gmacs_per_s,
                                          out["arithmetic_intensity"] * limit.bandwidth_gb_s)
    if gmacs_per_image and median_ms:
        out["achieved_gmacs_per_s"] = gmacs_per_image * batch / (median_ms / 1e3)
        out["pct_of_peak"] = 100.0 * out["achieved_gmacs_per_s"] / limit.peak_gmacs_per_s
    return out


# --- energy -----------------------------------------------------------------------------------


def _rapl_domains(root: Path = POWERCAP) -> list[Path]:
    """The package-level RAPL domains (``intel-rapl:N``, not their sub-zones)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)


class EnergyMeter:
    """Energy over a window, read from the counters of :mod:`bench.hardware` (module docstring).

    ``available`` says whether a counter can be read; otherwise ``reason`` says why.
    :meth:`measure` returns joules per image over a window of repeated iterations.
    """

    def __init__(self, device: str | torch.device = "cpu", powercap: Path = POWERCAP) -> None:
        self.device = torch.device(device)
        self.source = ""
        self.reason = ""
        self._read: Callable[[], float] | None = None
        if self.device.type == "cuda":
            self._init_nvml()
        else:
            self._init_rapl(powercap)

    @property
    def available(self) -> bool:
        return self._read is not None

    def _init_nvml(self) -> None:
        try:
            import pynvml  # package nvidia-ml-py
        except ImportError:
            self.reason = "no energy counter: nvidia-ml-py is not installed (pip install 'lfubench[energy]')"
            return
        try:
            pynvml.nvmlInit()
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except Exception as err:  # NVML missing, or a GPU without the counter (before Volta)
            self.reason = f"no energy counter: NVML total energy not readable ({type(err).__name__}: {err})"
            return
        self.source = "NVML nvmlDeviceGetTotalEnergyConsumption (GPU board)"
        self._read = lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1e3  # mJ -> J

    def _init_rapl(self, root: Path) -> None:
        domains = _rapl_domains(root)
        if not domains:
            self.reason = f"no energy counter: no RAPL domains under {root}"
            return
        files = [(d / "energy_uj", d / "max_energy_range_uj") for d in domains]
        try:
            ranges = [int(r.read_text()) for _, r in files]
            [int(f.read_text()) for f, _ in files]
        except (OSError, ValueError) as err:
            self.reason = f"no energy counter: RAPL energy_uj not readable ({type(err).__name__})"
            return
        self.source = f"RAPL energy_uj of {', '.join(d.name for d in domains)} (whole socket)"
        self._ranges = ranges
        self._files = [f for f, _ in files]
        self._read = self._read_rapl

    def _read_rapl(self) -> list[int]:
        return [int(f.read_text()) for f in self._files]

    def _joules(self, start, end) -> float:
        if isinstance(start, list):  # RAPL microjoules, each counter may wrap once
            return sum((e - s) % r for s, e, r in zip(start, end, self._ranges, strict=True)) / 1e6
        return end - start

    def measure(self, step: Callable[[], object], batch: int,
                window_s: float = ENERGY_WINDOW_S) -> float | None:
        """Joules per image: run ``step`` repeatedly for at least ``window_s`` and divide the energy
        counted by the images processed; ``None`` when no counter is available."""
        if self._read is None:
            return None
        _sync(self.device)
        start, t0, n = self._read(), time.perf_counter(), 0
        while n == 0 or time.perf_counter() - t0 < window_s:
            step()
            n += 1
        _sync(self.device)
        end = self._read()
        return self._joules(start, end) / (n * batch)
