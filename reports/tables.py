"""Results tables: the tidy per-case results aggregated into one row per
(model, pruning level, dataset), written as CSV, Markdown and LaTeX.

Tidy results (``results.csv``) have one row per item x case x class/region x metric with the
columns of :data:`TIDY_COLUMNS`; efficiency figures (one row per item x level) have the
columns of :data:`EFFICIENCY_COLUMNS`. The aggregated table gives, per (label, level,
dataset), the mean and standard deviation over cases and seeds of every metric, the number
of cases whose value was NaN (an empty reference or prediction under the ``nan``
convention; never dropped silently), and the efficiency figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TIDY_COLUMNS = ["item", "model", "label", "dataset", "seed", "level", "case", "region", "metric", "value"]
EFFICIENCY_COLUMNS = ["item", "label", "dataset", "seed", "level", "params", "gmacs", "latency_ms",
                      "peak_mb", "device", "batch", "precision", "input"]
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


def _fmt(value, column: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if column == "params":
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def by_dataset(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The table split per dataset, each without the columns that are empty for it."""
    return [(name, grp.dropna(axis=1, how="all").reset_index(drop=True))
            for name, grp in table.groupby("dataset", sort=False)] if len(table) else [("", table)]


def to_markdown(table: pd.DataFrame, caption: str = "") -> str:
    """Markdown tables (pipe syntax), one per dataset, with ``caption`` stated above them."""
    parts = [_markdown(grp, f"**{name}**" if name else "") for name, grp in by_dataset(table)]
    return (f"{caption}\n\n" if caption else "") + "\n".join(parts)


def _markdown(table: pd.DataFrame, heading: str) -> str:
    cols = [c for c in table.columns if not c.endswith(" sd")]
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for _, row in table.iterrows():
        cells = []
        for c in cols:
            cell = _fmt(row[c], c)
            sd = f"{c} sd"
            if sd in table.columns and not pd.isna(row[sd]):
                cell += f" ± {row[sd]:.3f}"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return (f"{heading}\n\n" if heading else "") + "\n".join(lines) + "\n"


def to_latex(table: pd.DataFrame, caption: str = "", label: str = "tab:results") -> str:
    """LaTeX ``table`` environments (booktabs rules), one per dataset; mean ± sd cells, the best
    mean Dice of each column in bold."""
    return "\n".join(_latex(grp, f"{caption} ({name})" if name else caption,
                            f"{label}-{name}" if name else label) for name, grp in by_dataset(table))


def _latex(table: pd.DataFrame, caption: str, label: str) -> str:
    cols = [c for c in table.columns if not c.endswith(" sd")]

    def esc(text: str) -> str:
        for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
            text = text.replace(a, b)
        return text

    best = {c: table[c].max() for c in cols if c.startswith("dice ")}
    body = []
    for _, row in table.iterrows():
        cells = []
        for c in cols:
            cell = esc(_fmt(row[c], c))
            sd = f"{c} sd"
            if sd in table.columns and not pd.isna(row[sd]):
                cell += rf" $\pm$ {row[sd]:.3f}"
            if c in best and not pd.isna(row[c]) and row[c] == best[c]:
                cell = rf"\textbf{{{cell}}}"
            cells.append(cell)
        body.append(" & ".join(cells) + r" \\")
    spec = "l" * len(KEYS) + "r" * (len(cols) - len(KEYS))
    return "\n".join([
        r"\begin{table}[t]", r"\centering", rf"\caption{{{esc(caption)}}}", rf"\label{{{label}}}",
        r"\resizebox{\linewidth}{!}{%", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
        " & ".join(esc(c) for c in cols) + r" \\", r"\midrule", *body, r"\bottomrule", r"\end{tabular}}",
        r"\end{table}", ""])


def write_tables(table: pd.DataFrame, out_dir: str | Path, caption: str) -> list[Path]:
    """Write ``table.csv``, ``table.md`` and ``table.tex`` into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "table.csv", out / "table.md", out / "table.tex"]
    table.to_csv(paths[0], index=False)
    paths[1].write_text(to_markdown(table, caption))
    paths[2].write_text(to_latex(table, caption))
    return paths
