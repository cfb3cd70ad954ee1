"""Pareto plots: accuracy against a cost (parameters, GMACs, latency), with the non-dominated
front drawn (a point is on it when no other point is as cheap or cheaper and more accurate)
and point labels moved apart by ``adjustText`` so that none overlaps another."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd

from .plotting import family_colors, file_name, plain, plt, save_figure

COSTS = {"params": "parameters", "gmacs": "GMACs", "latency_ms": "latency (ms)"}


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
    points: pd.DataFrame, cost: str, score: str, title: str, note: str = "", ylabel: str | None = None
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
    ax.set_xlabel(COSTS.get(cost, cost))
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
) -> list[Path]:
    """One figure per (dataset, cost) in ``out_dir`` as ``pareto_<dataset>_<cost>.pdf`` and
    ``.png``; ``points`` has dataset, label (or tag), family (or model), the cost columns and
    ``score``. Returns the PDF paths."""
    paths = []
    for dataset, grp in points.groupby("dataset", sort=False):
        for cost in COSTS:
            if cost not in grp or grp[cost].isna().all():
                continue
            fig = pareto_figure(
                grp,
                cost,
                score,
                f"{dataset}: {ylabel or score} vs {COSTS[cost]}",
                (notes or {}).get(dataset, ""),
                ylabel,
            )
            paths.append(save_figure(fig, Path(out_dir) / f"pareto_{file_name(dataset)}_{cost}"))
    return paths
