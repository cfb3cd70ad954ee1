"""The report's curves and distributions, from the aggregate of :func:`reports.tables.aggregate`
and the tidy results: Dice against pruning level (L1-L4), against base width and against the
channel-prune ratio (each only when the run has them), and per-case box/strip plots.

Each writer returns the PDF paths it wrote (a PNG lies beside each), or none when the run has
nothing to show."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from .plotting import family_colors, file_name, plt, save_figure
from .tables import mean_score, metric_regions, row_label


def _regions(table: pd.DataFrame, metric: str = "dice") -> list[str]:
    return [
        c.split(" ", 1)[1]
        for c in table.columns
        if c.startswith(f"{metric} ") and len(c.split(" ")) == 2 and table[c].notna().any()
    ]


def dice_limits(ax, values) -> None:
    """A Dice axis: the data with a margin, never far below 0 or above 1."""
    v = pd.to_numeric(pd.Series(np.asarray(values, dtype=float).ravel()), errors="coerce").dropna()
    if v.empty:
        return
    lo, hi = float(v.min()), float(v.max())
    pad = max(0.05, 0.12 * (hi - lo))
    ax.set_ylim(max(-0.03, lo - pad), min(1.03, hi + pad))


def _panels(n: int, width: float = 6.6, height: float = 2.5):
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt().subplots(rows, cols, figsize=(width, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def _errorbars(part: pd.DataFrame, column: str):
    lo = (part[column] - part[f"{column} ci_lo"]).clip(lower=0).fillna(0)
    hi = (part[f"{column} ci_hi"] - part[column]).clip(lower=0).fillna(0)
    return np.vstack([lo.to_numpy(), hi.to_numpy()])


def write_level_curves(table: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Per dataset with a model at several pruning levels: mean Dice (95% bootstrap interval)
    per region against the level, and GMACs against the level."""
    paths = []
    for dataset, part in table.groupby("dataset", sort=False):
        lines = [
            (k, g.sort_values("level"))
            for k, g in part.groupby(["label", "stage"], sort=False)
            if g["level"].nunique() > 1
        ]
        if not lines:
            continue
        regions = _regions(part)
        with_cost = "gmacs" in part and part["gmacs"].notna().any()
        fig, axes = _panels(len(regions) + with_cost)
        handled: list[str] = []
        for (label, stage), g in lines:
            color, name = f"C{len(handled)}", row_label(label, stage)  # one colour per line
            handled.append(name)
            style = "--" if stage == "before-pruning" else "-"
            for ax, region in zip(axes, regions, strict=False):
                c = f"dice {region}"
                ax.errorbar(
                    g["level"],
                    g[c],
                    yerr=_errorbars(g, c),
                    marker="o",
                    ms=3,
                    lw=1,
                    ls=style,
                    capsize=2,
                    label=name,
                    color=color,
                )
                ax.set_title(f"Dice {region}")
            if with_cost:
                axes[-1].plot(
                    g["level"],
                    g["gmacs"],
                    marker="o",
                    ms=3,
                    lw=1,
                    ls=style,
                    label=name,
                    color=color,
                )
                axes[-1].set_yscale("log")
                axes[-1].set_title("GMACs")
        for ax, region in zip(axes, regions, strict=False):
            dice_limits(ax, part[f"dice {region}"])
        for ax in axes:
            ax.set_xticks(sorted(part["level"].unique()[part["level"].unique() > 0]))
            ax.set_xticklabels([f"L{int(v)}" for v in ax.get_xticks()])
            ax.set_xlabel("pruning level")
            ax.grid(True, alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=7, frameon=False)
        fig.suptitle(f"{dataset}: accuracy and cost per pruning level", fontsize=9)
        fig.tight_layout(rect=(0, 0.06 + 0.04 * ((len(labels) - 1) // 4), 1, 1))
        paths.append(save_figure(fig, Path(out_dir) / f"levels_{file_name(dataset)}"))
    return paths


def _sweep_curves(
    table: pd.DataFrame, out_dir: Path, x: pd.Series, xlabel: str, stem: str, title: str, log2: bool = False
) -> list[Path]:
    """Mean Dice over regions against ``x`` (one value per row), one line per family having at
    least two distinct ``x``; the highest level of each label only."""
    paths = []
    tab = table.assign(_x=x, _score=mean_score(table))
    top = tab[tab["level"] == tab.groupby(["dataset", "label"])["level"].transform("max")]
    for dataset, part in top.groupby("dataset", sort=False):
        fams = [f for f, g in part.groupby("family", sort=False) if g["_x"].dropna().nunique() > 1]
        if not fams:
            continue
        colors = family_colors(list(dict.fromkeys(part["family"])))
        fig, ax = plt().subplots(figsize=(4.2, 2.8))
        for f in fams:
            g = part[part["family"] == f].dropna(subset=["_x"]).sort_values("_x")
            ax.plot(g["_x"], g["_score"], marker="o", ms=4, lw=1, color=colors[f], label=f)
            for _, r in g.iterrows():
                if pd.notna(r.get("params")):
                    ax.annotate(
                        f"{r['params'] / 1e3:,.0f}k",
                        (r["_x"], r["_score"]),
                        fontsize=7,
                        xytext=(4, -10),
                        textcoords="offset points",
                        color="0.3",
                    )
        if log2:
            from matplotlib.ticker import NullFormatter, ScalarFormatter

            ax.set_xscale("log", base=2)
            ticks = sorted(part["_x"].dropna().unique())
            ax.set_xticks(ticks)
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlim(ticks[0] / 1.25, ticks[-1] * 1.25)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mean Dice (regions)")
        ax.set_title(f"{dataset}: {title} (labels: parameters)")
        ax.grid(True, alpha=0.3)
        dice_limits(ax, part["_score"])
        ax.legend()
        fig.tight_layout()
        paths.append(save_figure(fig, out_dir / f"{stem}_{file_name(dataset)}"))
    return paths


def write_width_curves(table: pd.DataFrame, widths: Mapping[str, float], out_dir: str | Path) -> list[Path]:
    """Mean Dice against base width, per family with models at several widths (``widths``:
    label -> base width, from the plan)."""
    x = table["label"].map(lambda v: widths.get(v, np.nan)).astype(float)
    return _sweep_curves(
        table[table["stage"] == "final"],
        Path(out_dir),
        x[table["stage"] == "final"],
        "base width",
        "widths",
        "accuracy against width",
        log2=True,
    )


def write_prune_curves(table: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Mean Dice against the achieved channel-prune ratio (0 before pruning), per family with
    several ratios."""
    if "prune_achieved" not in table or table["prune_achieved"].notna().sum() < 2:
        return []
    x = table["prune_achieved"].astype(float)
    x = x.where(x.notna() | (table["stage"] == "before-pruning"), np.nan)
    return _sweep_curves(
        table, Path(out_dir), x, "channels pruned (fraction)", "prune", "accuracy against channel pruning"
    )


def write_case_plots(
    results: pd.DataFrame, table: pd.DataFrame, out_dir: str | Path, metric: str = "dice"
) -> list[Path]:
    """Per dataset: one panel per region, a box and the individual test cases (averaged over
    seeds) for each model at its highest level."""
    paths = []
    res = results if "stage" in results else results.assign(stage="final")
    for dataset, part in table.groupby("dataset", sort=False):
        top = part[part["level"] == part.groupby(["label", "stage"])["level"].transform("max")]
        sel = res[(res["dataset"] == dataset) & (res["metric"] == metric)]
        regions = [r for m, r in metric_regions(sel) if m == metric]
        if sel.empty or not regions:
            continue
        fig, axes = _panels(len(regions), height=2.8)
        colors = family_colors(list(dict.fromkeys(part["family"])))
        names = [row_label(r["label"], r["stage"]) for _, r in top.iterrows()]
        for ax, region in zip(axes, regions, strict=True):
            data = []
            for _, r in top.iterrows():
                v = (
                    sel[
                        (sel["label"] == r["label"])
                        & (sel["stage"] == r["stage"])
                        & (sel["level"] == r["level"])
                        & (sel["region"] == region)
                    ]
                    .groupby("case")["value"]
                    .mean()
                    .dropna()
                )
                data.append(v.to_numpy())
            pos = np.arange(1, len(data) + 1)
            ax.boxplot(
                [d if len(d) else [np.nan] for d in data],
                positions=pos,
                widths=0.55,
                showfliers=False,
                medianprops={"color": "0.2"},
            )
            rng = np.random.default_rng(0)
            for k, (d, (_, r)) in enumerate(zip(data, top.iterrows(), strict=True)):
                ax.scatter(
                    pos[k] + rng.uniform(-0.15, 0.15, len(d)),
                    d,
                    s=9,
                    zorder=3,
                    alpha=0.8,
                    color=colors[r["family"]],
                )
            dice_limits(ax, np.concatenate([d for d in data if len(d)] or [np.zeros(1)]))
            ax.set_xticks(pos)
            ax.set_xticklabels(names, rotation=35, ha="right", fontsize=6.5)
            ax.set_title(f"{metric.upper() if metric != 'dice' else 'Dice'} {region}")
            ax.grid(True, axis="y", alpha=0.3)
        fig.suptitle(f"{dataset}: per-case {metric} (test cases, mean over seeds)", fontsize=9)
        fig.tight_layout()
        paths.append(save_figure(fig, Path(out_dir) / f"cases_{file_name(dataset)}"))
    return paths
