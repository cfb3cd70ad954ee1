"""Tables and figures of a sweep, from DataFrames (pandas and matplotlib only).

Inputs, made by :mod:`studies.sweep`:

- **trials**: one row per trial: ``number``, ``state`` (complete, fail, pruned, running),
  ``family``, ``label``, its parameters (``p:NAME``), one column per objective and per
  constraint, ``feasible``, ``pareto`` (on the front), ``fail_reason``, ``seconds``;
- **hypervolume**: ``trials`` (count, in trial-number order) and ``hypervolume`` (several
  objectives) or ``best`` (one), with the ``reference`` point as text;
- **importances**: ``objective``, ``parameter``, ``importance`` (fANOVA, summing to 1 per objective).

``objectives`` is a list of ``(name, direction)`` pairs, ``direction`` ``"maximize"`` or
``"minimize"``. Every figure is returned as a matplotlib figure; :func:`write_sweep_outputs`
saves each as PNG and PDF.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .plotting import plain
from .text import format_rows

GREY = "0.75"


def front_table(trials: pd.DataFrame, objectives: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """The trials on the front, best first by the first objective: number, family, label,
    the objectives and the parameters."""
    if trials.empty:
        return pd.DataFrame(columns=["number", "family", "label", *[n for n, _ in objectives]])
    front = trials[trials["pareto"]]
    first, direction = objectives[0]
    front = front.sort_values(first, ascending=direction != "maximize")
    params = [c for c in trials.columns if c.startswith("p:") and c != "p:family"]
    cols = ["number", "family", "label", *[n for n, _ in objectives], *params]
    out = front[cols].rename(columns={c: c[2:] for c in params})
    return out.reset_index(drop=True)


def format_front(front: pd.DataFrame, fmt: str = "md", header: str | None = None) -> str:
    """The front as Markdown, CSV or JSON (the one text formatter of :mod:`reports.text`)."""
    if front.empty and fmt == "md":
        return (header + "\n\n" if header else "") + "(no complete feasible trial yet: the front is empty)"
    def cell(v):
        if isinstance(v, float) and v != v:
            return None
        if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
            return int(v)  # an integer parameter in a column that also holds gaps
        return v

    rows = [{k: cell(v) for k, v in r.items()} for r in front.astype(object).to_dict("records")]
    return format_rows(rows, fmt, header=header)


def _colours(families) -> dict:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {f: cmap(k % 10) for k, f in enumerate(sorted(set(families)))}


def front_figure(trials: pd.DataFrame, objectives: Sequence[tuple[str, str]], title: str = ""):
    """The first objective against each other one (one panel each): trials on the front in
    their family's colour with their numbers, dominated feasible trials grey, infeasible ones
    grey crosses; the front joined by a line in each panel's order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (y, ydir), others = objectives[0], list(objectives[1:]) or [objectives[0]]
    fig, axes = plt.subplots(1, len(others), figsize=(5.2 * len(others), 4.2), squeeze=False)
    done = trials[trials["state"] == "complete"] if not trials.empty else trials
    colours = _colours(done["family"].dropna()) if not done.empty else {}
    for ax, (x, _) in zip(axes[0], others, strict=True):
        if done.empty:
            ax.text(0.5, 0.5, "no complete trial", ha="center", va="center", transform=ax.transAxes)
            continue
        infeasible = done[~done["feasible"]]
        dominated = done[done["feasible"] & ~done["pareto"]]
        front = done[done["pareto"]].sort_values(x)
        ax.scatter(dominated[x], dominated[y], s=22, color=GREY, label="dominated", zorder=2)
        ax.scatter(infeasible[x], infeasible[y], s=22, color=GREY, marker="x", label="infeasible", zorder=2)
        for family, grp in front.groupby("family", sort=True):
            ax.scatter(grp[x], grp[y], s=36, color=colours[family], label=plain(family), zorder=3,
                       edgecolor="black", linewidth=0.4)
        # the other families' dominated trials keep their colour as a ring, so each family is visible
        on_front = set(front["family"])
        for family, grp in dominated.groupby("family", sort=True):
            ax.scatter(grp[x], grp[y], s=30, facecolor="none", edgecolor=colours[family], linewidth=0.8,
                       zorder=2, label=None if family in on_front else plain(f"{family} (none on the front)"))
        if len(front) > 1 and x != y:
            ax.plot(front[x], front[y], color="0.3", lw=0.8, ls="--", zorder=1)
        for _, r in front.iterrows():
            ax.annotate(f"#{int(r['number'])}", (r[x], r[y]), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
        if x in ("params", "gmacs") and (done[x] > 0).all():
            ax.set_xscale("log")
        ax.set_xlabel(x)
        ax.set_ylabel(f"{y} ({ydir})")
        ax.grid(True, alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        ax.legend(unique.values(), unique.keys(), fontsize=7, loc="best")
    if title:
        fig.suptitle(plain(title), fontsize=10)
    fig.tight_layout()
    return fig


def history_figure(trials: pd.DataFrame, hypervolume: pd.DataFrame, objectives: Sequence[tuple[str, str]],
                   title: str = ""):
    """Each objective by trial number (feasible trials coloured by family, others grey, the
    best so far as a step line), and the hypervolume (or best value) by trial count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(objectives) + 1
    fig, axes = plt.subplots(1, n, figsize=(4.0 * n, 3.6), squeeze=False)
    done = trials[trials["state"] == "complete"] if not trials.empty else trials
    colours = _colours(done["family"].dropna()) if not done.empty else {}
    for ax, (name, direction) in zip(axes[0][:-1], objectives, strict=True):
        if not done.empty:
            feasible = done[done["feasible"]].sort_values("number")
            for family, grp in feasible.groupby("family", sort=True):
                ax.scatter(grp["number"], grp[name], s=16, color=colours[family], label=plain(family),
                           zorder=3)
            other = done[~done["feasible"]]
            ax.scatter(other["number"], other[name], s=16, color=GREY, marker="x", label="infeasible")
            if len(feasible):
                best = feasible[name].cummax() if direction == "maximize" else feasible[name].cummin()
                ax.step(feasible["number"], best, where="post", color="0.3", lw=0.8, label="best so far")
            ax.legend(fontsize=6, loc="best")
        ax.set_xlabel("trial")
        ax.set_ylabel(f"{name} ({direction})")
        ax.grid(True, alpha=0.3)
    ax = axes[0][-1]
    column = "hypervolume" if "hypervolume" in hypervolume else "best"
    if not hypervolume.empty:
        ax.plot(hypervolume["trials"], hypervolume[column], marker="o", ms=3, color="tab:blue")
        ref = hypervolume["reference"].iloc[0] if "reference" in hypervolume else ""
        if ref:
            ax.set_title(f"reference: {ref}", fontsize=6)
    ax.set_xlabel("trials")
    ax.set_ylabel(column)
    ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(plain(title), fontsize=10)
    fig.tight_layout()
    return fig


def importance_figure(importances: pd.DataFrame, title: str = ""):
    """Parameter importances, one panel per objective, largest at the top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(importances["objective"])) if not importances.empty else []
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(4.0 * max(1, len(names)), 3.2), squeeze=False)
    if not names:
        axes[0][0].text(0.5, 0.5, "no importances (too few complete trials)", ha="center", va="center",
                        transform=axes[0][0].transAxes)
        axes[0][0].set_axis_off()
    for ax, name in zip(axes[0], names, strict=False):
        sel = importances[importances["objective"] == name].sort_values("importance")
        ax.barh(sel["parameter"], sel["importance"], color="tab:blue")
        ax.set_xlim(0, 1)
        ax.set_xlabel("importance (fANOVA)")
        ax.set_title(name, fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
    if title:
        fig.suptitle(plain(title), fontsize=10)
    fig.tight_layout()
    return fig


def write_sweep_outputs(out_dir: str | Path, trials: pd.DataFrame, hypervolume: pd.DataFrame,
                        importances: pd.DataFrame, objectives: Sequence[tuple[str, str]],
                        title: str = "") -> dict[str, list[Path]]:
    """Write ``trials.csv``, ``front.{csv,md}``, ``hypervolume.csv``, ``importances.csv`` and
    the figures ``sweep_front``, ``sweep_history``, ``sweep_importance`` (PNG and PDF) into
    ``out_dir``; return the paths by kind."""
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    front = front_table(trials, objectives)
    trials.to_csv(out / "trials.csv", index=False)
    front.to_csv(out / "front.csv", index=False)
    (out / "front.md").write_text(format_front(front, "md") + "\n")
    hypervolume.to_csv(out / "hypervolume.csv", index=False)
    importances.to_csv(out / "importances.csv", index=False)
    written = {"tables": [out / n for n in ("trials.csv", "front.csv", "front.md", "hypervolume.csv",
                                            "importances.csv")], "figures": []}
    for name, fig in (("sweep_front", front_figure(trials, objectives, title)),
                      ("sweep_history", history_figure(trials, hypervolume, objectives, title)),
                      ("sweep_importance", importance_figure(importances, title))):
        for ext in ("png", "pdf"):
            fig.savefig(out / f"{name}.{ext}", dpi=150)
            written["figures"].append(out / f"{name}.{ext}")
        plt.close(fig)
    return written
