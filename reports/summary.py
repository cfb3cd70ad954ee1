"""The report's summary, written from the aggregate's numbers (never from anything else, so it
cannot contradict the tables): per dataset the most accurate model, the Pareto front over
parameters and its cost, the fastest model, which differences from the reference are
significant after Holm's correction and which are not, and which models have no values for a
region (they are never called best nor put on the front)."""

from __future__ import annotations

import pandas as pd

from .aggregate import mean_score, model_rows, no_values, regions, series
from .pareto import frontier
from .stats import ALPHA
from .tables import row_name
from .text import format_number


def _directions(by: dict[str, list[str]]) -> str:
    return "; ".join(f"{direction} on {', '.join(regions)}" for direction, regions in by.items())


def _s(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def min_wilcoxon_p(n: int) -> float:
    """The smallest two-sided p-value the exact signed-rank test can give for ``n`` pairs."""
    return min(1.0, 2.0 / 2**n) if n > 0 else 1.0


def _overview(dataset: str, rows: pd.DataFrame, names: list[str], n_cases: int) -> str:
    """How many models, cases and seeds; the most accurate model."""
    seeds = int(rows["seeds"].max())
    text = (f"{dataset}: {len(rows)} evaluated models, {_s(n_cases, 'test case')}, {_s(seeds, 'seed')}. ")
    if rows["_score"].isna().all():
        return text + f"No model has a Dice value on every one of {', '.join(names)}, so none is ranked."
    best = rows.loc[rows["_score"].idxmax()]
    return (
        text + f"The highest mean Dice over {', '.join(names)} is {format_number(float(best['_score']))} "
        f"({row_name(best)}"
        + (f", {format_number(int(best['params']))} parameters" if pd.notna(best["params"]) else "")
        + (f", {format_number(float(best['gmacs']))} GMACs" if pd.notna(best["gmacs"]) else "")
        + ")."
    )


def _missing(part: pd.DataFrame, rows: pd.DataFrame) -> str:
    """The models without a Dice value in a region (left out of the best and the front)."""
    gaps: dict[str, list[str]] = {}
    for k, region in no_values(part, "dice"):
        gaps.setdefault(row_name(rows.loc[k]), []).append(region)
    if not gaps:
        return ""
    listed = "; ".join(f"{name} ({', '.join(regs)})" for name, regs in gaps.items())
    return (f"No Dice values (every case undefined or missing) for {listed}: their mean over regions is "
            "undefined, so they are neither ranked nor on the Pareto front.")


def _front_and_speed(rows: pd.DataFrame) -> list[str]:
    out = []
    if rows["params"].notna().any():
        front = frontier(rows, "params", "_score")
        members = "; ".join(f"{row_name(r)} ({format_number(int(r['params']))} parameters, Dice "
                            f"{format_number(float(r['_score']))})" for _, r in front.iterrows())
        if members:
            out.append(f"On the Pareto front of mean Dice against parameters: {members}.")
    if rows["latency_ms"].notna().any():
        fast = rows.loc[rows["latency_ms"].idxmin()]
        out.append(f"Fastest: {row_name(fast)} at {format_number(float(fast['latency_ms']))} ms "
                   f"(Dice {format_number(float(fast['_score']))}).")
    return out


def _comparisons(part: pd.DataFrame, rows: pd.DataFrame, names: list[str]):
    """Per model and direction the regions that differ significantly from the reference, the
    counts of comparisons not significant, untested (no differing pair) and without values, and
    the largest significant p_Holm."""
    ref = rows.index[rows["reference"]][0]
    sig: dict[str, dict[str, list[str]]] = {}
    notsig = untested = empty = 0
    worst = 0.0
    for region in names:
        mean, ph = series(part, "dice", region), series(part, "dice", region, "p_holm")
        for k in rows.index[~rows["reference"]]:
            if pd.isna(mean[k]) or pd.isna(mean[ref]):
                empty += 1
            elif pd.isna(ph[k]):
                untested += 1
            elif ph[k] < ALPHA:
                direction = "higher" if mean[k] > mean[ref] else "lower"
                sig.setdefault(row_name(rows.loc[k]), {}).setdefault(direction, []).append(region)
                worst = max(worst, float(ph[k]))
            else:
                notsig += 1
    return sig, notsig, untested, empty, worst


def _tests(part: pd.DataFrame, rows: pd.DataFrame, names: list[str], n_cases: int) -> str:
    """The significance sentence: comparisons against the reference."""
    sig, notsig, untested, empty, worst = _comparisons(part, rows, names)
    n_sig = sum(len(v) for d in sig.values() for v in d.values())
    line = (
        f"Against the reference {row_name(rows[rows['reference']].iloc[0])} (paired Wilcoxon signed-rank "
        f"tests over cases on Dice, Holm-corrected per region), {n_sig} of {n_sig + notsig} comparisons "
        f"differ significantly (p < {ALPHA:g})"
    )
    if sig:
        listed = "; ".join(f"{name} ({_directions(by)})" for name, by in sig.items())
        line += f": {listed} (each p_Holm <= {worst:.3g}); the others do not."
    else:
        line += "; no difference is significant."
    if untested:
        line += f" {_s(untested, 'comparison')} had no differing pair (untested)."
    if empty:
        line += f" {_s(empty, 'comparison')} had no values (untested)."
    floor = min_wilcoxon_p(n_cases)
    if n_cases and floor >= ALPHA:
        line += (
            f" With {_s(n_cases, 'paired case')} the exact test cannot reach p < {format_number(floor)}, "
            "so no difference could be significant: more test cases are needed."
        )
    return line


def dataset_summary(dataset: str, part: pd.DataFrame) -> str | None:
    """The paragraph on one dataset of the aggregate (None when it has no Dice value)."""
    names = regions(part, "dice")
    counts = [series(part, "dice", r, "n") for r in names]
    if not names or not any(c.notna().any() and c.max() > 0 for c in counts):
        return None
    rows = model_rows(part).assign(_score=mean_score(part), **{
        m: series(part, m).astype(float) for m in ("seeds", "params", "gmacs", "latency_ms")})
    n_cases = int(max(c.max() for c in counts if c.notna().any()))
    text = [_overview(dataset, rows, names, n_cases), _missing(part, rows), *_front_and_speed(rows)]
    if rows["reference"].any():
        text.append(_tests(part, rows, names, n_cases))
    return " ".join(t for t in text if t)


def summarize(agg: pd.DataFrame, failures: pd.DataFrame | None = None) -> list[str]:
    """Paragraphs of plain text, one per dataset of the aggregate, and one on failed items if any."""
    out = [p for dataset, part in agg.groupby("dataset", sort=False) if (p := dataset_summary(dataset, part))]
    if failures is not None and len(failures):
        out.append(
            f"{_s(len(failures), 'item')} did not complete "
            f"({', '.join(failures['item'].astype(str))}); they are listed with their reasons below "
            "and are absent from every table and figure."
        )
    return out
