"""Results tables: the tidy per-case results aggregated into one row per evaluated model
(dataset, label, pruning level, stage), with the statistics of :mod:`reports.stats`, written as
CSV (every number), Markdown and LaTeX (booktabs) from the same numbers.

Per row and ``<metric> <region>`` the aggregate holds

- the mean over test cases of each case's value (averaged over seeds first), the sd over cases
  (``sd``) and, with several seeds, the sd over seeds of each seed's mean over cases
  (``sd_seed``);
- the seeded 95% percentile-bootstrap interval of that mean over cases (``ci_lo``, ``ci_hi``);
- ``n`` cases with a value, ``nan`` values left undefined by the empty-mask rule, for Dice
  ``zero`` values of exactly 0 (the region missed, predicted where the reference has none, or
  no overlap), ``empty`` cases whose reference has no voxel of the region and ``missed``
  cases whose reference has some and the prediction none (from the results' ``ref_empty`` /
  ``pred_empty`` flags, where the run recorded them) -- counted over cases x seeds, never
  averaged away;
- the paired Wilcoxon signed-rank p-value against the reference row over the cases (``p``) and
  its Holm-adjusted value (``p_holm``), the family being every row of the dataset for that
  metric and region.

Efficiency figures are those of one measured configuration (the first of the run:
device, batch, precision), stated in the caption; ``efficiency.csv`` keeps them all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .stats import ALPHA, bootstrap_ci, holm, wilcoxon_p
from .text import MISSING, format_number, format_rows

#: what one aggregated row is
ROW_KEYS = ["dataset", "label", "model", "level", "stage"]

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

#: efficiency columns of the table: (column, header, lower is better)
COST_COLUMNS = [
    ("params", "Params", True),
    ("gmacs", "GMACs", True),
    ("latency_ms", "Latency (ms)", True),
    ("peak_mb", "Peak (MB)", True),
    ("train_s", "Train (s)", True),
]


def family(model: str) -> str:
    """The model family of a registered name (``unet_zhou2018`` -> ``unet``)."""
    return str(model).split("_")[0]


def row_label(label: str, stage: str) -> str:
    """The label shown for a row: a model before channel pruning says so."""
    return f"{label} (before pruning)" if stage == "before-pruning" else str(label)


def _with_stage(df: pd.DataFrame) -> pd.DataFrame:
    if "stage" not in df:
        df = df.assign(stage="final")
    return df.assign(stage=df["stage"].fillna("final"))


def metric_regions(results: pd.DataFrame) -> list[tuple[str, str]]:
    """The (metric, region) pairs of ``results``, metrics in a fixed order, regions as they come."""
    order = list(METRIC_NAMES)
    pairs = list(dict.fromkeys(zip(results["metric"], results["region"], strict=True)))
    return sorted(pairs, key=lambda p: (order.index(p[0]) if p[0] in order else len(order), 0))


def reference_rows(table: pd.DataFrame, reference: str | None) -> dict[str, int]:
    """Per dataset, the index of the reference row: ``reference`` (a label; default the first
    label of the table) at its highest level, final stage."""
    refs = {}
    for name, grp in table.groupby("dataset", sort=False):
        label = reference if reference is not None else grp["label"].iloc[0]
        cand = grp[(grp["label"] == label) & (grp["stage"] == "final")]
        if cand.empty:
            continue
        refs[name] = int(cand["level"].idxmax())
    return refs


def primary_config(efficiency: pd.DataFrame) -> dict | None:
    """The measured configuration the tables show: the first (device, batch, precision) with a
    figure."""
    ok = efficiency[efficiency["status"] == "ok"] if "status" in efficiency else efficiency
    if ok.empty:
        return None
    first = ok.iloc[0]
    return {"device": first["device"], "batch": int(first["batch"]), "precision": first["precision"]}


def aggregate(
    results: pd.DataFrame,
    efficiency: pd.DataFrame | None = None,
    items: pd.DataFrame | None = None,
    reference: str | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (dataset, label, model, level, stage), in the order the results come (rows of
    one family together): efficiency figures, training time, and per ``<metric> <region>`` the
    columns described in the module docstring. ``reference`` (a label) is the model the
    Wilcoxon tests compare against (default: each dataset's first label)."""
    if results.empty:
        return pd.DataFrame(columns=["family", *ROW_KEYS, "reference"])
    res = _with_stage(results)
    res = res.assign(family=res["model"].map(family))
    fam_order = list(dict.fromkeys(res["family"]))
    keys = res[ROW_KEYS + ["family"]].drop_duplicates().copy()
    keys["_f"] = keys["family"].map(fam_order.index)
    keys["_l"] = keys["label"].map(list(dict.fromkeys(res["label"])).index)
    keys["_s"] = keys["stage"].map(lambda s: 0 if s == "before-pruning" else 1)
    ds_order = list(dict.fromkeys(res["dataset"]))
    keys["_d"] = keys["dataset"].map(ds_order.index)
    keys = keys.sort_values(["_d", "_f", "_l", "_s", "level"]).drop(columns=["_d", "_f", "_l", "_s"])
    table = keys[["family", *ROW_KEYS]].reset_index(drop=True)
    table["seeds"] = [res.loc[_match(res, r), "seed"].nunique() for _, r in table.iterrows()]

    if efficiency is not None and not efficiency.empty:
        eff = _with_stage(efficiency)
        cfg = primary_config(eff)
        if cfg is not None:
            sel = eff[
                (eff["device"] == cfg["device"])
                & (eff["batch"] == cfg["batch"])
                & (eff["precision"] == cfg["precision"])
            ]
            sel = sel.assign(
                latency_ms=sel["latency_ms"].where(sel["status"] == "ok"),
                peak_mb=sel["peak_mb"].where(sel["status"] == "ok"),
            )
            agg = (
                sel.groupby(ROW_KEYS, sort=False)
                .agg(
                    params=("params", "first"),
                    gmacs=("gmacs", "first"),
                    latency_ms=("latency_ms", "mean"),
                    peak_mb=("peak_mb", "mean"),
                )
                .reset_index()
            )
            table = table.merge(agg, on=ROW_KEYS, how="left")
    if items is not None and not items.empty:
        it = items.groupby(["dataset", "label"], sort=False)
        extra = pd.DataFrame({"train_s": it["train_seconds"].mean()})
        for column in ("prune_ratio", "prune_achieved", "prune_seconds"):
            if column in items and items[column].notna().any():
                extra[column] = it[column].mean()
        table = table.merge(extra.reset_index(), on=["dataset", "label"], how="left")
        if "prune_ratio" in table:  # a row before pruning has the full width
            before = table["stage"] == "before-pruning"
            for column in ("prune_ratio", "prune_achieved"):
                if column in table:
                    table.loc[before, column] = 0.0

    refs = reference_rows(table, reference)
    table["reference"] = [refs.get(d) == k for k, d in enumerate(table["dataset"])]
    groups = dict(iter(res.groupby(ROW_KEYS + ["metric", "region"], sort=False, dropna=False)))
    columns: dict[str, list] = {}
    for metric, region in metric_regions(res):
        name = f"{metric} {region}"
        cols = {k: [] for k in ("", " sd", " sd_seed", " ci_lo", " ci_hi", " n", " nan", " zero", " empty",
                                " missed")}
        cases_of: list[pd.Series | None] = []
        for _, r in table.iterrows():
            sub = groups.get((*(r[c] for c in ROW_KEYS), metric, region))
            if sub is None:
                cases_of.append(None)
                for c in cols:
                    cols[c].append(np.nan)
                continue
            pc = sub.groupby("case", sort=False)["value"].mean()  # each case averaged over seeds
            ps = sub.groupby("seed", sort=False)["value"].mean()  # each seed averaged over cases
            cases_of.append(pc)
            vals = pc.dropna()
            cols[""].append(float(vals.mean()) if len(vals) else np.nan)
            cols[" sd"].append(float(vals.std(ddof=1)) if len(vals) > 1 else np.nan)
            cols[" sd_seed"].append(float(ps.dropna().std(ddof=1)) if ps.notna().sum() > 1 else np.nan)
            lo, hi = bootstrap_ci(vals.to_numpy(), seed=seed)
            cols[" ci_lo"].append(lo)
            cols[" ci_hi"].append(hi)
            cols[" n"].append(int(len(vals)))
            cols[" nan"].append(int(sub["value"].isna().sum()))
            cols[" zero"].append(int((sub["value"] == 0).sum()) if metric == "dice" else np.nan)
            flags = sub[["ref_empty", "pred_empty"]].dropna() if "ref_empty" in sub else sub.iloc[:0]
            ref_empty, pred_empty = flags["ref_empty"].astype(bool), flags["pred_empty"].astype(bool)
            cols[" empty"].append(int(ref_empty.sum()) if len(flags) else np.nan)
            cols[" missed"].append(int((~ref_empty & pred_empty).sum()) if len(flags) else np.nan)
        cols[" p"] = []
        for k, r in table.iterrows():
            ref = refs.get(r["dataset"])
            if ref is None or ref == k or cases_of[k] is None or cases_of[ref] is None:
                cols[" p"].append(np.nan)
                continue
            a, b = cases_of[k].align(cases_of[ref], join="inner")
            cols[" p"].append(wilcoxon_p(a.to_numpy(), b.to_numpy()))
        p = np.asarray(cols[" p"], dtype=float)
        p_holm = np.full(len(p), np.nan)
        for name_ in table["dataset"].unique():
            mask = (table["dataset"] == name_).to_numpy()
            p_holm[mask] = holm(p[mask])
        for c, values in cols.items():
            columns[name + c] = values
        columns[name + " p_holm"] = list(p_holm)
        if all(np.isnan(v) for v in cols[" sd_seed"]):
            del columns[name + " sd_seed"]
        if metric != "dice":
            del columns[name + " zero"]
        for c in (" empty", " missed"):
            if all(np.isnan(v) for v in cols[c]):
                del columns[name + c]
    out = pd.concat([table, pd.DataFrame(columns)], axis=1)
    for c in out.columns:
        if c.endswith((" n", " nan", " zero", " empty", " missed")):
            out[c] = out[c].astype("Int64")
    return out


def _match(df: pd.DataFrame, r) -> pd.Series:
    mask = pd.Series(True, index=df.index)
    for c in ROW_KEYS:
        mask &= df[c] == r[c]
    return mask


def mean_score(table: pd.DataFrame, metric: str = "dice") -> pd.Series:
    """Per row of an aggregate: the mean of ``metric`` over its classes/regions."""
    cols = [c for c in table.columns if re.fullmatch(rf"{metric} [^ ]+", c)]
    return table[cols].mean(axis=1) if cols else pd.Series(np.nan, index=table.index)


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


def _num(value) -> str:
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


def results_display(table: pd.DataFrame, captions: Mapping[str, str] | None = None) -> list[Display]:
    """Per dataset: family, model, level, [prune ratio], costs, and ``mean ± sd`` of every
    metric and region, a ``*`` where the row differs from the reference (Holm-adjusted p <
    :data:`reports.stats.ALPHA`), the best value of each column in bold."""
    out = []
    for name, part in table.groupby("dataset", sort=False):
        part = part.reset_index(drop=True)
        cols = ["Family", "Model", "Level"]
        numeric = [False, False, False]
        getters = []
        lowers = []
        if "prune_achieved" in part and part["prune_achieved"].notna().any():
            cols.append("Pruned")
            numeric.append(True)
            getters.append(("prune_achieved", None))
            lowers.append(None)
        for column, header, lower in COST_COLUMNS:
            if column in part and part[column].notna().any():
                cols.append(header)
                numeric.append(True)
                getters.append((column, None))
                lowers.append(lower)
        for metric, region in metric_regions_of(part):
            cols.append(_metric_header(metric, region))
            numeric.append(True)
            getters.append((f"{metric} {region}", metric))
            lowers.append(metric in LOWER_IS_BETTER)
        rows, bold = [], set()
        for k in range(len(part)):
            r = part.iloc[k]
            cells = _row_head(part, k)
            for column, metric in getters:
                cell = _num(r[column])
                if metric is not None and cell != MISSING:
                    sd = r.get(f"{column} sd")
                    if pd.notna(sd):
                        cell += f" ± {_num(sd)}"
                    ph = r.get(f"{column} p_holm")
                    if pd.notna(ph) and ph < ALPHA:
                        cell += "*"
                cells.append(cell)
            rows.append(cells)
        for j, ((column, _), lower) in enumerate(zip(getters, lowers, strict=True)):
            if lower is None:
                continue
            bold |= {(k, 3 + j) for k in _best(part[column], lower)}
        out.append(Display(name, cols, rows, bold, _groups(part), numeric, (captions or {}).get(name, "")))
    return out


def metric_regions_of(part: pd.DataFrame) -> list[tuple[str, str]]:
    """The (metric, region) mean columns of an aggregate that hold a value, metrics in order."""
    pairs = []
    for c in part.columns:
        m = re.fullmatch(r"([a-z0-9]+) ([^ ]+)", c)
        if m and m.group(1) in METRIC_NAMES and part[c].notna().any():
            pairs.append((m.group(1), m.group(2)))
    order = list(METRIC_NAMES)
    return sorted(pairs, key=lambda p: order.index(p[0]))


def stats_display(
    table: pd.DataFrame, metric: str, captions: Mapping[str, str] | None = None
) -> list[Display]:
    """Per dataset, for ``metric``: one row per region and model with the mean, its 95%
    bootstrap interval, the sd over cases and over seeds, the cases counted, the Dice-0, NaN,
    empty-reference and missed counts (the last two where the run recorded them), and the raw
    and Holm-adjusted Wilcoxon p-values against the reference."""
    out = []
    for name, part in table.groupby("dataset", sort=False):
        part = part.reset_index(drop=True)
        regions = [r for m, r in metric_regions_of(part) if m == metric]
        if not regions:
            continue
        seeds = any(
            f"{metric} {r} sd_seed" in part and part[f"{metric} {r} sd_seed"].notna().any() for r in regions
        )
        flags = all(f"{metric} {r} empty" in part for r in regions)
        cols = (
            ["Region", "Model", "Level", "Mean", "95% CI", "SD cases"]
            + (["SD seeds"] if seeds else [])
            + ["n", *(["Dice 0"] if metric == "dice" else []), "NaN"]
            + (["Empty ref.", "Missed"] if flags else []) + ["p", "p (Holm)"]
        )
        rows, starts = [], []
        for region in regions:
            if rows:
                starts.append(len(rows))
            c = f"{metric} {region}"
            for k in range(len(part)):
                r = part.iloc[k]
                if pd.isna(r[c]):
                    continue
                head = _row_head(part, k)
                cells = [
                    region if not rows or len(rows) in starts else "",
                    head[1],
                    head[2],
                    _num(r[c]),
                    f"[{_num(r[c + ' ci_lo'])}, {_num(r[c + ' ci_hi'])}]"
                    if pd.notna(r[c + " ci_lo"])
                    else MISSING,
                    _num(r[c + " sd"]),
                ]
                if seeds:
                    cells.append(_num(r.get(c + " sd_seed")))
                cells.append(_num(r[c + " n"]))
                if metric == "dice":
                    cells.append(_num(r[c + " zero"]))
                cells.append(_num(r[c + " nan"]))
                if flags:
                    cells += [_num(r[c + " empty"]), _num(r[c + " missed"])]
                p, ph = r[c + " p"], r[c + " p_holm"]
                cells += [_pvalue(p), _pvalue(ph) + ("*" if pd.notna(ph) and ph < ALPHA else "")]
                rows.append(cells)
        numeric = [False, False, False] + [True] * (len(cols) - 3)
        out.append(Display(name, cols, rows, set(), starts, numeric, (captions or {}).get(name, "")))
    return out


def _pvalue(p) -> str:
    if pd.isna(p):
        return MISSING
    return "<0.001" if p < 0.001 else f"{p:.3f}"


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
    table: pd.DataFrame,
    out_dir: str | Path,
    captions: Mapping[str, str] | None = None,
    stats_captions: Mapping[str, Mapping[str, str]] | None = None,
) -> list[Path]:
    """Write ``table.csv`` (every number of the aggregate), ``table.md`` and ``table.tex`` (the
    results tables), and ``stats_<metric>.{md,tex}`` (the statistics tables) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "table.csv", out / "table.md", out / "table.tex"]
    table.to_csv(paths[0], index=False)
    shown = results_display(table, captions)
    paths[1].write_text(to_markdown(shown))
    paths[2].write_text(to_latex(shown))
    metrics = list(dict.fromkeys(m for m, _ in metric_regions_of(table))) if len(table) else []
    for metric in metrics:
        disp = stats_display(table, metric, (stats_captions or {}).get(metric))
        md, tex = out / f"stats_{metric}.md", out / f"stats_{metric}.tex"
        md.write_text(to_markdown(disp))
        tex.write_text(to_latex(disp, label=f"tab:stats-{metric}"))
        paths += [md, tex]
    return paths
