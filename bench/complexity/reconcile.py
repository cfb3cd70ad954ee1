"""The MAC report: four counters side by side, reconciled per op category and per module.

For every counter the library's own total is compared with the sum of its rule
(:mod:`bench.complexity.rules`) over the traced ops (:mod:`bench.complexity.trace`); the
difference is reported as "unexplained" (0 for every model in the zoo, which the tests check).
The report is data (:class:`MacReport`, tidy rows from :func:`report_rows`); the command line
renders it (``lfubench profile --macs``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from torch import nn

from .counters import run_flop_counter, run_fvcore, run_ptflops
from .params import ParamCounts, param_counts
from .rules import COUNTERS, RULE_FUNCTIONS, RULES
from .trace import CATEGORIES, Event, trace

log = logging.getLogger(__name__)

#: suffix of the categories of ops whose result does not reach the output
UNUSED = " (result unused)"


@dataclass
class MacReport:
    """MACs of one eval forward per image, by four counters.

    Attributes:
        model: model name (with non-default settings).
        input_shape: ``(C, H, W)``.
        totals: each counter's library total in MACs (``None`` if it failed; ``flop_counter`` / 2).
        flop_counter_flops: ``flop_counter``'s total as reported, in FLOPs.
        by_category: ``{category: {counter: MACs}}`` from the rules; ops whose result does not
            reach the output get the category suffix " (result unused)".
        ops: number of traced calls per category.
        by_module: ``{module path (truncated to module_depth): {counter: MACs}}`` from the rules.
        unexplained: library total minus the rule sum, per counter.
        ignored: per counter, the categories executed but counted as 0.
        library_conv: convolution MACs as the libraries break them down themselves (fvcore's
            ``by_operator()["conv"]``, ``flop_counter``'s ``aten.convolution`` / 2).
        fvcore_unsupported: ops fvcore had no handle for, even after lfubench's (counted 0).
        fvcore_uncalled: modules absent from fvcore's traced graph.
        errors: counters that failed, with the message.
        params: parameter counts (total, trainable, used at inference).
    """

    model: str
    input_shape: tuple[int, ...]
    totals: dict[str, int | None]
    flop_counter_flops: int | None
    by_category: dict[str, dict[str, int]]
    ops: dict[str, int]
    by_module: dict[str, dict[str, int]]
    unexplained: dict[str, int | None]
    ignored: dict[str, list[str]]
    library_conv: dict[str, int]
    fvcore_unsupported: dict[str, int] = field(default_factory=dict)
    fvcore_uncalled: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    params: ParamCounts | None = None
    module_depth: int = 2

    def gmacs(self, counter: str = "fvcore") -> float | None:
        total = self.totals.get(counter)
        return None if total is None else total / 1e9


def _module_key(path: str, depth: int) -> str:
    return ".".join(path.split(".")[:depth]) if path else "(model)"


def apply_rules(events: list[Event], module_depth: int = 2):
    """Per-category, per-module and total MACs of each counter's rule over ``events``."""
    by_category: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
    by_module: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
    ops: dict[str, int] = defaultdict(int)
    for ev in events:
        if ev.kind == "call":
            ops[ev.category + ("" if ev.live else UNUSED)] += 1
            if ev.category == "conv":
                ops["conv bias" + ("" if ev.live else UNUSED)] += int(bool(ev.attrs.get("bias")))
        for counter, rule in RULE_FUNCTIONS.items():
            for cat, macs in rule(ev).items():
                key = cat + ("" if ev.live else UNUSED)
                by_category[key][counter] += macs
                by_module[_module_key(ev.module, module_depth)][counter] += macs
    for key in ops:  # categories executed but counted by no counter still get a row
        by_category[key]  # noqa: B018
    order = {c: i for i, c in enumerate(CATEGORIES)}

    def sort_key(key: str):
        base = key.removesuffix(UNUSED)
        return (key.endswith(UNUSED), order.get(base, len(order)), key)

    cats = {k: by_category[k] for k in sorted(by_category, key=sort_key)}
    return cats, dict(ops), dict(by_module)


def mac_report(
    model: nn.Module,
    input_shape: tuple[int, ...],
    name: str | None = None,
    module_depth: int = 2,
    with_params: bool = True,
) -> MacReport:
    """Count the MACs of ``model`` on one ``(1, *input_shape)`` input with the four counters and
    reconcile them (see the module docstring). The model is left as it was."""
    events = trace(model, input_shape)
    by_category, ops, by_module = apply_rules(events, module_depth)
    totals: dict[str, int | None] = {}
    errors: dict[str, str] = {}
    library_conv: dict[str, int] = {}
    fv = None
    flops = None
    try:
        fv = run_fvcore(model, input_shape)
        totals["fvcore"] = fv.total
        library_conv["fvcore"] = fv.by_operator.get("conv", 0)
    except Exception as err:  # a counter failing must not hide the others
        errors["fvcore"] = f"{type(err).__name__}: {err}"
    for backend in ("pytorch", "aten"):
        try:
            totals[f"ptflops-{backend}"] = run_ptflops(model, input_shape, backend)
        except Exception as err:
            errors[f"ptflops-{backend}"] = f"{type(err).__name__}: {err}"
    try:
        per_op = run_flop_counter(model, input_shape)
        flops = sum(per_op.values())
        totals["flop_counter"] = flops // 2
        library_conv["flop_counter"] = sum(v for k, v in per_op.items() if "convolution" in k) // 2
    except Exception as err:
        errors["flop_counter"] = f"{type(err).__name__}: {err}"
    for counter in COUNTERS:
        totals.setdefault(counter, None)
    explained = {c: sum(row[c] for row in by_category.values()) for c in COUNTERS}
    unexplained = {c: None if totals[c] is None else totals[c] - explained[c] for c in COUNTERS}
    for c, diff in unexplained.items():
        if diff:
            log.warning("%s: %s counts %d MACs that no lfubench rule explains", name or "model", c, diff)
    ignored = {c: [k for k in by_category if ops.get(k) and by_category[k][c] == 0] for c in COUNTERS}
    return MacReport(
        model=name or getattr(model, "model_name", type(model).__name__),
        input_shape=tuple(input_shape),
        totals=totals,
        flop_counter_flops=flops,
        by_category=by_category,
        ops=ops,
        by_module=by_module,
        unexplained=unexplained,
        ignored=ignored,
        library_conv=library_conv,
        fvcore_unsupported=fv.unsupported if fv else {},
        fvcore_uncalled=fv.uncalled if fv else [],
        errors=errors,
        params=param_counts(model, input_shape) if with_params else None,
        module_depth=module_depth,
    )


def report_rows(report: MacReport) -> list[dict]:
    """Tidy rows (model, input, category, counter, macs, rule) for CSV/JSON and pandas."""
    c, h, w = report.input_shape
    rows = []
    for cat, vals in report.by_category.items():
        for counter in COUNTERS:
            rows.append(
                {
                    "model": report.model,
                    "input": f"{c}x{h}x{w}",
                    "category": cat,
                    "ops": report.ops.get(cat, 0),
                    "counter": counter,
                    "macs": vals[counter],
                    "rule": RULES[counter].get(
                        cat.removesuffix(UNUSED) if not cat.endswith(UNUSED) else "result unused",
                        "not modelled",
                    ),
                }
            )
    for counter in COUNTERS:
        rows.append(
            {
                "model": report.model,
                "input": f"{c}x{h}x{w}",
                "category": "total (library)",
                "ops": 0,
                "counter": counter,
                "macs": report.totals[counter],
                "rule": report.errors.get(counter, ""),
            }
        )
        rows.append(
            {
                "model": report.model,
                "input": f"{c}x{h}x{w}",
                "category": "unexplained",
                "ops": 0,
                "counter": counter,
                "macs": report.unexplained[counter],
                "rule": "library total - rules",
            }
        )
    return rows
