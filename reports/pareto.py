"""Pareto plots: accuracy against a cost (parameters, GMACs, latency, the model's own peak memory),
with the non-dominated front drawn (a point is on it when no other point is as cheap or cheaper
and more accurate) and point labels moved apart by ``adjustText`` so that none overlaps another.

The latency axis is one runtime's (:func:`pareto_runtime`): by default the first runtime other
than PyTorch eager that the run measured (the one a reader deploys with), else PyTorch eager;
``lfubench report --runtime NAME`` picks another. Its figures are those of the dataset's measured
configuration (the results table's device, batch and precision), unquantized, the mean over seeds
(:func:`runtime_latency`).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd

from .aggregate import PRIMARY_RUNTIME, primary_config, with_stage
from .plotting import family_colors, file_name, plain, plt, save_figure
from .schema import ROW_KEYS, ReportInputError

COSTS = {"params": "parameters", "gmacs": "GMACs", "latency_ms": "latency (ms)",
         "peak_mb": "model peak memory (MiB)"}  # the model's own tensor memory, never the process RSS

#: the runtime of rows recorded before runtimes were, and of the results table's latency
EAGER = PRIMARY_RUNTIME["runtime"]


def measured_runtimes(efficiency: pd.DataFrame) -> list[str]:
    """The runtimes with an unquantized latency at the shown configuration (:func:`at_shown_config`),
    in the order measured."""
    eff = at_shown_config(efficiency)
    return list(dict.fromkeys(eff.loc[eff["quantize"] == "none", "runtime"]))


def pareto_runtime(efficiency: pd.DataFrame, requested: str | None = None) -> str:
    """The runtime whose latency the Pareto plots show: ``requested`` (it must have been
    measured: else :class:`ReportInputError` naming it and the measured ones), by default the
    first measured runtime other than PyTorch eager, else PyTorch eager (also with nothing measured)."""
    measured = measured_runtimes(efficiency)
    if requested is not None:
        if requested not in measured:
            raise ReportInputError(f"--runtime {requested}: no unquantized latency of {requested} in the "
                                   f"runs; measured: {', '.join(measured) or 'none'}")
        return requested
    return next((r for r in measured if r != EAGER), EAGER)


def shown_config(efficiency: pd.DataFrame) -> dict | None:
    """The configuration (device, batch, precision) shown for one dataset's ``efficiency``: the
    results table's (:func:`reports.aggregate.primary_config`), else the first ``ok`` row's."""
    cfg = primary_config(efficiency)
    ok = efficiency[efficiency["status"] == "ok"]
    if cfg is None and len(ok):
        first = ok.iloc[0]
        cfg = {"device": first["device"], "batch": int(first["batch"]), "precision": first["precision"]}
    return cfg


def at_shown_config(efficiency: pd.DataFrame) -> pd.DataFrame:
    """The ``ok`` rows with a latency at each dataset's :func:`shown_config`, every runtime and
    quantization, ``runtime``, ``quantize`` and ``stage`` filled in for rows recorded before them."""
    if efficiency.empty:
        return efficiency.assign(runtime=None, quantize=None)
    eff = with_stage(efficiency)
    for name, default in (("runtime", EAGER), ("quantize", "none")):
        values = eff[name] if name in eff else pd.Series(index=eff.index, dtype=object)
        eff = eff.assign(**{name: values.astype(object).fillna(default)})
    parts = []
    for _, part in eff.groupby("dataset", sort=False):
        cfg = shown_config(part)
        if cfg is not None:
            parts.append(part[(part["device"] == cfg["device"]) & (part["batch"] == cfg["batch"])
                              & (part["precision"] == cfg["precision"])])
    sel = pd.concat(parts) if parts else eff.iloc[:0]
    return sel[(sel["status"] == "ok") & sel["latency_ms"].notna()]


def runtime_latency(efficiency: pd.DataFrame, rows: pd.DataFrame, runtime: str) -> pd.Series:
    """Per model row of ``rows`` (:func:`reports.aggregate.model_rows`, one dataset or several;
    aligned to its index): the median latency in ``runtime``, unquantized, ``ok`` rows only, mean
    over seeds, at each dataset's :func:`shown_config`; NaN where it was not measured."""
    out = pd.Series(float("nan"), index=rows.index)
    if efficiency.empty or rows.empty:
        return out
    eff = at_shown_config(efficiency)
    for dataset, sel in eff[(eff["runtime"] == runtime) & (eff["quantize"] == "none")].groupby(
            "dataset", sort=False):
        means = sel.groupby(ROW_KEYS, sort=False, dropna=False)["latency_ms"].mean()
        keys = rows[rows["dataset"] == dataset][ROW_KEYS]
        for k, key in keys.iterrows():
            out[k] = means.get(tuple(key), float("nan"))
    return out


def cost_label(cost: str, runtime: str | None = None) -> str:
    """The axis label of ``cost``; a latency names its runtime when given."""
    label = COSTS.get(cost, cost)
    return f"{label}, {runtime}" if runtime and cost == "latency_ms" else label


def frontier(points: pd.DataFrame, cost: str, score: str) -> pd.DataFrame:
    """The non-dominated points (lower ``cost``, higher ``score``), sorted by cost."""
    pts = points.dropna(subset=[cost, score]).sort_values([cost, score], ascending=[True, False])
    keep, best = [], -float("inf")
    for idx, row in pts.iterrows():
        if row[score] > best:
            keep.append(idx)
            best = row[score]
    return pts.loc[keep]


def pareto_figure(
    points: pd.DataFrame, cost: str, score: str, title: str, note: str = "", ylabel: str | None = None,
    xlabel: str | None = None,
):
    """A matplotlib figure of ``score`` against ``cost`` (log axis), one colour per model
    family (column ``family``, else ``model``), a label per point (column ``tag``, else
    ``label``), the front as a dashed step line and its points ringed."""
    from adjustText import adjust_text

    fig, ax = plt().subplots(figsize=(6.6, 4.0))
    pts = points.dropna(subset=[cost, score])
    fam = pts["family"] if "family" in pts else pts["model"]
    colors = family_colors(list(dict.fromkeys(fam)))
    for name, grp in pts.groupby(fam, sort=False):
        ax.scatter(grp[cost], grp[score], label=plain(name), s=26, zorder=3, color=colors[name])
    front = frontier(pts, cost, score)
    if len(front):
        ax.step(
            front[cost],
            front[score],
            where="post",
            color="0.3",
            lw=1,
            ls="--",
            label="Pareto front",
            zorder=2,
        )
        ax.scatter(front[cost], front[score], s=80, facecolors="none", edgecolors="0.2", lw=0.8, zorder=4)
    if len(pts) and (pts[cost] > 0).all():
        ax.set_xscale("log")
    ax.set_xlabel(plain(xlabel or COSTS.get(cost, cost)))
    ax.set_ylabel(plain(ylabel or f"mean {score}"))
    ax.set_title(plain(title), fontsize=10)
    ax.grid(True, alpha=0.3)
    if len(pts):
        lo, hi = pts[score].min(), pts[score].max()
        pad = max(0.08 * (hi - lo), 0.01)
        ax.set_ylim(lo - pad, hi + 2.5 * pad)
    tags = pts["tag"] if "tag" in pts else pts["label"]
    texts = [
        ax.text(x, y, plain(t), fontsize=6.5, zorder=5)
        for x, y, t in zip(pts[cost], pts[score], tags, strict=True)
    ]
    if len(pts) and ax.get_xscale() == "log":
        lo, hi = pts[cost].min(), pts[cost].max()
        ax.set_xlim(lo / 1.4, hi * 1.9)  # room for the labels of the extreme points
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    lines = textwrap.wrap(note, 130) if note else []
    if lines:
        fig.text(0.01, 0.01, plain("\n".join(lines)), fontsize=5.5, color="0.35", va="bottom")
    fig.tight_layout(rect=(0, 0.012 + 0.022 * len(lines), 1, 1))
    if texts:
        adjust_text(
            texts,
            x=list(pts[cost]),
            y=list(pts[score]),
            ax=ax,
            arrowprops={"arrowstyle": "-", "color": "0.55", "lw": 0.5},
        )
    return fig


def write_pareto_plots(
    points: pd.DataFrame,
    out_dir: str | Path,
    score: str = "dice",
    notes: dict[str, str] | None = None,
    ylabel: str | None = None,
    runtime: str | None = None,
) -> list[Path]:
    """One figure per (dataset, cost) in ``out_dir`` as ``pareto_<dataset>_<cost>.pdf`` and
    ``.png``; ``points`` has dataset, label (or tag), family (or model), the cost columns and
    ``score``; ``runtime`` names the runtime of its ``latency_ms`` (:func:`pareto_runtime`).
    Returns the PDF paths."""
    paths = []
    for dataset, grp in points.groupby("dataset", sort=False):
        for cost in COSTS:
            if cost not in grp or grp[cost].isna().all():
                continue
            fig = pareto_figure(
                grp,
                cost,
                score,
                f"{dataset}: {ylabel or score} vs {cost_label(cost, runtime)}",
                (notes or {}).get(dataset, ""),
                ylabel,
                cost_label(cost, runtime),
            )
            paths.append(save_figure(fig, Path(out_dir) / f"pareto_{file_name(dataset)}_{cost}"))
    return paths
