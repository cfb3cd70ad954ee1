"""Everything a finished (or partly finished) study yields: tidy results, tables, Pareto
plots and the PDF report, written into one output folder."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .pareto import write_pareto_plots
from .pdf import write_report
from .tables import EFFICIENCY_COLUMNS, TIDY_COLUMNS, aggregate, mean_score, write_tables

log = logging.getLogger(__name__)


def collect(trials: Sequence) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tidy metric rows and efficiency rows from COMPLETE trials (their user attributes)."""
    metrics, efficiency = [], []
    for t in trials:
        metrics += t.user_attrs.get("metrics", [])
        efficiency += t.user_attrs.get("efficiency", [])
    tidy = pd.DataFrame(metrics, columns=TIDY_COLUMNS)
    tidy["value"] = pd.to_numeric(tidy["value"], errors="coerce")  # None (NaN in JSON) -> NaN
    eff = pd.DataFrame(efficiency)
    if eff.empty:
        eff = pd.DataFrame(columns=EFFICIENCY_COLUMNS)
    return tidy, eff


def conventions(efficiency: pd.DataFrame, empty_rule: str = "brats") -> list[str]:
    """The lines that state how every figure was obtained."""
    lines = ["Dice and HD95: 3D per case on the test cases, original voxel grid and spacing (mm); "
             "HD95 as medpy (95th percentile of both directions' surface distances pooled, connectivity 1).",
             {"brats": "Empty masks: both empty -> Dice 1, HD95 0; one empty -> Dice 0, HD95 373.13 mm.",
              "nan": "Empty masks: NaN where undefined, counted in the 'nan' columns."}[empty_rule],
             "Complexity: parameters of the model as evaluated; GMACs from fvcore, 1 multiply-add = 1 MAC "
             "(GFLOPs = 2 x GMACs), batch 1."]
    if not efficiency.empty:
        e = efficiency.iloc[0]
        lines.append(f"Latency: median ms per batch of {e.get('batch')} at input {e.get('input')}, "
                     f"{e.get('precision')}, device {e.get('device')}; peak memory in MiB "
                     "(CUDA: max allocated; CPU: process peak RSS).")
    return lines


def build_outputs(out_dir: str | Path, tidy: pd.DataFrame, efficiency: pd.DataFrame, title: str,
                  pdf: bool = True) -> dict[str, list[Path]]:
    """Write results.csv/.parquet, efficiency.csv, table.{csv,md,tex}, pareto_*.png and report.pdf."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {}
    tidy.to_csv(out / "results.csv", index=False)
    tidy.to_parquet(out / "results.parquet", index=False)
    efficiency.to_csv(out / "efficiency.csv", index=False)
    written["results"] = [out / "results.csv", out / "results.parquet", out / "efficiency.csv"]
    ok = efficiency[efficiency.get("status", pd.Series("ok", index=efficiency.index)) == "ok"] \
        if not efficiency.empty else efficiency
    table = aggregate(tidy, ok)
    lines = conventions(ok)
    written["tables"] = write_tables(table, out, " ".join(lines))
    points = mean_score(tidy).merge(
        ok.groupby(["label", "level", "dataset"], sort=False)
        .agg(params=("params", "first"), gmacs=("gmacs", "first"), latency_ms=("latency_ms", "median"))
        .reset_index(), on=["label", "level", "dataset"], how="left") if not tidy.empty else pd.DataFrame()
    written["figures"] = write_pareto_plots(points, out, conventions=lines[2]) if not points.empty else []
    if pdf:
        written["report"] = [write_report(out / "report.pdf", table, written["figures"], title, lines)]
    return written
