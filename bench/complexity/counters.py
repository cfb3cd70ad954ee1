"""Run the four MAC counters as libraries: fvcore, ptflops (both backends) and
``torch.utils.flop_counter``.

fvcore and ptflops' ``pytorch`` backend run a real forward on the model's device (fvcore traces
with ``torch.jit``; ptflops patches ``torch.nn.functional`` and module hooks, whose counts the
``meta`` device's Python decompositions would inflate). ptflops' ``aten`` backend and
``flop_counter`` count at the dispatcher and run on a ``meta`` copy (shapes only).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import nn

log = logging.getLogger(__name__)

#: Ops the zoo executes for which fvcore has no handle. fvcore would warn "unsupported operator"
#: and count 0; lfubench registers them as explicitly ignored (still 0 MACs), and every report
#: lists them as ignored by fvcore.
FVCORE_IGNORED_OPS = (
    "aten::max_pool2d",
    "aten::max_pool2d_with_indices",
    "aten::avg_pool2d",
    "aten::add",
    "aten::add_",
    "aten::sub",
    "aten::mul",
    "aten::mul_",
    "aten::div",
    "aten::div_",
    "aten::sigmoid",
    "aten::softmax",
)


@dataclass
class FvcoreResult:
    """fvcore's view: ``total`` MACs, ``by_operator`` and ``by_module`` (fvcore's own
    breakdowns), ``unsupported`` ops (no handle, counted 0) and ``uncalled`` modules (absent from
    the traced graph, e.g. heads whose result is discarded)."""

    total: int
    by_operator: dict[str, int] = field(default_factory=dict)
    by_module: dict[str, int] = field(default_factory=dict)
    unsupported: dict[str, int] = field(default_factory=dict)
    uncalled: list[str] = field(default_factory=list)


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def run_fvcore(model: nn.Module, input_shape: tuple[int, ...], batch: int = 1) -> FvcoreResult:
    """fvcore ``FlopCountAnalysis`` of one eval forward on a ``(batch, *input_shape)`` input."""
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():  # fvcore uses deprecated torch.jit APIs
            warnings.simplefilter("ignore", DeprecationWarning)
            from fvcore.nn import FlopCountAnalysis

            x = torch.zeros(batch, *input_shape, device=_device_of(model))
            analysis = FlopCountAnalysis(model, x)
            analysis.set_op_handle(**dict.fromkeys(FVCORE_IGNORED_OPS))
            analysis.unsupported_ops_warnings(False)  # reported below and in every MAC report
            analysis.uncalled_modules_warnings(False)
            total = int(analysis.total())
            unsupported = dict(analysis.unsupported_ops())
            result = FvcoreResult(
                total=total,
                by_operator={k: int(v) for k, v in analysis.by_operator().items()},
                by_module={k: int(v) for k, v in analysis.by_module().items()},
                unsupported=unsupported,
                uncalled=sorted(analysis.uncalled_modules()),
            )
    finally:
        model.train(was_training)
    if unsupported:
        log.warning(
            "fvcore has no handle for %s: counted as 0 MACs",
            ", ".join(f"{k} ({v}x)" for k, v in sorted(unsupported.items())),
        )
    return result


def fvcore_macs(model: nn.Module, input_shape: tuple[int, ...], batch: int = 1) -> int:
    """MACs of one forward pass of ``model`` in eval mode on a ``(batch, *input_shape)`` input,
    as fvcore counts them (see :data:`FVCORE_IGNORED_OPS` for the ops it counts as 0)."""
    return run_fvcore(model, input_shape, batch).total


def run_ptflops(model: nn.Module, input_shape: tuple[int, ...], backend: str) -> int:
    """ptflops MACs per image with the given backend (``"pytorch"`` or ``"aten"``, passed
    explicitly); raises ``RuntimeError`` with ptflops' message if it fails."""
    from ptflops import get_model_complexity_info
    from ptflops.flops_counter import FLOPS_BACKEND

    be = FLOPS_BACKEND(backend)
    # ptflops attaches attributes and hooks to the modules: count on a copy
    if be is FLOPS_BACKEND.ATEN:
        work = copy.deepcopy(model).to("meta").eval()
    else:
        work = copy.deepcopy(model).eval()
    device = _device_of(work)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        macs, _ = get_model_complexity_info(
            work,
            tuple(input_shape),
            print_per_layer_stat=False,
            as_strings=False,
            input_constructor=lambda shape: torch.zeros(1, *shape, device=device),
            ost=out,
            verbose=False,
            backend=be,
            backend_specific_config={"count_functional": True},
        )
    if macs is None:
        lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
        raise RuntimeError(f"ptflops ({backend}) failed: {lines[-1] if lines else 'no message'}")
    return int(macs)


def run_flop_counter(model: nn.Module, input_shape: tuple[int, ...], batch: int = 1) -> dict[str, int]:
    """``torch.utils.flop_counter`` FLOPs per aten op (2 FLOPs per multiply-add) on a meta copy."""
    from torch.utils.flop_counter import FlopCounterMode

    work = copy.deepcopy(model).to("meta").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        work(torch.zeros(batch, *input_shape, device="meta"))
    counts: Counter[str] = Counter()
    for op, flops in counter.get_flop_counts().get("Global", {}).items():
        counts[str(op).removeprefix("aten.")] += int(flops)
    return dict(counts)
