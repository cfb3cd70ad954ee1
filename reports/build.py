"""Everything a finished (or partly finished) run yields, written into one output folder: the
tidy tables, the aggregated tables with their statistics (CSV, Markdown, LaTeX), the figures
(PDF and PNG) and the paper-style report (``report.pdf`` and its Typst source).

Input: the DataFrames of :mod:`reports.schema` (results, efficiency, items) and plain records
of the run (failed items, hardware/software records, the runs' effective plans, splits,
package versions). The conventions stated with every table and figure are the ones stored
with the items (the sentences of :mod:`bench.conventions` that the run used), never written
here.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from . import reported
from .document import Doc, compile_pdf
from .figures import write_case_plots, write_level_curves, write_prune_curves, write_width_curves
from .overlays import write_overlay_figure
from .pareto import COSTS, write_pareto_plots
from .plotting import file_name
from .schema import CONVENTION_COLUMNS, EFFICIENCY_COLUMNS, ITEM_COLUMNS, KEY_COLUMNS, require
from .stats import ALPHA, CONFIDENCE, RESAMPLES
from .summary import summarize
from .tables import (
    aggregate,
    mean_score,
    metric_regions_of,
    primary_config,
    results_display,
    row_label,
    stats_display,
    to_latex,
    to_markdown,
    write_tables,
)
from .text import format_number

log = logging.getLogger(__name__)


def conventions(items: pd.DataFrame, dataset: str | None = None) -> list[str]:
    """The distinct convention sentences the items (of ``dataset``, if given) were produced
    under, one line per kind; a kind that differed between items lists each variant."""
    sel = items if dataset is None else items[items["dataset"] == dataset]
    lines = [
        v for column in CONVENTION_COLUMNS if column in sel for v in dict.fromkeys(sel[column].dropna()) if v
    ]
    return [line[0].upper() + line[1:] + ("" if line.endswith(".") else ".") for line in lines]


def _table_caption(
    table: pd.DataFrame, dataset: str, items: pd.DataFrame, efficiency: pd.DataFrame, ref: str
) -> str:
    part = table[table["dataset"] == dataset]
    seeds = int(part["seeds"].max()) if len(part) else 1
    cfg = primary_config(efficiency[efficiency["dataset"] == dataset]) if len(efficiency) else None
    text = [
        f"{dataset}: mean ± sd over test cases"
        + (f" (each case averaged over {seeds} seeds)" if seeds > 1 else "")
        + "."
    ]
    if cfg:
        text.append(f"Latency and peak memory on {cfg['device']}, batch {cfg['batch']}, {cfg['precision']}.")
    text.append(
        "Train (s): training time per item, mean over seeds. Bold: the best value of each column. "
        f"*: differs from the reference {ref} (ref.) by a paired Wilcoxon signed-rank test over "
        f"cases, Holm-corrected over the models of each metric and region, p < {ALPHA:g}."
    )
    return " ".join(text + conventions(items, dataset))


def _stats_caption(dataset: str, metric: str, ref: str, seed: int) -> str:
    return (
        f"{dataset}, {metric}: mean over test cases, its {CONFIDENCE:.0%} percentile-bootstrap interval "
        f"({RESAMPLES} resamples of the cases, seed {seed}), sd over cases and over seeds, n cases with a "
        "value; Dice 0: values of exactly 0 (region missed, predicted where the reference has none, or "
        "no overlap) and NaN: values left undefined by the empty-mask rule, both counted over cases x "
        f"seeds and never averaged away; p: paired Wilcoxon signed-rank test against {ref} (ref.) over "
        f"cases; p (Holm): Holm-corrected over the models of each region; *: p (Holm) < {ALPHA:g}."
    )


def _ref_name(table: pd.DataFrame, dataset: str) -> str:
    ref = table[(table["dataset"] == dataset) & table["reference"]]
    if ref.empty:
        return "none"
    r = ref.iloc[0]
    return row_label(r["label"], r["stage"]) + (f" L{int(r['level'])}" if r["level"] > 0 else "")


def _kinds(runs: Sequence[Mapping]) -> dict[str, str]:
    return {d["name"]: d.get("kind", "") for run in runs for d in (run.get("plan") or {}).get("datasets", [])}


def _widths(runs: Sequence[Mapping]) -> dict[str, float]:
    return {
        m["label"]: m["base_width"]
        for run in runs
        for m in (run.get("plan") or {}).get("models", [])
        if "base_width" in m and "label" in m
    }


def _overlay_models(items: pd.DataFrame, dataset: str) -> list[tuple[str, str]]:
    if "overlays" not in items:
        return []
    sel = items[(items["dataset"] == dataset) & items["overlays"].notna()]
    sel = sel[sel["seed"] == sel["seed"].min()] if len(sel) else sel
    return [(str(r["label"]), str(r["overlays"])) for _, r in sel.iterrows()]


def build_outputs(
    out_dir: str | Path,
    results: pd.DataFrame,
    efficiency: pd.DataFrame,
    items: pd.DataFrame,
    title: str,
    pdf: bool = True,
    *,
    failures: pd.DataFrame | None = None,
    environments: pd.DataFrame | None = None,
    runs: Sequence[Mapping] = (),
    splits: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    versions: Mapping[str, str] | None = None,
    reference: str | None = None,
    seed: int = 0,
    report_name: str = "report.pdf",
    sweeps: Sequence[Mapping] = (),
) -> dict[str, list[Path]]:
    """Write results.csv/.parquet, efficiency.csv, items.csv, table.{csv,md,tex},
    stats_<metric>.{md,tex}, the figures (``.pdf`` and ``.png``) and the report into ``out_dir``.

    Args:
        failures: items without a result: ``item``, ``state``, ``attempts``, ``reason``.
        environments: one hardware/software record per item (``item`` and its fields).
        runs: per run folder or storage: ``source``, ``plan`` (the effective plan as a dict, if
            known) and ``plan_text`` (its file).
        splits: per dataset, the case ids of ``train``, ``val`` and ``test``.
        versions: package versions of the environment making the report.
        reference: the label the Wilcoxon tests compare against (default: each dataset's first).
        seed: the bootstrap's seed.
        sweeps: per sweep study: ``name``, ``summary`` (a sentence), ``front`` (its Pareto-front
            table, :func:`reports.sweeps.front_table`) and ``figures`` ((path relative to
            ``out_dir``, caption) pairs), shown in a section of their own.
    Every value in the items' ``overlays`` column must be a readable path (callers resolve it).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    require(results, KEY_COLUMNS + ["case", "region", "metric", "value"], "the results table")
    require(efficiency, [c for c in EFFICIENCY_COLUMNS if c != "stage"], "the efficiency table")
    require(items, [c for c in ITEM_COLUMNS[:11]], "the items table")
    if reference is not None and len(results) and reference not in set(results["label"]):
        from .schema import ReportInputError

        raise ReportInputError(
            f"reference {reference!r} is not a model of the run; its models: "
            f"{', '.join(dict.fromkeys(results['label'].astype(str)))}"
        )
    written: dict[str, list[Path]] = {}
    results.to_csv(out / "results.csv", index=False)
    results.to_parquet(out / "results.parquet", index=False)
    efficiency.to_csv(out / "efficiency.csv", index=False)
    items.to_csv(out / "items.csv", index=False)
    written["results"] = [out / n for n in ("results.csv", "results.parquet", "efficiency.csv", "items.csv")]
    table = aggregate(results, efficiency, items, reference=reference, seed=seed)
    datasets = list(dict.fromkeys(results["dataset"]))
    refs = {d: _ref_name(table, d) for d in datasets}
    captions = {d: _table_caption(table, d, items, efficiency, refs[d]) for d in datasets}
    metrics = list(dict.fromkeys(m for m, _ in metric_regions_of(table))) if len(table) else []
    stats_captions = {m: {d: _stats_caption(d, m, refs[d], seed) for d in datasets} for m in metrics}
    written["tables"] = write_tables(table, out, captions, stats_captions)

    figures: dict[str, dict[str, list[Path]]] = {d: {} for d in datasets}
    if len(table):
        points = table.assign(
            dice=mean_score(table),
            tag=[
                row_label(r["label"], r["stage"]) + (f" L{int(r['level'])}" if r["level"] > 0 else "")
                for _, r in table.iterrows()
            ],
        )
        notes = {
            d: " ".join(line for line in conventions(items, d) if line.startswith(("GMACs", "Latency")))
            for d in datasets
        }
        for d in datasets:
            one, pts = table[table["dataset"] == d], points[points["dataset"] == d]
            made = {
                "pareto": write_pareto_plots(
                    pts, out, notes=notes, ylabel="mean Dice (test cases, all regions)"
                ),
                "levels": write_level_curves(one, out),
                "widths": write_width_curves(one, _widths(runs), out),
                "prune": write_prune_curves(one, out),
                "cases": write_case_plots(results[results["dataset"] == d], one, out),
            }
            figures[d] = {k: v for k, v in made.items() if v}
            models = _overlay_models(items, d)
            shown = (
                write_overlay_figure(models, out / f"overlays_{file_name(d)}", f"{d}: test slices")
                if models
                else None
            )
            if shown:
                figures[d]["overlays"] = [shown[0]]
                figures[d]["overlays_shown"] = shown[1]
    written["figures"] = [
        p for d in figures.values() for k, v in d.items() if k != "overlays_shown" for p in v
    ]
    written["figures"] += [p.with_suffix(".png") for p in written["figures"]]
    if pdf:
        source = _document(
            title,
            table,
            results,
            efficiency,
            items,
            figures,
            captions,
            stats_captions,
            failures,
            environments,
            runs,
            splits or {},
            versions or {},
            seed,
            sweeps,
        )
        written["report"] = [
            compile_pdf(source, out / report_name, out),
            out / Path(report_name).with_suffix(".typ"),
        ]
    return written


def _sweep_section(doc: Doc, sweeps: Sequence[Mapping]) -> None:
    """Each sweep's front (as a table) and its figures."""
    from .tables import Display

    doc.heading("Sweeps")
    for sw in sweeps:
        doc.heading(str(sw["name"]), 2)
        doc.para(str(sw["summary"]))
        front = sw["front"]
        if len(front):
            cols = [str(c) for c in front.columns]
            rows = [[format_number(None if pd.isna(v) else v.item() if hasattr(v, "item") else v)
                     for v in r] for r in front.itertuples(index=False)]
            numeric = [pd.api.types.is_numeric_dtype(front[c]) for c in front.columns]
            doc.table(Display(str(sw["name"]), cols, rows, numeric=numeric),
                      caption=f"Sweep {sw['name']}: the trials on the Pareto front, best first by the first "
                      "objective; scores are test-case means at each model's own pruning level.")
        else:
            doc.para("No complete feasible trial: the front is empty.")
        for path, caption in sw["figures"]:
            doc.figure(path, caption)


#: the width of each kind of figure on the page
FIGURE_WIDTHS = {
    "pareto": "85%",
    "levels": "100%",
    "widths": "62%",
    "prune": "62%",
    "cases": "100%",
    "overlays": "100%",
}


# -- the document ---------------------------------------------------------------------------------


def _figure_caption(kind: str, dataset: str, extra: str = "") -> str:
    return {
        "pareto": f"{dataset}: mean Dice over regions against cost; dashed: the Pareto front (ringed "
        "points: no other model is as cheap or cheaper and more accurate). ",
        "levels": f"{dataset}: Dice per region (error bars: 95% bootstrap intervals over cases) and GMACs "
        "per pruning level, for each model evaluated at several levels. ",
        "widths": f"{dataset}: mean Dice against base width per family (highest level of each model). ",
        "prune": f"{dataset}: mean Dice against the fraction of channels pruned per family "
        "(0: before pruning). ",
        "cases": f"{dataset}: Dice of each test case (points, averaged over seeds) and their box (median, "
        "quartiles, whiskers to 1.5 IQR), each model at its highest level. ",
        "overlays": f"{dataset}: test slices with image, ground truth and each model's prediction. ",
    }[kind] + extra


def _document(
    title,
    table,
    results,
    efficiency,
    items,
    figures,
    captions,
    stats_captions,
    failures,
    environments,
    runs,
    splits,
    versions,
    seed,
    sweeps=(),
) -> str:
    doc = Doc()
    datasets = list(dict.fromkeys(results["dataset"]))
    kinds = _kinds(runs)
    sources = [str(r.get("source", "")) for r in runs]
    doc.heading("Summary")
    paragraphs = summarize(table, failures)
    if not paragraphs:
        paragraphs = ["No item of the run has completed; there are no results to report."]
    for p in paragraphs:
        doc.para(p)

    doc.heading("Setup")
    doc.heading("Hardware and software", 2)
    if environments is not None and len(environments):
        env = environments.drop(columns=["item"]).astype(object).fillna("n/a").astype(str)
        shown = [
            c
            for c in (
                "device_type",
                "device_name",
                "device_memory_mb",
                "compute_capability",
                "cpu",
                "threads",
                "driver",
                "cuda",
                "cudnn",
                "torch",
                "python",
                "os",
                "lfubench",
            )
            if c in env
        ]
        groups = env.groupby(shown, sort=False, dropna=False).size().reset_index(name="items")
        for k, (_, g) in enumerate(groups.iterrows()):
            doc.para(
                f"Record {k + 1} ({g['items']} item{'s' if g['items'] != 1 else ''}): "
                + "; ".join(f"{c.replace('_', ' ')} {g[c]}" for c in shown)
                + "."
            )
    else:
        doc.para("No hardware and software record was stored with the items.")
    doc.heading("Data, preprocessing and splits", 2)
    lines = []
    for run in runs:
        for d in (run.get("plan") or {}).get("datasets", []):
            real = d.get("kind") in reported.REPORTED
            what = (
                "real data"
                if real
                else "synthetic phantoms"
                if str(d.get("kind", "")).startswith("phantom")
                else "data"
            )
            settings = ", ".join(f"{k} {v}" for k, v in d.items() if k not in ("name",))
            sp = splits.get(d["name"], {})
            split_text = (
                (
                    "; splits: "
                    + ", ".join(f"{k} {len(v)} cases" for k, v in sp.items())
                    + ("; test cases: " + ", ".join(map(str, sp.get("test", []))) if sp.get("test") else "")
                )
                if sp
                else ""
            )
            lines.append(f"{d['name']} ({what}): {settings}{split_text}.")
    doc.bullets(lines or [f"{d}: no plan recorded (report made from a storage)" for d in datasets])
    doc.heading("Training budget and compute spent", 2)
    for run in runs:
        train = (run.get("plan") or {}).get("train")
        if train:
            doc.para(
                f"{run.get('source', '')}: training settings: "
                + ", ".join(f"{k} {v}" for k, v in train.items())
                + "."
            )
        measure = (run.get("plan") or {}).get("measure")
        if measure:
            doc.para("Measurement settings: " + ", ".join(f"{k} {v}" for k, v in measure.items()) + ".")
    if len(items):
        spent = [
            f"{len(items)} items",
            f"training {format_number(float(items['train_seconds'].sum()))} s in all",
        ]
        if "item_seconds" in items and items["item_seconds"].notna().any():
            spent.append(
                f"whole items (training, evaluation, measurement) "
                f"{format_number(float(items['item_seconds'].sum()))} s"
            )
        if "prune_seconds" in items and items["prune_seconds"].notna().any():
            spent.append(f"pruning {format_number(float(items['prune_seconds'].sum()))} s")
        epochs = items["epochs"].dropna()
        if len(epochs):
            spent.append(
                f"epochs run per item {format_number(int(epochs.min()))}"
                + (f" to {format_number(int(epochs.max()))}" if epochs.max() != epochs.min() else "")
            )
        doc.para("Compute spent: " + "; ".join(spent) + ".")
    doc.heading("Metric conventions", 2)
    common = [line for line in conventions(items) if all(line in conventions(items, d) for d in datasets)]
    doc.bullets(
        common + [f"{d}: {line}" for d in datasets for line in conventions(items, d) if line not in common]
        or ["No conventions were stored with the items."]
    )

    doc.heading("Results")
    for d in datasets:
        heading = (f"{d}" + (" (real data)" if kinds.get(d) in reported.REPORTED else ""), 2)
        for disp in results_display(table[table["dataset"] == d], captions):
            doc.table(disp, heading=heading)
            heading = None
        if heading:
            doc.heading(*heading)
        if kinds.get(d) in reported.REPORTED:
            _reported_table(doc, table, d, kinds[d])
        figs = figures.get(d, {})
        notes = " ".join(line for line in conventions(items, d) if line.startswith(("GMACs", "Latency")))
        for kind in ("pareto", "levels", "widths", "prune", "cases", "overlays"):
            for path in figs.get(kind, []):
                extra = ""
                if kind == "pareto":
                    cost = next(c for c in COSTS if path.stem.endswith(f"_{c}"))
                    extra = f"Cost: {COSTS.get(cost, cost)} (log axis). {notes}"
                if kind == "overlays":
                    shown = figs.get("overlays_shown", {})
                    extra = (
                        "Rows: "
                        + "; ".join(f"{what}: case {c}, slice {s}" for what, (c, s) in shown.items())
                        + ". Largest disagreement: the slice with the most pixels where the models' "
                        "predictions differ; typical: the median such slice."
                    )
                doc.figure(path.name, _figure_caption(kind, d, extra), width=FIGURE_WIDTHS[kind])
    if not datasets:
        doc.para("No results.")
    if sweeps:
        _sweep_section(doc, sweeps)

    doc.heading("Failed items")
    if failures is not None and len(failures):
        from .tables import Display

        rows = [
            [str(r["item"]), str(r["state"]), str(r["attempts"]), str(r["reason"])]
            for _, r in failures.iterrows()
        ]
        doc.table(
            Display("", ["Item", "State", "Attempts", "Reason"], rows, numeric=[False, False, True, False]),
            caption="Items without a result and the reason recorded for their latest failure.",
            columns="(auto, auto, auto, 1fr)",
        )
    else:
        doc.para("Every item of the run completed.")

    doc.heading("Appendix: statistics per region")
    for metric, caps in stats_captions.items():
        for disp in stats_display(table, metric, caps):
            doc.table(disp, size=6.5)

    doc.heading("Appendix: reproducibility")
    commits = {}
    if environments is not None and "git_commit" in getattr(environments, "columns", []):
        for _, r in environments.iterrows():
            dirty = r.get("git_dirty")
            commits.setdefault(
                f"{r['git_commit']}" + (" (with uncommitted changes)" if dirty is True else ""), 0
            )
            commits[f"{r['git_commit']}" + (" (with uncommitted changes)" if dirty is True else "")] += 1
    doc.para(
        "Git commit of the runs: "
        + ("; ".join(f"{c} ({n} items)" for c, n in commits.items()) if commits else "not recorded")
        + "."
    )
    run_versions = {}
    if environments is not None and len(environments):
        for c in ("python", "torch", "cuda", "cudnn", "lfubench"):
            if c in environments:
                run_versions[c] = ", ".join(dict.fromkeys(environments[c].astype(str)))
    if run_versions:
        doc.para("Versions of the runs: " + "; ".join(f"{k} {v}" for k, v in run_versions.items()) + ".")
    if versions:
        doc.para(
            "Versions of the environment that made this report: "
            + "; ".join(f"{k} {v}" for k, v in versions.items())
            + "."
        )
    seeds = sorted({int(s) for s in items["seed"].dropna()}) if len(items) else []
    doc.para(f"Seeds of the items: {', '.join(map(str, seeds)) or 'none'}; bootstrap seed {seed}.")
    for run in runs:
        if run.get("plan_text"):
            doc.heading(f"Effective plan: {run.get('source', '')}", 2)
            doc.code(run["plan_text"])
    date = datetime.date.today().isoformat()
    subtitle = f"made by lfubench on {date} from {', '.join(sources) or 'a run'}"
    return doc.source(title, subtitle)


def _reported_table(doc: Doc, table: pd.DataFrame, dataset: str, kind: str) -> None:
    """The seed paper's reported figures beside the measured ones of the same family."""
    from .tables import Display, _num

    figs = reported.REPORTED[kind]
    pairs = [p for p in figs if f"{p[0]} {p[1]}" in table]
    if not pairs:
        return
    cols = ["Source", "Model"] + [f"{m.upper() if m != 'dice' else 'Dice'} {r}" for m, r in pairs]
    rows = [["reported", "LFU-Net (paper)"] + [_num(figs[p]) for p in pairs]]
    part = table[(table["dataset"] == dataset) & (table["family"] == reported.FAMILY)]
    for _, r in part.iterrows():
        name = row_label(r["label"], r["stage"]) + (f" L{int(r['level'])}" if r["level"] > 0 else "")
        rows.append(
            ["measured", name]
            + [
                f"{_num(r[f'{m} {g}'])} [{_num(r[f'{m} {g} ci_lo'])}, {_num(r[f'{m} {g} ci_hi'])}]"
                for m, g in pairs
            ]
        )
    doc.table(
        Display(dataset, cols, rows, numeric=[False, False] + [True] * len(pairs)),
        caption=f"{dataset}: figures reported by {reported.SOURCE} (not measured here) beside the measured "
        "ones of the same family (mean [95% bootstrap interval] over test cases).",
    )


__all__ = ["build_outputs", "conventions", "to_latex", "to_markdown"]
