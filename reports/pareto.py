"""Pareto plots: accuracy against a cost (parameters, GMACs, latency), with the
non-dominated frontier drawn (a point is on it when no other point is both cheaper or as
cheap and more accurate)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd

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


def pareto_figure(points: pd.DataFrame, cost: str, score: str, title: str, note: str = ""):
    """A matplotlib figure of ``score`` against ``cost`` (log axis), one colour per model
    family, labels at the points, the frontier as a step line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    pts = points.dropna(subset=[cost, score])
    family_of = pts["model"] if "model" in pts else pts["label"]
    for family, grp in pts.groupby(family_of, sort=True):
        ax.scatter(grp[cost], grp[score], label=family, s=28, zorder=3)
        for _, row in grp.iterrows():
            level = row.get("level")
            tag = row["label"] + (f" L{int(level)}" if pd.notna(level) and level > 0 else "")
            ax.annotate(tag, (row[cost], row[score]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    front = frontier(pts, cost, score)
    if len(front):
        ax.step(front[cost], front[score], where="post", color="0.3", lw=1, ls="--", label="Pareto frontier",
                zorder=2)
    if len(pts) and (pts[cost] > 0).all():
        ax.set_xscale("log")
    ax.set_xlabel(COSTS.get(cost, cost))
    ax.set_ylabel(f"mean {score} (test cases; all classes/regions)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    lines = textwrap.wrap(note, 140) if note else []
    if lines:
        fig.text(0.01, 0.01, "\n".join(lines), fontsize=5.5, color="0.35", va="bottom")
    fig.tight_layout(rect=(0, 0.012 + 0.022 * len(lines), 1, 1))
    return fig


def write_pareto_plots(points: pd.DataFrame, out_dir: str | Path, score: str = "dice",
                       notes: dict[str, str] | None = None) -> list[Path]:
    """One PNG per (dataset, cost) in ``out_dir``; ``points`` has label, level, dataset, the
    cost columns and ``score``. Returns the paths written."""
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for dataset, grp in points.groupby("dataset", sort=True):
        for cost in COSTS:
            if cost not in grp or grp[cost].isna().all():
                continue
            fig = pareto_figure(grp, cost, score, f"{dataset}: mean {score} vs {COSTS[cost]}",
                                (notes or {}).get(dataset, ""))
            path = out / f"pareto_{dataset}_{cost}.png"
            fig.savefig(path, dpi=150)
            plt.close(fig)
            paths.append(path)
    return paths
