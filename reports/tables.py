"""Results tables: the tidy per-case results aggregated into one row per
(model, pruning level, dataset), written as CSV, Markdown and LaTeX.

Tidy results (``results.csv``) have one row per item x case x class/region x metric with the
columns of :data:`reports.schema.RESULT_COLUMNS`; efficiency figures (one row per item x level x
measured configuration) those of :data:`reports.schema.EFFICIENCY_COLUMNS`. The aggregated
table gives, per (label, level, dataset), the mean and standard deviation over cases and
seeds of every metric, the number of cases whose value was NaN (an empty reference or
prediction under the ``nan`` convention; never dropped silently), and the efficiency figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from .text import format_number, format_rows

KEYS = ["label", "level", "dataset"]


def aggregate(tidy: pd.DataFrame, efficiency: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (label, level, dataset): ``<metric> <region>`` mean, ``... sd``, ``... nan``
    counts, plus the mean of the efficiency figures over seeds."""
    if tidy.empty:
        return pd.DataFrame(columns=KEYS)
    grouped = tidy.groupby(KEYS + ["metric", "region"], sort=False)["value"]
    stats = grouped.agg(mean="mean", sd="std", nan=lambda v: int(v.isna().sum())).reset_index()
    wide = stats.set_index(KEYS + ["metric", "region"])[["mean", "sd", "nan"]].unstack(["metric", "region"])
    out = pd.DataFrame(index=wide.index)
    for metric, region in dict.fromkeys((m, r) for _, m, r in wide.columns):
        out[f"{metric} {region}"] = wide["mean", metric, region]
        out[f"{metric} {region} sd"] = wide["sd", metric, region]
        if wide["nan", metric, region].fillna(0).any():
            out[f"{metric} {region} nan"] = wide["nan", metric, region].astype("Int64")
    out = out.reset_index()
    if efficiency is not None and not efficiency.empty:
        eff = efficiency.groupby(KEYS, sort=False).agg(
            params=("params", "first"), gmacs=("gmacs", "first"), latency_ms=("latency_ms", "median"),
            peak_mb=("peak_mb", "max")).reset_index()
        out = out.merge(eff, on=KEYS, how="left")
    return out


def mean_score(tidy: pd.DataFrame, metric: str = "dice") -> pd.DataFrame:
    """Per (label, level, dataset): the mean of ``metric`` over cases, seeds and classes/regions."""
    sel = tidy[tidy["metric"] == metric]
    keys = KEYS + (["model"] if "model" in tidy else [])
    return sel.groupby(keys, sort=False)["value"].mean().rename(metric).reset_index()


def cells(table: pd.DataFrame) -> list[dict]:
    """The table's rows as display strings: ``mean ± sd`` where an sd column exists, every number
    in the one format of :func:`reports.text.format_number`. Markdown, LaTeX and the PDF all
    show these cells."""
    cols = [c for c in table.columns if not c.endswith(" sd")]
    out = []
    for _, r in table.iterrows():
        shown = {}
        for c in cols:
            value = r[c]
            value = None if pd.isna(value) else value.item() if hasattr(value, "item") else value
            cell = format_number(value)
            sd = f"{c} sd"
            if sd in table.columns and not pd.isna(r[sd]):
                cell += f" ± {format_number(float(r[sd]))}"
            shown[c] = cell
        out.append(shown)
    return out


def by_dataset(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The table split per dataset, each without the columns that are empty for it."""
    return [(name, grp.dropna(axis=1, how="all").reset_index(drop=True))
            for name, grp in table.groupby("dataset", sort=False)] if len(table) else [("", table)]


def _caption(captions: Mapping[str, str] | str, name: str) -> str:
    return captions if isinstance(captions, str) else captions.get(name, "")


def to_markdown(table: pd.DataFrame, captions: Mapping[str, str] | str = "") -> str:
    """Markdown tables, one per dataset, each headed by its caption (``captions``: one string,
    or one per dataset name)."""
    parts = []
    for name, grp in by_dataset(table):
        caption = _caption(captions, name)
        heading = "\n\n".join(t for t in (f"**{name}**" if name else "", caption) if t)
        numeric = [c for c in grp.columns if c not in ("label", "dataset")]
        body = format_rows(cells(grp), "md", right=numeric) if len(grp) else ""
        parts.append((f"{heading}\n\n" if heading else "") + body + "\n")
    return "\n".join(parts)


def _esc(text: str) -> str:
    """Text escaped for LaTeX."""
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("$", r"\$"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"),
                 ("^", r"\textasciicircum{}")):
        text = text.replace(a, b)
    return text.replace("±", r"$\pm$").replace("–", "--")


def to_latex(table: pd.DataFrame, captions: Mapping[str, str] | str = "", label: str = "tab:results") -> str:
    """LaTeX ``table`` environments (booktabs rules), one per dataset; mean ± sd cells, the best
    mean Dice of each column in bold."""
    return "\n".join(_latex(grp, _caption(captions, name), f"{label}-{name}" if name else label)
                     for name, grp in by_dataset(table))


def _latex(table: pd.DataFrame, caption: str, label: str) -> str:
    shown = cells(table)
    cols = list(shown[0]) if shown else [c for c in table.columns if not c.endswith(" sd")]
    best = {c: table[c].max() for c in cols if c.startswith("dice ")}
    body = []
    for k, r in enumerate(shown):
        row = []
        for c in cols:
            cell = _esc(r[c])
            if c in best and not pd.isna(table[c].iloc[k]) and table[c].iloc[k] == best[c]:
                cell = rf"\textbf{{{cell}}}"
            row.append(cell)
        body.append(" & ".join(row) + r" \\")
    spec = "l" * len(KEYS) + "r" * (len(cols) - len(KEYS))
    return "\n".join([
        r"\begin{table}[t]", r"\centering", rf"\caption{{{_esc(caption)}}}", rf"\label{{{label}}}",
        r"\resizebox{\linewidth}{!}{%", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
        " & ".join(_esc(c) for c in cols) + r" \\", r"\midrule", *body, r"\bottomrule", r"\end{tabular}}",
        r"\end{table}", ""])


def write_tables(table: pd.DataFrame, out_dir: str | Path, captions: Mapping[str, str] | str) -> list[Path]:
    """Write ``table.csv``, ``table.md`` and ``table.tex`` into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "table.csv", out / "table.md", out / "table.tex"]
    table.to_csv(paths[0], index=False)
    paths[1].write_text(to_markdown(table, captions))
    paths[2].write_text(to_latex(table, captions))
    return paths
