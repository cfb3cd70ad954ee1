"""Model complexity: parameter counts and multiply-accumulate counts, with four counters
reconciled.

Convention: **MACs**, 1 multiply-add = 1 MAC; GFLOPs = 2 x GMACs (the sentences printed with
the figures: :data:`bench.conventions.MACS` and :data:`bench.conventions.MAC_COUNTERS`). The
primary counter is fvcore's ``FlopCountAnalysis``, whose "flops" are in fact MACs (one per fused
multiply-add).
ptflops (``pytorch`` and ``aten`` backends, always named explicitly) and
``torch.utils.flop_counter`` (which reports FLOPs = 2 x MACs) give the other views. They agree
exactly on the convolutions' multiply-adds and differ in what else they count (bias, batch
norm, upsampling, pooling, activations, additions, ops whose result is discarded): see
:func:`mac_report`, which attributes every MAC of every counter to an op category.

Modules: ``params`` (total, trainable, used-at-inference parameters), ``trace`` (the ops of a
forward on the meta device), ``counters`` (the four libraries), ``rules`` (each counter's rule,
written out), ``reconcile`` (the report).
"""

from __future__ import annotations

from .counters import FVCORE_IGNORED_OPS, fvcore_macs, run_flop_counter, run_fvcore, run_ptflops
from .params import ParamCounts, count_params, param_counts, used_parameters
from .reconcile import UNUSED, MacReport, mac_report, report_rows
from .rules import COUNTERS, RULES
from .trace import CATEGORIES, trace

__all__ = [
    "CATEGORIES",
    "COUNTERS",
    "FVCORE_IGNORED_OPS",
    "RULES",
    "UNUSED",
    "MacReport",
    "ParamCounts",
    "count_params",
    "fvcore_macs",
    "mac_report",
    "param_counts",
    "report_rows",
    "run_flop_counter",
    "run_fvcore",
    "run_ptflops",
    "trace",
    "used_parameters",
]
