"""Results tables from the aggregate (:mod:`reports.aggregate`): the results table per dataset
(family, model, level, costs and ``mean ± sd`` of every metric and region) and the statistics
table per metric, as :class:`Display` objects, written as CSV (every number: the aggregate's one
wide pivot), Markdown and LaTeX (booktabs) from the same numbers.

Efficiency figures are those of each dataset's measured configuration (its first: device,
batch, precision), stated in the caption; ``efficiency.csv`` keeps them all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .aggregate import metric_regions, metrics, model_rows, series, wide
from .gate import GATE_KEYS, GATES, gate_frame, gate_name, ratio_name
from .schema import STATISTICS
from .stats import ALPHA
from .text import MISSING, format_number, format_rows

#: metrics where lower is better (everything else: higher)
LOWER_IS_BETTER = {"hd95", "hd", "assd"}

#: display names of metrics and their units
METRIC_NAMES = {
    "dice": ("Dice", ""),
    "hd95": ("HD95", "mm"),
    "hd": ("HD", "mm"),
    "assd": ("ASSD", "mm"),
    "iou": ("IoU", ""),
    "sensitivity": ("Sensitivity", ""),
    "precision": ("Precision", ""),
}

#: efficiency columns of the table: (row measure, header, lower is better)
COST_COLUMNS = [
    ("params", "Params", True),
    ("gmacs", "GMACs", True),
    ("latency_ms", "Latency (ms)", True),
    ("peak_mb", "Model peak (MB)", True),  # the model's own tensor memory, never the process RSS
    ("train_s", "Train (s)", True),
]


def row_label(label: str, stage: str) -> str:
    """The label shown for a row: a model before channel pruning says so."""
    return f"{label} (before pruning)" if stage == "before-pruning" else str(label)


def row_name(r) -> str:
    """A model row (of :func:`reports.aggregate.model_rows`) as the text names it: its label and,
    for a model with levels, the level (``LFU-Net w8 L4``)."""
    level = int(r["level"]) if pd.notna(r["level"]) else 0
    return row_label(r["label"], r["stage"]) + (f" L{level}" if level > 0 else "")


def metric_name(metric: str) -> str:
    """The display name of a metric (``Dice``, ``HD95``)."""
    return METRIC_NAMES.get(metric, (metric, ""))[0]


# -- display -------------------------------------------------------------------------------


@dataclass
class Display:
    """A table to show: header, rows of text cells (no markup), the cells to set in bold, the
    rows where a new family starts, the numeric columns, and its caption."""

    name: str
    columns: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)
    group_starts: list[int] = field(default_factory=list)
    numeric: list[bool] = field(default_factory=list)
    caption: str = ""


def number_cell(value) -> str:
    """A value as a table cell: :func:`reports.text.format_number`, NaN/NA as missing, whole
    floats from 1,000 on as integers."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return MISSING
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1000:
        value = int(value)
    return format_number(value)


def _best(values: pd.Series, lower: bool) -> set[int]:
    v = pd.to_numeric(values, errors="coerce")
    if v.notna().sum() < 2:
        return set()
    target = v.min() if lower else v.max()
    return {k for k, x in enumerate(v) if x == target}


def _level(level) -> str:
    return f"L{int(level)}" if pd.notna(level) and int(level) > 0 else MISSING


def _metric_header(metric: str, region: str) -> str:
    name, unit = METRIC_NAMES.get(metric, (metric, ""))
    return f"{name} {region}" + (f" ({unit})" if unit else "")


def _groups(part: pd.DataFrame) -> list[int]:
    fam = list(part["family"])
    return [k for k in range(1, len(fam)) if fam[k] != fam[k - 1]]


def _row_head(part: pd.DataFrame, k: int) -> list[str]:
    r = part.iloc[k]
    fam = r["family"] if k == 0 or part["family"].iloc[k - 1] != r["family"] else ""
    label = row_label(r["label"], r["stage"]) + (" (ref.)" if r.get("reference") else "")
    return [fam, label, _level(r["level"])]


def _cell(value, sd=None, p_holm=None) -> str:
    """A number, with ``± sd`` and a ``*`` (Holm-adjusted p < alpha) where given."""
    cell = number_cell(value)
    if cell != MISSING:
        if sd is not None and pd.notna(sd):
            cell += f" ± {number_cell(sd)}"
        if p_holm is not None and pd.notna(p_holm) and p_holm < ALPHA:
            cell += "*"
    return cell


def _results_columns(part: pd.DataFrame) -> list[tuple[str, list[str], pd.Series, bool | None]]:
    """The numeric columns of one dataset's results table: (header, cells, values, lower is
    better; None: no best value marked)."""
    out = []
    achieved = series(part, "prune_achieved")
    if achieved.notna().any():
        out.append(("Pruned", [number_cell(v) for v in achieved], achieved, None))
    for measure, header, lower in COST_COLUMNS:
        values = series(part, measure)
        if values.notna().any():
            out.append((header, [number_cell(v) for v in values], values, lower))
    for metric, region in metric_regions(part):
        mean, sd, ph = (series(part, metric, region, s) for s in ("mean", "sd", "p_holm"))
        cells = [_cell(m, d, p) for m, d, p in zip(mean, sd, ph, strict=True)]
        out.append((_metric_header(metric, region), cells, mean, metric in LOWER_IS_BETTER))
    return out


def results_display(agg: pd.DataFrame, captions: Mapping[str, str] | None = None) -> list[Display]:
    """Per dataset of the aggregate: family, model, level, [prune ratio], costs, and ``mean ±
    sd`` of every metric and region, a ``*`` where the row differs from the reference
    (Holm-adjusted p < :data:`reports.stats.ALPHA`), the best value of each column in bold."""
    out = []
    for name, part in agg.groupby("dataset", sort=False):
        rows = model_rows(part)
        columns = _results_columns(part)
        cells = [_row_head(rows, k) + [c[1][k] for c in columns] for k in range(len(rows))]
        bold = {(k, 3 + j) for j, (*_, values, lower) in enumerate(columns) if lower is not None
                for k in _best(values, lower)}
        headers = ["Family", "Model", "Level", *(c[0] for c in columns)]
        numeric = [False] * 3 + [True] * len(columns)
        caption = (captions or {}).get(name, "")
        out.append(Display(name, headers, cells, bold, _groups(rows), numeric, caption))
    return out


#: the statistics table's columns (those that do not apply are left out: :func:`_stats_shown`)
_STATS_COLUMNS = ["Region", "Model", "Level", "Mean", "95% CI", "SD cases", "SD seeds", "n", "Dice 0", "NaN",
                  "Empty ref.", "Missed", "p", "p (Holm)"]


def _stats_cells(v: Mapping[str, pd.Series], k: int) -> dict[str, str]:
    """The statistics table's cells of model row ``k``, from the statistics of one metric and
    region (``v``: statistic -> values per model row)."""
    cell = {s: number_cell(v[s][k]) for s in ("mean", "sd", "sd_seed", "n", "zero", "nan", "empty", "missed")}
    ph = v["p_holm"][k]
    return {
        "Mean": cell["mean"],
        "95% CI": f"[{number_cell(v['ci_lo'][k])}, {number_cell(v['ci_hi'][k])}]"
        if pd.notna(v["ci_lo"][k]) else MISSING,
        "SD cases": cell["sd"], "SD seeds": cell["sd_seed"], "n": cell["n"], "Dice 0": cell["zero"],
        "NaN": cell["nan"], "Empty ref.": cell["empty"], "Missed": cell["missed"], "p": _pvalue(v["p"][k]),
        "p (Holm)": _pvalue(ph) + ("*" if pd.notna(ph) and ph < ALPHA else ""),
    }


def _stats_shown(part: pd.DataFrame, metric: str, regions: list[str]) -> list[str]:
    """The statistics table's columns for ``metric``: SD seeds with several seeds, Dice 0 for
    Dice, the empty-reference and missed counts where every region has them."""
    def has(statistic, region):
        return series(part, metric, region, statistic).notna().any()

    hidden = set()
    if not any(has("sd_seed", r) for r in regions):
        hidden.add("SD seeds")
    if metric != "dice":
        hidden.add("Dice 0")
    if not all(has("empty", r) for r in regions):
        hidden |= {"Empty ref.", "Missed"}
    return [c for c in _STATS_COLUMNS if c not in hidden]


def stats_display(agg: pd.DataFrame, metric: str, captions: Mapping[str, str] | None = None) -> list[Display]:
    """Per dataset, for ``metric``: one row per region and model with the mean, its 95%
    bootstrap interval, the sd over cases and over seeds, the cases counted, the Dice-0, NaN,
    empty-reference and missed counts (the last two where the run recorded them), and the raw
    and Holm-adjusted Wilcoxon p-values against the reference."""
    out = []
    for name, part in agg.groupby("dataset", sort=False):
        regions = [r for m, r in metric_regions(part) if m == metric]
        if not regions:
            continue
        rows = model_rows(part)
        cols = _stats_shown(part, metric, regions)
        cells, starts = [], []
        for region in regions:
            v = {s: series(part, metric, region, s) for s in STATISTICS}
            shown = [k for k in range(len(rows)) if pd.notna(v["mean"][k])]
            starts += [len(cells)] if cells else []
            for j, k in enumerate(shown):
                heads = _row_head(rows, k)
                row = {"Region": region if j == 0 else "", "Model": heads[1], "Level": heads[2]}
                row |= _stats_cells(v, k)
                cells.append([row[c] for c in cols])
        numeric = [False, False, False] + [True] * (len(cols) - 3)
        out.append(Display(name, cols, cells, set(), starts, numeric, (captions or {}).get(name, "")))
    return out


def _pvalue(p) -> str:
    if pd.isna(p):
        return MISSING
    return "<0.001" if p < 0.001 else f"{p:.3f}"


# -- deployment ----------------------------------------------------------------------------

#: the deployment table's figures: (efficiency column, header, how the seeds' values combine)
DEPLOYMENT_FIGURES = [
    ("latency_ms", "Latency (ms)", "mean"),
    ("max_abs_diff", "Max abs diff", "max"),
    ("model_peak_mb", "Model peak (MB)", "mean"),
    ("pct_of_peak", "% of peak", "mean"),
]


def deploys(efficiency: pd.DataFrame) -> bool:
    """Whether ``efficiency`` has rows of more than one runtime or quantization."""
    if "runtime" not in efficiency or "quantize" not in efficiency:
        return False
    pairs = efficiency[["runtime", "quantize"]].astype(object)
    pairs = pairs.fillna({"runtime": "torch", "quantize": "none"})
    return len(pairs.drop_duplicates()) > 1


def _status(values: pd.Series) -> str:
    return "ok" if (values == "ok").all() else ", ".join(sorted(set(values) - {"ok"}))


def deployment_frame(efficiency: pd.DataFrame, results: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per dataset x model (label, level, stage) x runtime x quantization x batch x
    precision measured: the median latency (mean over seeds), max_abs_diff (the largest over
    seeds), the model's own peak memory and the share of the device's peak (means over seeds),
    and the status (``ok`` where every seed's row is). Rows a runtime cannot measure
    (``unsupported``) are left out unless its int8 model was scored; rows recorded before runtimes
    were are PyTorch eager's. With ``results`` holding int8 scores, the int8 rows get the gate's
    columns (:func:`reports.gate.gate_frame`: fp32 and int8 Dice, their ratio per region, the
    verdict at each threshold)."""
    gates = gate_frame(results) if results is not None else pd.DataFrame(columns=GATE_KEYS)
    eff = efficiency.copy()
    if "stage" not in eff:
        eff["stage"] = "final"
    eff = eff.astype({"runtime": object, "quantize": object, "stage": object}).fillna(
        {"runtime": "torch", "quantize": "none", "stage": "final", "level": 0})
    scored = set(gates[GATE_KEYS].itertuples(index=False, name=None))
    keep = [s != "unsupported" or k in scored
            for s, k in zip(eff["status"], eff[GATE_KEYS].itertuples(index=False, name=None), strict=True)]
    eff = eff[keep]
    keys = ["dataset", "label", "level", "stage", "runtime", "quantize", "batch", "precision"]
    out = eff.groupby(keys, sort=False, dropna=False).agg(
        **{c: (c, how) for c, _, how in DEPLOYMENT_FIGURES}, status=("status", _status)).reset_index()
    if gates.empty:
        return out
    return out.merge(gates.astype({"level": out["level"].dtype}), on=GATE_KEYS, how="left")


def _gate_columns(part: pd.DataFrame) -> list[tuple[str, str, bool]]:
    """The gate's columns a dataset's deployment rows show (none without an int8 score): (frame
    column, header, numeric)."""
    prefix = ratio_name("")
    ratios = [(c, "int8/fp32 Dice " + c[len(prefix):], True) for c in part.columns
              if c.startswith(prefix) and part[c].notna().any()]
    verdicts = [(gate_name(t), gate_name(t).capitalize(), False) for t in GATES
                if gate_name(t) in part and part[gate_name(t)].notna().any()]
    return ratios + verdicts if verdicts else []


def gated(frame: pd.DataFrame, dataset: str) -> bool:
    """Whether ``dataset``'s rows of a :func:`deployment_frame` show the int8 gate."""
    return bool(_gate_columns(frame[frame["dataset"] == dataset]))


def deployment_display(frame: pd.DataFrame, caption: str | Mapping[str, str] = "") -> list[Display]:
    """Per dataset of a :func:`deployment_frame`, its rows as a table (figures of failed rows
    missing, their status shown; the int8 gate's ratios and verdicts where int8 was scored), with
    its caption: ``caption[dataset]``, or ``caption`` after the dataset's name."""
    out = []
    for name, part in frame.groupby("dataset", sort=False):
        gate = _gate_columns(part)
        rows = []
        for _, r in part.iterrows():
            ok = r["status"] == "ok"
            rows.append([row_label(r["label"], r["stage"]), _level(r["level"]), str(r["runtime"]),
                         str(r["quantize"]), number_cell(int(r["batch"])), str(r["precision"]),
                         *(number_cell(r[c] if ok else None) for c, _, _ in DEPLOYMENT_FIGURES),
                         str(r["status"]),
                         *(number_cell(r[c]) if num or pd.isna(r[c]) else str(r[c]) for c, _, num in gate)])
        labels = list(part["label"])
        starts = [k for k in range(1, len(labels)) if labels[k] != labels[k - 1]]
        headers = ["Model", "Level", "Runtime", "Quantize", "Batch", "Precision",
                   *(h for _, h, _ in DEPLOYMENT_FIGURES), "Status", *(h for _, h, _ in gate)]
        numeric = ([False, False, False, False, True, False] + [True] * len(DEPLOYMENT_FIGURES) + [False]
                   + [num for _, _, num in gate])
        if isinstance(caption, Mapping):
            text = caption.get(name, "")
        else:
            text = f"{name}: {caption}" if caption else ""
        out.append(Display(name, headers, rows, set(), starts, numeric, text))
    return out


def write_deployment(frame: pd.DataFrame, displays: Sequence[Display], out_dir: str | Path) -> list[Path]:
    """Write ``deployment.csv`` (every number of the :func:`deployment_frame`),
    ``deployment.md`` and ``deployment.tex`` (its ``displays``) into ``out_dir``."""
    out = Path(out_dir)
    paths = [out / "deployment.csv", out / "deployment.md", out / "deployment.tex"]
    rows = [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in frame.to_dict("records")]
    paths[0].write_text(format_rows(rows, "csv") + "\n")
    paths[1].write_text(to_markdown(displays))
    paths[2].write_text(to_latex(displays, label="tab:deployment"))
    return paths


# -- writers -------------------------------------------------------------------------------


def to_markdown(displays: Sequence[Display]) -> str:
    """Markdown tables, one per display, each headed by its name and caption; bold as ``**``."""
    parts = []
    for d in displays:
        heading = "\n\n".join(t for t in (f"**{d.name}**" if d.name else "", d.caption) if t)
        rows = [
            {
                c: (f"**{v}**" if (k, j) in d.bold else v)
                for j, (c, v) in enumerate(zip(d.columns, r, strict=True))
            }
            for k, r in enumerate(d.rows)
        ]
        right = [c for c, num in zip(d.columns, d.numeric, strict=True) if num]
        body = format_rows(rows, "md", right=right) if rows else ""
        parts.append((f"{heading}\n\n" if heading else "") + body + "\n")
    return "\n".join(parts)


_LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "_": r"\_",
    "#": r"\#",
    "$": r"\$",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "–": "--",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (``±`` as ``$\\pm$``, an en dash as ``--``)."""
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def to_latex(displays: Sequence[Display], label: str = "tab:results") -> str:
    """LaTeX ``table`` environments (booktabs: ``\\toprule``, ``\\midrule`` between families,
    ``\\bottomrule``), one per display, ready for ``\\input``; needs ``booktabs`` and
    ``graphicx``. Every cell escaped, the best values in ``\\textbf``."""
    out = []
    for d in displays:
        spec = "".join("r" if num else "l" for num in d.numeric)
        body = []
        for k, r in enumerate(d.rows):
            if k in d.group_starts:
                body.append(r"\midrule")
            cells = [
                rf"\textbf{{{latex_escape(v)}}}" if (k, j) in d.bold else latex_escape(v)
                for j, v in enumerate(r)
            ]
            body.append(" & ".join(cells) + r" \\")
        name = re.sub(r"[^A-Za-z0-9-]+", "-", d.name).strip("-")
        out += [
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{{latex_escape(d.caption)}}}",
            rf"\label{{{label}-{name}}}" if name else rf"\label{{{label}}}",
            r"\resizebox{\linewidth}{!}{%",
            rf"\begin{{tabular}}{{{spec}}}",
            r"\toprule",
            " & ".join(latex_escape(c) for c in d.columns) + r" \\",
            r"\midrule",
            *body,
            r"\bottomrule",
            r"\end{tabular}}",
            r"\end{table}",
            "",
        ]
    return "\n".join(out)


def write_tables(
    agg: pd.DataFrame,
    out_dir: str | Path,
    captions: Mapping[str, str] | None = None,
    stats_captions: Mapping[str, Mapping[str, str]] | None = None,
) -> list[Path]:
    """Write ``table.csv`` (every number of the aggregate, :func:`reports.aggregate.wide`),
    ``table.md`` and ``table.tex`` (the results tables), and ``stats_<metric>.{md,tex}`` (the
    statistics tables) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "table.csv", out / "table.md", out / "table.tex"]
    if len(agg):
        wide(agg).to_csv(paths[0], index=False)
    else:
        pd.DataFrame(columns=["family", "dataset", "label", "model", "level", "stage", "reference"]).to_csv(
            paths[0], index=False)
    shown = results_display(agg, captions)
    paths[1].write_text(to_markdown(shown))
    paths[2].write_text(to_latex(shown))
    for metric in metrics(agg):
        disp = stats_display(agg, metric, (stats_captions or {}).get(metric))
        md, tex = out / f"stats_{metric}.md", out / f"stats_{metric}.tex"
        md.write_text(to_markdown(disp))
        tex.write_text(to_latex(disp, label=f"tab:stats-{metric}"))
        paths += [md, tex]
    return paths
