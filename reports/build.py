"""Everything a finished (or partly finished) run yields, written into one output folder: the
tidy tables, the aggregated tables with their statistics (CSV, Markdown, LaTeX), the figures
(PDF and PNG), each sweep's tables and figures, and the paper-style report (``report.pdf`` and
its Typst source, :mod:`reports.sections`).

Input: one :class:`reports.inputs.ReportInputs`. An optional figure that cannot be made (an
overlays file that cannot be read) is left out and named in the log and the report, never
fatal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .aggregate import aggregate, mean_score, metrics, model_rows, primary_rows, series
from .captions import (
    cost_notes,
    deployment_caption,
    figure_caption,
    peak_caption,
    stats_caption,
    table_caption,
)
from .document import compile_pdf
from .figures import (
    write_case_plots,
    write_level_curves,
    write_peak_figures,
    write_prune_curves,
    write_width_curves,
)
from .inputs import ReportInputs, SweepData
from .overlays import load_models, write_overlay_figure
from .pareto import COSTS, EAGER, cost_label, pareto_runtime, runtime_latency, write_pareto_plots
from .plotting import file_name
from .sweeps import front_table, write_sweep_outputs
from .tables import (
    Display,
    deployment_display,
    deployment_frame,
    deploys,
    gated,
    row_name,
    write_deployment,
    write_tables,
)

log = logging.getLogger(__name__)

#: the width of each kind of figure on the page
FIGURE_WIDTHS = {"pareto": "85%", "levels": "100%", "widths": "62%", "prune": "62%", "cases": "100%",
                 "overlays": "100%", "peak": "100%"}


@dataclass
class Figure:
    """One figure written: its PDF ``path`` (a PNG lies beside it), ``kind`` and caption."""

    path: Path
    kind: str
    caption: str

    @property
    def width(self) -> str:
        return FIGURE_WIDTHS[self.kind]


@dataclass
class DatasetFigures:
    """The figures of one dataset, in the order the report shows them, and the items whose
    overlays the overlay figure lacks (item -> why)."""

    figures: list[Figure] = field(default_factory=list)
    lacking: dict[str, str] = field(default_factory=dict)


@dataclass
class SweepSection:
    """One sweep in the report: a sentence, its front table and its figures (paths relative to
    the output folder, with captions)."""

    name: str
    summary: str
    front: pd.DataFrame
    figures: list[tuple[str, str]]


@dataclass
class Written:
    """What :func:`build_outputs` made: the report's ``inputs`` and ``aggregate``, its table
    captions, the figures per dataset and the sweep sections."""

    inputs: ReportInputs
    aggregate: pd.DataFrame
    captions: dict[str, str]
    stats_captions: dict[str, dict[str, str]]
    figures: dict[str, DatasetFigures]
    sweeps: list[SweepSection]
    deployment: list[Display] = field(default_factory=list)
    deployment_figures: list[Figure] = field(default_factory=list)


def write_tidy(inputs: ReportInputs, out: Path) -> list[Path]:
    """The tidy tables as they came: results (CSV and Parquet), efficiency, items."""
    inputs.results.to_csv(out / "results.csv", index=False)
    inputs.results.to_parquet(out / "results.parquet", index=False)
    inputs.efficiency.to_csv(out / "efficiency.csv", index=False)
    inputs.items.to_csv(out / "items.csv", index=False)
    return [out / n for n in ("results.csv", "results.parquet", "efficiency.csv", "items.csv")]


def _pareto(inputs: ReportInputs, part: pd.DataFrame, dataset: str, out: Path,
            runtime: str = EAGER) -> list[Figure]:
    """Mean Dice against each cost, for one dataset of the aggregate; the latency ``runtime``'s
    (:func:`reports.pareto.pareto_runtime`)."""
    rows = model_rows(part)
    points = rows.assign(dice=mean_score(part), tag=[row_name(r) for _, r in rows.iterrows()],
                         **{c: series(part, c).astype(float) for c in COSTS})
    if runtime != EAGER:
        points["latency_ms"] = runtime_latency(inputs.efficiency, rows, runtime)
    notes = {dataset: cost_notes(inputs.items, dataset)}
    paths = write_pareto_plots(points, out, notes=notes, ylabel="mean Dice (test cases, all regions)",
                               runtime=runtime)
    figures = []
    for path in paths:
        cost = next(c for c in COSTS if path.stem.endswith(f"_{c}"))
        extra = f"Cost: {cost_label(cost, runtime)} (log axis). {notes[dataset]}"
        figures.append(Figure(path, "pareto", figure_caption("pareto", dataset, extra)))
    return figures


def _overlay_entries(items: pd.DataFrame, dataset: str) -> list[tuple[str, str, str]]:
    """(item, label, overlays file) of the dataset's items with one, the first seed only."""
    if "overlays" not in items:
        return []
    sel = items[(items["dataset"] == dataset) & items["overlays"].notna()]
    sel = sel[sel["seed"] == sel["seed"].min()] if len(sel) else sel
    return [(str(r["item"]), str(r["label"]), str(r["overlays"])) for _, r in sel.iterrows()]


def _overlays(inputs: ReportInputs, dataset: str, out: Path) -> DatasetFigures:
    """The overlay figure of one dataset, without the items whose file cannot be read."""
    loaded, lacking = load_models(_overlay_entries(inputs.items, dataset))
    for item, why in lacking.items():
        log.warning("overlay figure of %s: %s left out (%s)", dataset, item, why)
    made = write_overlay_figure(loaded, out / f"overlays_{file_name(dataset)}", f"{dataset}: test slices")
    if made is None:
        return DatasetFigures([], lacking)
    rows = "; ".join(f"{what}: case {c}, slice {s}" for what, (c, s) in made[1].items())
    extra = (f"Rows: {rows}. Largest disagreement: the slice with the most pixels where the models' "
             "predictions differ; typical: the median such slice.")
    return DatasetFigures([Figure(made[0], "overlays", figure_caption("overlays", dataset, extra))], lacking)


def write_figures(inputs: ReportInputs, agg: pd.DataFrame, out: Path,
                  runtime: str = EAGER) -> dict[str, DatasetFigures]:
    """Every figure of every dataset (PDF and PNG), by dataset: of the models as trained."""
    figures = {}
    results = primary_rows(inputs.results)  # not the int8 scores (the deployment table's gate)
    for dataset in inputs.datasets:
        part = agg[agg["dataset"] == dataset]
        if part.empty:
            figures[dataset] = DatasetFigures()
            continue
        made = _pareto(inputs, part, dataset, out, runtime)
        for kind, paths in (
            ("levels", write_level_curves(part, out)),
            ("widths", write_width_curves(part, inputs.widths(), out)),
            ("prune", write_prune_curves(part, out)),
            ("cases", write_case_plots(results[results["dataset"] == dataset], part, out)),
        ):
            made += [Figure(p, kind, figure_caption(kind, dataset)) for p in paths]
        overlays = _overlays(inputs, dataset, out)
        figures[dataset] = DatasetFigures(made + overlays.figures, overlays.lacking)
    return figures


#: the caption of each sweep figure
SWEEP_CAPTIONS = {
    "sweep_front": "every complete trial by its objectives; the front's trials ringed, dominated and "
    "infeasible ones grey, one colour per family.",
    "sweep_history": "each objective by trial number, and the hypervolume (or best value) so far.",
    "sweep_importance": "fANOVA importance of each searched parameter for each objective.",
}


def write_sweep(sweep: SweepData, out: Path) -> tuple[SweepSection, list[Path]]:
    """One sweep's tables and figures under ``out/sweep_<name>``, and its section."""
    folder = f"sweep_{sweep.name}"
    written = write_sweep_outputs(out / folder, sweep.trials, sweep.hypervolume, sweep.importances,
                                  sweep.objectives, f"sweep: {sweep.name}")
    done = int((sweep.trials["state"] == "complete").sum()) if not sweep.trials.empty else 0
    goals = ", ".join(f"{d} {n}" for n, d in sweep.objectives)
    summary = (f"{done} complete trials of {sweep.name} ({sweep.description or 'no description'}); "
               f"objectives: {goals}"
               + (f"; constraints: {', '.join(sweep.constraints)}" if sweep.constraints else "") + ".")
    figures = [(f"{folder}/{p.name}", f"Sweep {sweep.name}: {SWEEP_CAPTIONS[p.stem]}")
               for p in written["figures"] if p.suffix == ".pdf"]
    section = SweepSection(sweep.name, summary, front_table(sweep.trials, sweep.objectives), figures)
    return section, written["tables"] + written["figures"]


def build_outputs(
    inputs: ReportInputs, out_dir: str | Path, pdf: bool = True, report_name: str = "report.pdf",
    runtime: str | None = None,
) -> dict[str, list[Path]]:
    """Write results.csv/.parquet, efficiency.csv, items.csv, table.{csv,md,tex},
    stats_<metric>.{md,tex}, deployment.{csv,md,tex} (a run with more than one runtime or
    quantization), the figures (``.pdf`` and ``.png``), each sweep's outputs and the
    report (``report_name`` and its ``.typ`` source) into ``out_dir``; return the paths by kind
    (``results``, ``tables``, ``figures``, ``sweeps`` where there are any, ``report``).
    ``runtime``: the runtime of the Pareto plots' latency (default and check:
    :func:`reports.pareto.pareto_runtime`); a run that measured a share of peak in a runtime other
    than PyTorch eager also gets ``peak_<dataset>`` figures in its deployment section."""
    from .sections import document

    runtime = pareto_runtime(inputs.efficiency, runtime)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {"results": write_tidy(inputs, out)}
    agg = aggregate(inputs.results, inputs.efficiency, inputs.items, reference=inputs.reference_label,
                    seed=inputs.seed)
    captions = {d: table_caption(agg, d, inputs.items, inputs.efficiency) for d in inputs.datasets}
    stats_captions = {m: {d: stats_caption(agg, d, m, inputs.seed) for d in inputs.datasets}
                      for m in metrics(agg)}
    written["tables"] = write_tables(agg, out, captions, stats_captions)
    deployment: list[Display] = []
    if deploys(inputs.efficiency):  # more than PyTorch eager unquantized: the deployment table
        frame = deployment_frame(inputs.efficiency, inputs.results)
        deployment = deployment_display(frame, {d: deployment_caption(inputs.items, d, gated(frame, d))
                                                for d in dict.fromkeys(frame["dataset"])})
        written["tables"] += write_deployment(frame, deployment, out)
    figures = write_figures(inputs, agg, out, runtime)
    peak = [Figure(path, "peak", peak_caption(inputs.items, inputs.efficiency, dataset))
            for dataset, path in write_peak_figures(inputs.efficiency, out).items()]
    written["figures"] = [f.path for d in figures.values() for f in d.figures] + [f.path for f in peak]
    written["figures"] += [p.with_suffix(".png") for p in written["figures"]]
    sweeps = [write_sweep(s, out) for s in inputs.sweeps]
    if sweeps:
        written["sweeps"] = [p for _, paths in sweeps for p in paths]
    if pdf:
        made = Written(inputs, agg, captions, stats_captions, figures, [s for s, _ in sweeps], deployment,
                       peak)
        source = document(made)
        written["report"] = [compile_pdf(source, out / report_name, out),
                             out / Path(report_name).with_suffix(".typ")]
    return written


__all__ = ["build_outputs", "write_figures", "write_tidy"]
