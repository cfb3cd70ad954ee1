"""Model complexity: parameter counts and multiply-accumulate counts.

Convention: **MACs**, 1 multiply-add = 1 MAC; GFLOPs = 2 x GMACs. The primary counter is
fvcore's ``FlopCountAnalysis``, whose "flops" are in fact MACs (one per fused multiply-add).
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

MAC_CONVENTION = "GMACs (fvcore), 1 multiply-add = 1 MAC; GFLOPs = 2 x GMACs"

log = logging.getLogger(__name__)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def fvcore_macs(model: nn.Module, input_shape: tuple[int, ...], batch: int = 1) -> int:
    """MACs of one forward pass of ``model`` in eval mode on a ``(batch, *input_shape)`` input."""
    from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(batch, *input_shape)
        analysis = FlopCountAnalysis(model, x)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        with warnings.catch_warnings():  # fvcore's tracer uses deprecated torch.jit APIs
            warnings.simplefilter("ignore", DeprecationWarning)
            total = int(analysis.total())
        ignored = analysis.unsupported_ops()
        if ignored:
            log.debug("fvcore counts no MACs for: %s", dict(ignored))
        return total
    finally:
        model.train(was_training)
