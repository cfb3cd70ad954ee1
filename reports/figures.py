"""The report's curves and distributions, from the aggregate of :func:`reports.tables.aggregate`
and the tidy results: Dice against pruning level (L1-L4), against base width and against the
channel-prune ratio (each only when the run has them), per-case box/strip plots, and the share of
the device's peak each model reaches in each runtime (a run that measured more than PyTorch eager).

Each writer returns the PDF paths it wrote (a PNG lies beside each), or none when the run has
nothing to show."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from .aggregate import mean_score, metric_regions, model_rows, series
from .pareto import EAGER, at_shown_config
from .plotting import family_colors, file_name, plain, plt, save_figure
from .schema import ROW_KEYS
from .tables import metric_name, row_label, row_name


def _dice(part: pd.DataFrame) -> dict[str, tuple[pd.Series, pd.Series, pd.Series]]:
    """Per Dice region with a value: its mean and 95% interval per model row of ``part``."""
    return {r: tuple(series(part, "dice", r, s) for s in ("mean", "ci_lo", "ci_hi"))
            for m, r in metric_regions(part) if m == "dice"}


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


def _errorbars(mean: pd.Series, lo: pd.Series, hi: pd.Series):
    below = (mean - lo).clip(lower=0).fillna(0)
    above = (hi - mean).clip(lower=0).fillna(0)
    return np.vstack([below.to_numpy(), above.to_numpy()])


def _level_lines(rows: pd.DataFrame) -> list[tuple[str, str, pd.Index]]:
    """(label, stage, model rows by level) of each model evaluated at several levels."""
    return [(label, stage, g.sort_values("level").index) for (label, stage), g in
            rows.groupby(["label", "stage"], sort=False) if g["level"].nunique() > 1]


def _level_axes(fig, axes, levels, labels: list[str], dataset: str) -> None:
    for ax in axes:
        ax.set_xticks(levels)
        ax.set_xticklabels([f"L{int(v)}" for v in levels])
        ax.set_xlabel("pruning level")
        ax.grid(True, alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(4, len(names)), fontsize=7, frameon=False)
    fig.suptitle(plain(f"{dataset}: accuracy and cost per pruning level"), fontsize=9)
    fig.tight_layout(rect=(0, 0.06 + 0.04 * ((len(labels) - 1) // 4), 1, 1))


def write_level_curves(agg: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Per dataset with a model at several pruning levels: mean Dice (95% bootstrap interval)
    per region against the level, and GMACs against the level."""
    paths = []
    for dataset, part in agg.groupby("dataset", sort=False):
        rows = model_rows(part)
        lines = _level_lines(rows)
        if not lines:
            continue
        dice, gmacs = _dice(part), series(part, "gmacs")
        with_cost = bool(gmacs.notna().any())
        fig, axes = _panels(len(dice) + with_cost)
        names = []
        for n, (label, stage, idx) in enumerate(lines):
            name, style = plain(row_label(label, stage)), "--" if stage == "before-pruning" else "-"
            names.append(name)
            line = {"marker": "o", "ms": 3, "lw": 1, "ls": style, "label": name, "color": f"C{n}"}
            level = rows.loc[idx, "level"]
            for ax, (region, (mean, lo, hi)) in zip(axes, dice.items(), strict=False):
                ax.errorbar(level, mean[idx], yerr=_errorbars(mean[idx], lo[idx], hi[idx]), capsize=2, **line)
                ax.set_title(plain(f"Dice {region}"))
            if with_cost:
                axes[-1].plot(level, gmacs[idx].astype(float), **line)
                axes[-1].set_yscale("log")
                axes[-1].set_title("GMACs")
        for ax, (mean, _, _) in zip(axes, dice.values(), strict=False):
            dice_limits(ax, mean)
        _level_axes(fig, axes, sorted(v for v in rows["level"].unique() if v > 0), names, dataset)
        paths.append(save_figure(fig, Path(out_dir) / f"levels_{file_name(dataset)}"))
    return paths


def _curve_rows(agg: pd.DataFrame, x: pd.Series) -> pd.DataFrame:
    """The model rows of ``agg`` with ``x``, the mean Dice over regions and the parameters;
    the highest level of each label only."""
    rows = model_rows(agg).assign(_x=x.to_numpy(), _score=mean_score(agg), params=series(agg, "params"))
    return rows[rows["level"] == rows.groupby(["dataset", "label"])["level"].transform("max")]


def _log2_axis(ax, values: pd.Series) -> None:
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log", base=2)
    ticks = sorted(values.dropna().unique())
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(ticks[0] / 1.25, ticks[-1] * 1.25)


def _sweep_curves(agg: pd.DataFrame, out_dir: Path, x: pd.Series, xlabel: str, stem: str, title: str,
                  log2: bool = False) -> list[Path]:
    """Mean Dice over regions against ``x`` (one value per model row of ``agg``), one line per
    family having at least two distinct ``x``; the highest level of each label only."""
    paths = []
    for dataset, part in _curve_rows(agg, x).groupby("dataset", sort=False):
        fams = [f for f, g in part.groupby("family", sort=False) if g["_x"].dropna().nunique() > 1]
        if not fams:
            continue
        colors = family_colors(list(dict.fromkeys(part["family"])))
        fig, ax = plt().subplots(figsize=(4.2, 2.8))
        for f in fams:
            g = part[part["family"] == f].dropna(subset=["_x"]).sort_values("_x")
            ax.plot(g["_x"], g["_score"], marker="o", ms=4, lw=1, color=colors[f], label=plain(f))
            for _, r in g[g["params"].notna()].iterrows():
                ax.annotate(f"{r['params'] / 1e3:,.0f}k", (r["_x"], r["_score"]), fontsize=7, xytext=(4, -10),
                            textcoords="offset points", color="0.3")
        if log2:
            _log2_axis(ax, part["_x"])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mean Dice (regions)")
        ax.set_title(plain(f"{dataset}: {title} (labels: parameters)"))
        ax.grid(True, alpha=0.3)
        dice_limits(ax, part["_score"])
        ax.legend()
        fig.tight_layout()
        paths.append(save_figure(fig, out_dir / f"{stem}_{file_name(dataset)}"))
    return paths


def write_width_curves(agg: pd.DataFrame, widths: Mapping[str, float], out_dir: str | Path) -> list[Path]:
    """Mean Dice against base width, per family with models at several widths (``widths``:
    label -> base width, from the plan)."""
    final = agg[agg["stage"] == "final"]
    x = model_rows(final)["label"].map(lambda v: widths.get(v, np.nan)).astype(float)
    return _sweep_curves(final, Path(out_dir), x, "base width", "widths", "accuracy against width", log2=True)


def write_prune_curves(agg: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Mean Dice against the achieved channel-prune ratio (0 before pruning), per family with
    several ratios."""
    x = series(agg, "prune_achieved").astype(float)
    if x.notna().sum() < 2:
        return []
    x = x.where(x.notna() | (model_rows(agg)["stage"] == "before-pruning"), np.nan)
    return _sweep_curves(agg, Path(out_dir), x, "channels pruned (fraction)", "prune",
                         "accuracy against channel pruning")


def _case_values(sel: pd.DataFrame, r, region: str) -> np.ndarray:
    """One model row's values of ``region`` per test case, averaged over seeds."""
    mask = (sel["label"] == r["label"]) & (sel["stage"] == r["stage"]) & (sel["level"] == r["level"])
    return sel[mask & (sel["region"] == region)].groupby("case")["value"].mean().dropna().to_numpy()


def _case_panel(ax, data: list[np.ndarray], colors: list, names: list[str], title: str) -> None:
    """A box per model and its cases as points."""
    pos = np.arange(1, len(data) + 1)
    ax.boxplot([d if len(d) else [np.nan] for d in data], positions=pos, widths=0.55, showfliers=False,
               medianprops={"color": "0.2"})
    rng = np.random.default_rng(0)
    for k, (d, color) in enumerate(zip(data, colors, strict=True)):
        ax.scatter(pos[k] + rng.uniform(-0.15, 0.15, len(d)), d, s=9, zorder=3, alpha=0.8, color=color)
    dice_limits(ax, np.concatenate([d for d in data if len(d)] or [np.zeros(1)]))
    ax.set_xticks(pos)
    ax.set_xticklabels([plain(n) for n in names], rotation=35, ha="right", fontsize=6.5)
    ax.set_title(plain(title))
    ax.grid(True, axis="y", alpha=0.3)


def write_case_plots(results: pd.DataFrame, agg: pd.DataFrame, out_dir: str | Path,
                     metric: str = "dice") -> list[Path]:
    """Per dataset: one panel per region, a box and the individual test cases (averaged over
    seeds) for each model at its highest level."""
    paths = []
    res = results if "stage" in results else results.assign(stage="final")
    for dataset, part in agg.groupby("dataset", sort=False):
        rows = model_rows(part)
        top = rows[rows["level"] == rows.groupby(["label", "stage"])["level"].transform("max")]
        sel = res[(res["dataset"] == dataset) & (res["metric"] == metric)]
        names_of = list(dict.fromkeys(sel["region"]))
        if sel.empty or not names_of:
            continue
        fig, axes = _panels(len(names_of), height=2.8)
        family = family_colors(list(dict.fromkeys(rows["family"])))
        colors = [family[f] for f in top["family"]]
        names = [row_label(r["label"], r["stage"]) for _, r in top.iterrows()]
        for ax, region in zip(axes, names_of, strict=True):
            data = [_case_values(sel, r, region) for _, r in top.iterrows()]
            _case_panel(ax, data, colors, names, f"{metric_name(metric)} {region}")
        fig.suptitle(plain(f"{dataset}: per-case {metric} (test cases, mean over seeds)"), fontsize=9)
        fig.tight_layout()
        paths.append(save_figure(fig, Path(out_dir) / f"cases_{file_name(dataset)}"))
    return paths


# -- share of the device's peak ------------------------------------------------------------------

#: the columns of :func:`peak_frame`
PEAK_COLUMNS = [*ROW_KEYS, "runtime", "quantize", "gmacs", "latency_ms", "gmacs_per_s", "pct_of_peak",
                "arithmetic_intensity"]


#: the share-of-peak figure's greatest height (inches): taller, it ran off the report's page
PEAK_MAX_HEIGHT = 8.0


def peak_frame(efficiency: pd.DataFrame) -> pd.DataFrame:
    """Per dataset x model row x runtime x quantization at the dataset's shown configuration
    (:func:`reports.pareto.shown_config`), ``ok`` rows with a share of peak only: GMACs per image,
    median latency, achieved GMAC/s (GMACs x batch / median s), ``pct_of_peak`` and the
    arithmetic intensity (MACs per byte, where the run recorded it), each the mean over seeds."""
    eff = at_shown_config(efficiency)
    if "pct_of_peak" not in eff:
        return pd.DataFrame(columns=PEAK_COLUMNS)
    eff = eff[pd.to_numeric(eff["pct_of_peak"], errors="coerce").notna()]
    if "arithmetic_intensity" not in eff:
        eff = eff.assign(arithmetic_intensity=np.nan)
    eff = eff.assign(gmacs_per_s=eff["gmacs"] * eff["batch"] / (eff["latency_ms"] / 1e3))
    numbers = ["gmacs", "latency_ms", "gmacs_per_s", "pct_of_peak", "arithmetic_intensity"]
    eff = eff.astype({c: float for c in numbers})
    keys = [*ROW_KEYS, "runtime", "quantize"]
    return eff.groupby(keys, sort=False, dropna=False)[numbers].mean().reset_index()[PEAK_COLUMNS]


def _series_name(runtime: str, quantize: str) -> str:
    return runtime if quantize == "none" else f"{runtime} {quantize}"


def _peak_panels(part: pd.DataFrame, dataset: str):
    """Left: % of peak per model (bars, one per runtime and quantization); right: median latency
    against GMACs per image (log-log), with a dotted line per runtime where latency would be
    proportional to MACs (constant GMAC/s through its largest model)."""
    part = part.assign(_series=[_series_name(r, q) for r, q in zip(part["runtime"], part["quantize"],
                                                                   strict=True)])
    per_row = part.groupby(ROW_KEYS, sort=False, dropna=False)
    rows = pd.DataFrame({"_g": per_row["gmacs"].first(), "_ai": per_row["arithmetic_intensity"].max()})
    rows = rows.reset_index().sort_values("_g", ascending=False).reset_index(drop=True)
    names = list(dict.fromkeys(part["_series"]))
    colors = {n: f"C{k}" for k, n in enumerate(names)}
    # one band of bars per model row, the whole at most a page's height (A4 with its caption)
    height = min(PEAK_MAX_HEIGHT, max(2.8, 1.2 + 0.22 * len(rows) * (len(names) + 1)))
    fig, (left, right) = plt().subplots(1, 2, figsize=(7.4, height), gridspec_kw={"width_ratios": [1.25, 1]})
    bar = 0.8 / len(names)
    for j, name in enumerate(names):
        sel = part[part["_series"] == name]
        keyed = sel.set_index(ROW_KEYS)
        ys, values = [], []
        for k, r in rows.iterrows():
            key = tuple(r[c] for c in ROW_KEYS)
            if key in keyed.index:
                ys.append(k - 0.4 + bar * (j + 0.5))
                values.append(float(keyed.loc[key, "pct_of_peak"]))
        left.barh(ys, values, height=bar * 0.92, color=colors[name], label=plain(name))
        pts = sel.sort_values("gmacs")
        right.plot(pts["gmacs"], pts["latency_ms"], "o", ms=4, color=colors[name], label=plain(name))
        if len(pts):
            top = pts.iloc[-1]
            xs = np.array([pts["gmacs"].min(), top["gmacs"]])
            right.plot(xs, top["latency_ms"] * xs / top["gmacs"], ":", lw=0.9, color=colors[name])
    ticks = [plain(f"{row_name(r)}\n{r['_g']:.3g} GMACs"
                   + (f", {r['_ai']:.3g} MAC/B" if pd.notna(r["_ai"]) else "")) for _, r in rows.iterrows()]
    left.set_yticks(range(len(rows)))
    left.set_yticklabels(ticks, fontsize=6.5)
    left.invert_yaxis()
    left.set_xlabel("% of the device's peak fp32 GMAC/s")
    left.grid(True, axis="x", alpha=0.3)
    right.set_xscale("log")
    right.set_yscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for axis, subs in ((right.xaxis, (1, 3)), (right.yaxis, (1, 2, 5))):  # x: labels a narrow panel fits
        axis.set_major_locator(LogLocator(base=10, subs=subs))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())
    right.margins(x=0.15, y=0.15)
    right.set_xlabel("GMACs per image")
    right.set_ylabel("median latency (ms)")
    right.set_title("dotted: latency proportional to MACs", fontsize=7)
    right.grid(True, which="both", alpha=0.3)
    fig.suptitle(plain(f"{dataset}: share of the device's peak per model and runtime"), fontsize=9)
    fig.legend(*left.get_legend_handles_labels(), loc="lower center", ncol=min(4, len(names)), fontsize=7,
               frameon=False)
    fig.tight_layout(rect=(0, 0.08 + 0.04 * ((len(names) - 1) // 4), 1, 1))
    return fig


def write_peak_figures(efficiency: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Per dataset whose run measured a share of peak in a runtime other than PyTorch eager:
    ``peak_<dataset>.pdf`` (and ``.png``) of :func:`peak_frame`'s rows; dataset -> PDF path."""
    paths = {}
    for dataset, part in peak_frame(efficiency).groupby("dataset", sort=False):
        if (part["runtime"] != EAGER).any():
            fig = _peak_panels(part, dataset)
            paths[dataset] = save_figure(fig, Path(out_dir) / f"peak_{file_name(dataset)}")
    return paths

