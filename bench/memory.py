"""Each model's own peak tensor memory: weights + activations during a forward or a training step.

The process RSS (:class:`bench.latency.PeakRSS`) counts the interpreter, the libraries and every
allocator cache: it reads about the same for a 700-parameter model as for a 500,000-parameter one.
:func:`model_peak_mb` measures the model itself.

- **CPU** (and any device): a :class:`~torch.utils._python_dispatch.TorchDispatchMode` sees every
  tensor an operator returns, including the backward's and the optimizer's; a weak-reference
  finalizer on its storage sees the storage freed. The live bytes of the weights, buffers, input
  and every storage an operator created are summed, and the peak of that sum is the figure. Storages
  shared by views or written in place count once. Chosen over ``torch.profiler``'s memory events
  (a full trace, whose allocation events must be re-ordered and matched to frees) and over an
  allocator hook (PyTorch's CPU allocator keeps no statistics and exposes no hook): it counts
  tensors exactly and independently of allocator caching, so the figure is the same on every
  machine (the tests check it against the profiler's memory events). Scratch buffers that a kernel
  allocates internally and frees before returning (e.g. an im2col workspace) are not tensors and
  are not counted.
- **CUDA**: ``torch.cuda.max_memory_allocated`` over one forward (or step) after
  ``reset_peak_memory_stats``, with the model and the input already on the device (so weights,
  input and activations; a cuDNN workspace that goes through PyTorch's allocator is included).

The same tracker counts every byte an operator writes, from which :func:`traffic_bytes` defines
the bytes a forward moves (see :mod:`bench.hardware`).
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

MB = 2**20

#: how ``model_peak_mb`` is measured, per device type
CPU_METHOD = "live tensor storages (weights + input + activations) tracked per operator, peak; MiB"
CUDA_METHOD = "torch.cuda.max_memory_allocated over one forward or step (weights + input + activations); MiB"


class LiveTensors(TorchDispatchMode):
    """Live tensor bytes while active: :attr:`current`, :attr:`peak`, and :attr:`written` (bytes of
    every storage an operator created). Storages that exist before (weights, the input) are
    registered with :meth:`add`."""

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[int, int] = {}
        self.current = self.peak = self.written = 0

    def add(self, tensor: torch.Tensor) -> bool:
        """Count ``tensor``'s storage until it is freed; ``False`` if it is counted already."""
        storage = tensor.untyped_storage()
        key, size = storage.data_ptr(), storage.nbytes()
        if size == 0 or key in self._live:
            return False
        self._live[key] = size
        self.current += size
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._free, key)
        return True

    def _free(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta" and self.add(t):
                self.written += t.untyped_storage().nbytes()
        return out


@dataclass(frozen=True)
class ModelMemory:
    """One measurement: ``peak_mb`` (the figure), ``weights_mb`` (parameters + buffers),
    ``input_mb``, ``written_mb`` (bytes every operator wrote; CPU tracker only) and ``method``."""

    peak_mb: float
    weights_mb: float
    input_mb: float
    written_mb: float | None
    method: str


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers (each storage once)."""
    seen: dict[int, int] = {}
    for t in [*model.parameters(), *model.buffers()]:
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


def _step(model: nn.Module, x: torch.Tensor, mode: str, precision_ctx) -> None:
    if mode == "inference":
        with torch.inference_mode(), precision_ctx():
            model(x)
        return
    forward = getattr(model, "forward_heads", None) or model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    with precision_ctx():
        out = forward(x)
        heads = out if isinstance(out, list | tuple) else [out]
        loss = sum(h.float().square().mean() for h in heads)
    loss.backward()
    opt.step()


def model_peak_mb(model: nn.Module, x: torch.Tensor, mode: str = "inference",
                  autocast: torch.dtype | None = None) -> ModelMemory:
    """Peak tensor memory of ``model`` (left untouched: a copy runs) on input ``x``.

    Args:
        model: any module; a copy is moved to ``x``'s device.
        x: the input, batch included, on the device to measure.
        mode: ``"inference"`` (a ``torch.inference_mode`` forward) or ``"train"`` (forward of every
            deep-supervision head, backward of the mean squared logits, one Adam step: gradients
            and optimizer state included).
        autocast: ``torch.autocast`` dtype (``None``: fp32).

    Returns:
        :class:`ModelMemory`; ``peak_mb`` is at least the weights' size.
    """
    if mode not in ("inference", "train"):
        raise ValueError(f"unknown mode {mode!r}; choose inference or train")
    net = copy.deepcopy(model).to(x.device)
    net.train(mode == "train")

    def precision_ctx():
        if autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=x.device.type, dtype=autocast)

    weights = weight_bytes(net)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        before = torch.cuda.memory_allocated(x.device)
        _step(net, x, mode, precision_ctx)
        torch.cuda.synchronize(x.device)
        # tensors of other owners alive before the step are not the model's
        others = before - weights - x.untyped_storage().nbytes()
        peak = torch.cuda.max_memory_allocated(x.device) - max(others, 0)
        return ModelMemory(peak / MB, weights / MB, x.untyped_storage().nbytes() / MB, None, CUDA_METHOD)
    tracker = LiveTensors()
    for t in [*net.parameters(), *net.buffers(), x]:
        tracker.add(t)
    with tracker:
        _step(net, x, mode, precision_ctx)
    return ModelMemory(tracker.peak / MB, weights / MB, x.untyped_storage().nbytes() / MB,
                       tracker.written / MB, CPU_METHOD)


def traffic_bytes(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """``(bytes moved, bytes written)`` by one fp32 inference forward of ``model`` on ``x`` (CPU).

    Bytes moved = the weights read once + the input read once + every operator's output written
    once and read once (2 x bytes written): the traffic of a forward that keeps nothing in cache
    between operators and re-reads nothing within one. The convention of
    :data:`bench.conventions.INTENSITY`.
    """
    mem = model_peak_mb(model, x.detach().cpu().float())
    written = round(mem.written_mb * MB)
    return round((mem.weights_mb + mem.input_mb) * MB) + 2 * written, written
