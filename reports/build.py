"""Everything a finished (or partly finished) run yields, written into one output folder:
the tidy tables, the aggregated tables, Pareto plots and the PDF report.

Input: the DataFrames of :mod:`reports.schema` (results, efficiency, items). The conventions
stated with every table and figure are the ones stored with the items (the sentences of
:mod:`bench.conventions` that the run used), never written here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from .pareto import write_pareto_plots
from .pdf import write_report
from .schema import CONVENTION_COLUMNS
from .tables import KEYS, aggregate, mean_score, write_tables

log = logging.getLogger(__name__)


def conventions(items: pd.DataFrame, dataset: str | None = None) -> list[str]:
    """The distinct convention sentences the items (of ``dataset``, if given) were produced
    under, one line per kind; a kind that differed between items lists each variant."""
    sel = items if dataset is None else items[items["dataset"] == dataset]
    lines = [v for column in CONVENTION_COLUMNS for v in dict.fromkeys(sel[column].dropna()) if v]
    return [line[0].upper() + line[1:] + ("" if line.endswith(".") else ".") for line in lines]


def build_outputs(out_dir: str | Path, results: pd.DataFrame, efficiency: pd.DataFrame, items: pd.DataFrame,
                  title: str, pdf: bool = True) -> dict[str, list[Path]]:
    """Write results.csv/.parquet, efficiency.csv, items.csv, table.{csv,md,tex}, pareto_*.png
    and report.pdf."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {}
    results.to_csv(out / "results.csv", index=False)
    results.to_parquet(out / "results.parquet", index=False)
    efficiency.to_csv(out / "efficiency.csv", index=False)
    items.to_csv(out / "items.csv", index=False)
    names = ("results.csv", "results.parquet", "efficiency.csv", "items.csv")
    written["results"] = [out / name for name in names]
    ok = efficiency[efficiency["status"] == "ok"]
    table = aggregate(results, ok)
    datasets = list(dict.fromkeys(results["dataset"]))
    captions = {name: " ".join(conventions(items, name)) for name in datasets}
    written["tables"] = write_tables(table, out, captions)
    points = mean_score(results).merge(
        ok.groupby(KEYS, sort=False)
        .agg(params=("params", "first"), gmacs=("gmacs", "first"), latency_ms=("latency_ms", "median"))
        .reset_index(), on=KEYS, how="left") if not results.empty else pd.DataFrame()
    notes = {name: " ".join(line for line in conventions(items, name)
                            if line.startswith(("GMACs", "Latency"))) for name in datasets}
    written["figures"] = write_pareto_plots(points, out, notes=notes) if not points.empty else []
    if pdf:
        written["report"] = [write_report(out / "report.pdf", table, written["figures"], title,
                                          {name: conventions(items, name) for name in datasets})]
    return written
