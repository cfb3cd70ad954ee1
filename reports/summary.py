"""The report's summary, written from the aggregate's numbers (never from anything else, so it
cannot contradict the tables): per dataset the most accurate model, the Pareto front over
parameters and its cost, the fastest model, and which differences from the reference are
significant after Holm's correction and which are not."""

from __future__ import annotations

import pandas as pd

from .pareto import frontier
from .stats import ALPHA
from .tables import mean_score, metric_regions_of, row_label
from .text import format_number


def _name(r) -> str:
    level = int(r["level"]) if pd.notna(r["level"]) else 0
    return row_label(r["label"], r["stage"]) + (f" L{level}" if level > 0 else "")


def _directions(by: dict[str, list[str]]) -> str:
    return "; ".join(f"{direction} on {', '.join(regions)}" for direction, regions in by.items())


def min_wilcoxon_p(n: int) -> float:
    """The smallest two-sided p-value the exact signed-rank test can give for ``n`` pairs."""
    return min(1.0, 2.0 / 2**n) if n > 0 else 1.0


def summarize(table: pd.DataFrame, failures: pd.DataFrame | None = None) -> list[str]:
    """Paragraphs of plain text, one per dataset, and one on failed items if any."""
    out = []
    for dataset, part in table.groupby("dataset", sort=False):
        part = part.reset_index(drop=True).assign(_score=lambda d: mean_score(d))
        if part["_score"].isna().all():
            continue
        regions = [r for m, r in metric_regions_of(part) if m == "dice"]
        n_cases = int(part[[f"dice {r} n" for r in regions]].max(axis=1).max())
        seeds = int(part["seeds"].max()) if "seeds" in part else 1
        best = part.loc[part["_score"].idxmax()]
        text = [
            f"{dataset}: {len(part)} evaluated models, {n_cases} test case{'s' if n_cases != 1 else ''}, "
            f"{seeds} seed{'s' if seeds != 1 else ''}. The highest mean Dice over "
            f"{', '.join(regions)} is {format_number(float(best['_score']))} ({_name(best)}"
            + (f", {format_number(int(best['params']))} parameters" if pd.notna(best.get("params")) else "")
            + (f", {format_number(float(best['gmacs']))} GMACs" if pd.notna(best.get("gmacs")) else "")
            + ")."
        ]
        if "params" in part and part["params"].notna().any():
            front = frontier(part, "params", "_score")
            members = "; ".join(
                f"{_name(r)} ({format_number(int(r['params']))} parameters, Dice "
                f"{format_number(float(r['_score']))})"
                for _, r in front.iterrows()
            )
            text.append(f"On the Pareto front of mean Dice against parameters: {members}.")
        if "latency_ms" in part and part["latency_ms"].notna().any():
            fast = part.loc[part["latency_ms"].idxmin()]
            text.append(
                f"Fastest: {_name(fast)} at {format_number(float(fast['latency_ms']))} ms "
                f"(Dice {format_number(float(fast['_score']))})."
            )
        ref = part[part["reference"]] if "reference" in part else part.iloc[:0]
        if len(ref):
            ref_name = _name(ref.iloc[0])
            sig: dict[str, dict[str, list[str]]] = {}
            notsig, untested, worst = 0, 0, 0.0
            for region in regions:
                c = f"dice {region}"
                for _, r in part[~part["reference"]].iterrows():
                    ph = r.get(f"{c} p_holm")
                    if pd.isna(ph):
                        untested += 1
                    elif ph < ALPHA:
                        direction = "higher" if r[c] > ref.iloc[0][c] else "lower"
                        sig.setdefault(_name(r), {}).setdefault(direction, []).append(region)
                        worst = max(worst, float(ph))
                    else:
                        notsig += 1
            n_sig = sum(len(v) for d in sig.values() for v in d.values())
            line = (
                f"Against the reference {ref_name} (paired Wilcoxon signed-rank tests over cases on "
                f"Dice, Holm-corrected per region), {n_sig} of {n_sig + notsig} comparisons differ "
                f"significantly (p < {ALPHA:g})"
            )
            if sig:
                listed = "; ".join(f"{name} ({_directions(by)})" for name, by in sig.items())
                line += f": {listed} (each p_Holm <= {worst:.3g}); the others do not."
            else:
                line += "; no difference is significant."
            if untested:
                line += (
                    f" {untested} comparison{'s' if untested != 1 else ''} had no differing pair (untested)."
                )
            floor = min_wilcoxon_p(n_cases)
            if n_cases and floor >= ALPHA:
                line += (
                    f" With {n_cases} paired case{'s' if n_cases != 1 else ''} the exact test cannot "
                    f"reach p < {format_number(floor)}, so no difference could be significant: "
                    "more test cases are needed."
                )
            text.append(line)
        out.append(" ".join(text))
    if failures is not None and len(failures):
        out.append(
            f"{len(failures)} item{'s' if len(failures) != 1 else ''} did not complete "
            f"({', '.join(failures['item'].astype(str))}); they are listed with their reasons below "
            "and are absent from every table and figure."
        )
    return out
