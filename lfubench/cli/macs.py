"""The MAC report of ``lfubench profile --macs`` as Markdown.

:func:`bench.complexity.mac_report` returns the data; this module only renders it, with the one
table formatter (:func:`reports.text.format_rows`) and the convention sentences of
:mod:`bench.conventions`.
"""

from __future__ import annotations

from lfubench.bench.complexity import COUNTERS, FVCORE_IGNORED_OPS, RULES, UNUSED, MacReport
from lfubench.bench.conventions import MAC_COUNTERS, MACS
from lfubench.reports.text import format_rows

#: the sentence above a MAC report: the MAC convention, then how the four counters relate
MAC_HEADER = f"{MACS}. {MAC_COUNTERS}."


def _mmacs(value: int | None) -> str:
    return "failed" if value is None else f"{value / 1e6:,.3f}"


def _table(rows: list[dict]) -> list[str]:
    """A Markdown table, the figures (every column after the first) right-aligned."""
    return format_rows(rows, "md", right=list(rows[0])[1:] if rows else ()).splitlines()


def _totals(report: MacReport) -> list[dict]:
    rows = []
    for counter in COUNTERS:
        total = report.totals[counter]
        if counter == "flop_counter" and report.flop_counter_flops is not None:
            reported = f"{report.flop_counter_flops / 1e9:.4f} GFLOPs"
        else:
            reported = "failed" if total is None else f"{total / 1e9:.4f} GMACs"
        unexplained = report.unexplained[counter]
        rows.append({
            "counter": counter,
            "GMACs": "failed" if total is None else f"{total / 1e9:.4f}",
            "as the library reports it": reported,
            "MACs unexplained by the rules": "n/a" if unexplained is None else f"{unexplained:,}",
        })
    return rows


def _by_category(report: MacReport) -> list[dict]:
    rows = [
        {"category": cat, "ops": str(report.ops.get(cat, 0)), **{k: _mmacs(vals[k]) for k in COUNTERS}}
        for cat, vals in report.by_category.items()
    ]
    rules_total = {k: _mmacs(sum(v[k] for v in report.by_category.values())) for k in COUNTERS}
    rows.append({"category": "total (rules)", "ops": "", **rules_total})
    rows.append({"category": "total (library)", "ops": "", **{k: _mmacs(report.totals[k]) for k in COUNTERS}})
    return rows


def _ignored(report: MacReport) -> list[str]:
    out = [f"- {counter}: {', '.join(report.ignored[counter]) or 'nothing'}" for counter in COUNTERS]
    unsupported = ", ".join(f"{k} ({v}x)" for k, v in report.fvcore_unsupported.items()) or "none"
    out.append(
        f"- fvcore ops without any handle: {unsupported}; registered as ignored by lfubench: "
        f"{', '.join(FVCORE_IGNORED_OPS)}"
    )
    if report.fvcore_uncalled:
        uncalled = ", ".join(report.fvcore_uncalled)
        out.append(f"- modules absent from fvcore's traced graph (result unused): {uncalled}")
    out += [f"- {counter} FAILED: {message}" for counter, message in report.errors.items()]
    return out


def _rules(report: MacReport) -> list[str]:
    present = list(report.by_category)
    bases = list(dict.fromkeys(k.removesuffix(UNUSED) for k in present))
    if any(k.endswith(UNUSED) for k in present):
        bases.append("result unused")
    return [
        f"- **{base}**: "
        + "; ".join(f"*{k}*: {RULES[k].get(base, 'not modelled (see unexplained)')}" for k in COUNTERS)
        for base in bases
    ]


def render_markdown(report: MacReport, rules: bool = True) -> str:
    """``report`` as Markdown: totals, reconciliation by op category, the ops each counter
    ignores, (with ``rules``) each counter's rule per category, and MACs by module."""
    c, h, w = report.input_shape
    out = [f"### {report.model}: MACs per image at {c}x{h}x{w}", "", MAC_HEADER, ""]
    if report.params is not None:
        p = report.params
        out += [
            f"Parameters: {p.total:,} total, {p.trainable:,} trainable, {p.used:,} used at inference "
            "(reached by the output's autograd graph).",
            "",
        ]
    out += _table(_totals(report))
    out += ["", "Reconciliation by op category (MMACs; each counter's rule applied to the traced ops):", ""]
    out += _table(_by_category(report))
    out += ["", "Executed but counted as 0 (ignored):"] + _ignored(report)
    if rules:
        out += ["", "Rules (what each counter counts per category):", ""] + _rules(report)
    out += [
        "",
        f"By module (depth {report.module_depth}; (model) = ops in the model's own forward), MMACs:",
        "",
    ]
    modules = [
        {"module": mod, **{k: _mmacs(v[k]) for k in COUNTERS}}
        for mod, v in report.by_module.items()
        if any(v.values())
    ]
    out += _table(modules) if modules else ["(no MACs)"]
    return "\n".join(out)
