"""The paper-style report, one function per section: summary, setup (hardware and software;
data, preprocessing and splits; training budget and compute; a plan's tuning; metric
conventions), results per dataset (tables, the seed paper's reported figures, figures),
deployment (each model in each runtime and quantization, where a run measured more than one),
sweeps, failed items, and the appendices (statistics per region, reproducibility). Each takes the
:class:`reports.build.Written` outputs (the :class:`reports.inputs.ReportInputs`, the aggregate,
captions and figures) and adds to one :class:`reports.document.Doc`.
"""

from __future__ import annotations

import datetime

import pandas as pd

from . import reported
from .aggregate import model_rows, series
from .build import Written
from .captions import conventions
from .document import Doc
from .inputs import ReportInputs
from .summary import summarize
from .tables import Display, metric_name, number_cell, results_display, row_name, stats_display
from .text import format_number

#: the fields of a hardware/software record shown in the setup section, in order
ENVIRONMENT_FIELDS = ("device_type", "device_name", "device_memory_mb", "compute_capability", "cpu",
                      "threads", "driver", "cuda", "cudnn", "torch", "python", "os", "lfubench")


def summary_section(doc: Doc, made: Written) -> None:
    doc.heading("Summary")
    paragraphs = summarize(made.aggregate, made.inputs.failures)
    for p in paragraphs or ["No item of the run has completed; there are no results to report."]:
        doc.para(p)


def hardware_section(doc: Doc, inputs: ReportInputs) -> None:
    """The distinct hardware/software records and how many items each."""
    doc.heading("Hardware and software", 2)
    environments = inputs.environments
    if not len(environments):
        doc.para("No hardware and software record was stored with the items.")
        return
    env = environments.drop(columns=["item"]).astype(object).fillna("n/a").astype(str)
    shown = [c for c in ENVIRONMENT_FIELDS if c in env]
    groups = env.groupby(shown, sort=False, dropna=False).size().reset_index(name="items")
    for k, (_, g) in enumerate(groups.iterrows()):
        doc.para(f"Record {k + 1} ({g['items']} item{'s' if g['items'] != 1 else ''}): "
                 + "; ".join(f"{c.replace('_', ' ')} {g[c]}" for c in shown) + ".")


def data_section(doc: Doc, inputs: ReportInputs) -> None:
    """Each dataset of the plans: real or synthetic, its settings, its splits."""
    doc.heading("Data, preprocessing and splits", 2)
    lines = []
    for run in inputs.runs:
        for d in run.datasets:
            settings = ", ".join(f"{k} {v}" for k, v in d.settings.items() if k != "name")
            sp = inputs.splits.get(d.name, {})
            split_text = ""
            if sp:
                split_text = "; splits: " + ", ".join(f"{k} {len(v)} cases" for k, v in sp.items())
                if sp.get("test"):
                    split_text += "; test cases: " + ", ".join(map(str, sp["test"]))
            what = "synthetic phantoms" if d.phantom else "real data"
            lines.append(f"{d.name} ({what}): {settings}{split_text}.")
    doc.bullets(lines or [f"{d}: no plan recorded (report made from a storage)" for d in inputs.datasets])


def _spent(items: pd.DataFrame) -> str:
    """The compute the items spent, as a sentence."""
    spent = [f"{len(items)} items", f"training {format_number(float(items['train_seconds'].sum()))} s in all"]
    if "item_seconds" in items and items["item_seconds"].notna().any():
        spent.append("whole items (training, evaluation, measurement) "
                     f"{format_number(float(items['item_seconds'].sum()))} s")
    if "prune_seconds" in items and items["prune_seconds"].notna().any():
        spent.append(f"pruning {format_number(float(items['prune_seconds'].sum()))} s")
    epochs = items["epochs"].dropna()
    if len(epochs):
        spent.append(f"epochs run per item {format_number(int(epochs.min()))}"
                     + (f" to {format_number(int(epochs.max()))}" if epochs.max() != epochs.min() else ""))
    return "Compute spent: " + "; ".join(spent) + "."


def budget_section(doc: Doc, inputs: ReportInputs) -> None:
    """The training and measurement settings of each run, and the compute spent."""
    doc.heading("Training budget and compute spent", 2)
    for run in inputs.runs:
        if run.train:
            settings = ", ".join(f"{k} {v}" for k, v in run.train.items())
            doc.para(f"{run.source}: training settings: {settings}.")
        if run.measure:
            doc.para("Measurement settings: " + ", ".join(f"{k} {v}" for k, v in run.measure.items()) + ".")
    if len(inputs.items):
        doc.para(_spent(inputs.items))


#: the chosen-value columns of a tuning table: (items column, header, format)
TUNED_SHOWN = (("tuned_lr", "lr", "g"), ("tuned_batch_size", "batch size", "d"),
               ("tuned_weight_decay", "weight decay", "g"))


def _chosen_cell(part: pd.DataFrame, column: str, fmt: str) -> str:
    """The value one model's items chose: one value, or each with the seeds that chose it."""
    chosen = part[["seed", column]].dropna()
    if not len(chosen):
        return "-"
    by_value: dict[str, list[str]] = {}
    for seed, value in chosen.itertuples(index=False):
        text = format(int(value) if fmt == "d" else float(value), fmt)
        by_value.setdefault(text, []).append(f"s{int(seed)}" if pd.notna(seed) else "s?")
    if len(by_value) == 1:
        return next(iter(by_value))
    return ", ".join(f"{v} ({' '.join(seeds)})" for v, seeds in by_value.items())


def tuning_section(doc: Doc, inputs: ReportInputs) -> None:
    """A plan's ``[tune]`` search: the search stated (the sentence stored with the items) and the
    values each model chose, with the compute the search spent; nothing without tuned items."""
    items = inputs.items
    if "tune_protocol" not in items or not items["tune_protocol"].notna().any():
        return
    doc.heading("Tuning", 2)
    tuned = items[items["tune_protocol"].notna()]
    for line in dict.fromkeys(tuned["tune_protocol"]):
        doc.para(line[0].upper() + line[1:] + ("" if line.endswith(".") else "."))
    shown = [c for c in TUNED_SHOWN if c[0] in tuned and tuned[c[0]].notna().any()]
    rows = []
    for (dataset, label), part in tuned.groupby(["dataset", "label"], sort=False):
        rows.append([str(dataset), str(label), *(_chosen_cell(part, c, f) for c, _, f in shown),
                     number_cell(float(part["best_val_dice"].mean())),
                     number_cell(int(part["tune_trials"].sum())), number_cell(int(part["tune_steps"].sum())),
                     number_cell(float(part["tune_seconds"].sum()))])
    cols = ["Dataset", "Model", *(h for _, h, _ in shown), "Val Dice", "Trials", "Tuning steps", "Tuning s"]
    doc.table(Display("tuning", cols, rows, numeric=[False, False] + [True] * (len(cols) - 2)),
              caption="The values each model's tuning chose on validation Dice (per seed where seeds chose "
              "differently), in place of the training settings' values; the delivered model's best "
              "validation Dice (mean over seeds); and what the search spent (trials, steps and seconds "
              "summed over the model's items, the kept winning trials included).")
    doc.para(f"Tuning spent {number_cell(int(tuned['tune_steps'].sum()))} steps and "
             f"{number_cell(float(tuned['tune_seconds'].sum()))} s in all over {len(tuned)} item"
             f"{'s' if len(tuned) != 1 else ''}; each trial's values, validation Dice, steps and seconds are "
             "in the item's record (tuning).")


def conventions_section(doc: Doc, inputs: ReportInputs) -> None:
    """The conventions shared by every dataset, then each dataset's own."""
    doc.heading("Metric conventions", 2)
    items, datasets = inputs.items, inputs.datasets
    common = [line for line in conventions(items) if all(line in conventions(items, d) for d in datasets)]
    doc.bullets(
        common + [f"{d}: {line}" for d in datasets for line in conventions(items, d) if line not in common]
        or ["No conventions were stored with the items."]
    )


def setup_section(doc: Doc, made: Written) -> None:
    doc.heading("Setup")
    for section in (hardware_section, data_section, budget_section, tuning_section, conventions_section):
        section(doc, made.inputs)


def reported_table(doc: Doc, agg: pd.DataFrame, dataset: str, kind: str) -> None:
    """The seed paper's reported figures beside the measured ones of the same family."""
    part = agg[agg["dataset"] == dataset]
    figs = reported.REPORTED[kind]
    pairs = [p for p in figs if series(part, *p).notna().any()]
    if not pairs:
        return
    rows = model_rows(part)
    cols = ["Source", "Model"] + [f"{metric_name(m)} {r}" for m, r in pairs]
    cells = [["reported", "LFU-Net (paper)"] + [number_cell(figs[p]) for p in pairs]]
    stats = {p: [series(part, *p, s) for s in ("mean", "ci_lo", "ci_hi")] for p in pairs}
    for k in rows.index[rows["family"] == reported.FAMILY]:
        measured = [f"{number_cell(mean[k])} [{number_cell(lo[k])}, {number_cell(hi[k])}]"
                    for mean, lo, hi in stats.values()]
        cells.append(["measured", row_name(rows.loc[k]), *measured])
    doc.table(
        Display(dataset, cols, cells, numeric=[False, False] + [True] * len(pairs)),
        caption=f"{dataset}: figures reported by {reported.SOURCE} (not measured here) beside the measured "
        "ones of the same family (mean [95% bootstrap interval] over test cases).",
    )


def _lacking(dataset: str, lacking: dict[str, str]) -> str:
    listed = "; ".join(f"{i} ({why})" for i, why in lacking.items())
    return (f"{dataset}: the overlay figure lacks {len(lacking)} item{'s' if len(lacking) != 1 else ''} "
            f"whose overlays file could not be read: {listed}.")


def dataset_results(doc: Doc, made: Written, dataset: str) -> None:
    """One dataset's results table, reported figures (real data) and figures."""
    kinds = {d.name: d.kind for run in made.inputs.runs for d in run.datasets}
    heading = (dataset + (" (real data)" if kinds.get(dataset) in reported.REPORTED else ""), 2)
    for disp in results_display(made.aggregate[made.aggregate["dataset"] == dataset], made.captions):
        doc.table(disp, heading=heading)
        heading = None
    if heading:
        doc.heading(*heading)
    if kinds.get(dataset) in reported.REPORTED:
        reported_table(doc, made.aggregate, dataset, kinds[dataset])
    figures = made.figures.get(dataset)
    for fig in figures.figures if figures else []:
        doc.figure(fig.path.name, fig.caption, width=fig.width)
    if figures and figures.lacking:
        doc.para(_lacking(dataset, figures.lacking))


def results_section(doc: Doc, made: Written) -> None:
    doc.heading("Results")
    for dataset in made.inputs.datasets:
        dataset_results(doc, made, dataset)
    if not made.inputs.datasets:
        doc.para("No results.")


def deployment_section(doc: Doc, made: Written) -> None:
    """Each model in each runtime and quantization measured (a run with more than one)."""
    if not made.deployment:
        return
    doc.heading("Deployment")
    for disp in made.deployment:
        doc.table(disp, size=7)
    for fig in made.deployment_figures:  # the share of the device's peak per model and runtime
        doc.figure(fig.path.name, fig.caption, width=fig.width)


def sweeps_section(doc: Doc, made: Written) -> None:
    """Each sweep's front (as a table) and its figures."""
    if not made.sweeps:
        return
    doc.heading("Sweeps")
    for sw in made.sweeps:
        doc.heading(sw.name, 2)
        doc.para(sw.summary)
        if len(sw.front):
            cols = [str(c) for c in sw.front.columns]
            rows = [[format_number(None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for v in r]
                    for r in sw.front.itertuples(index=False)]
            numeric = [pd.api.types.is_numeric_dtype(sw.front[c]) for c in sw.front.columns]
            doc.table(Display(sw.name, cols, rows, numeric=numeric),
                      caption=f"Sweep {sw.name}: the trials on the Pareto front, best first by the first "
                      "objective; scores are test-case means at each model's own pruning level.")
        else:
            doc.para("No complete feasible trial: the front is empty.")
        for path, caption in sw.figures:
            doc.figure(path, caption)


def failures_section(doc: Doc, made: Written) -> None:
    doc.heading("Failed items")
    failures = made.inputs.failures
    if not len(failures):
        doc.para("Every item of the run completed.")
        return
    rows = [[str(r[c]) for c in ("item", "state", "attempts", "reason")] for _, r in failures.iterrows()]
    doc.table(
        Display("", ["Item", "State", "Attempts", "Reason"], rows, numeric=[False, False, True, False]),
        caption="Items without a result and the reason recorded for their latest failure.",
        columns="(auto, auto, auto, 1fr)",
    )


def statistics_appendix(doc: Doc, made: Written) -> None:
    doc.heading("Appendix: statistics per region")
    for metric, caps in made.stats_captions.items():
        for disp in stats_display(made.aggregate, metric, caps):
            doc.table(disp, size=6.5)


def _commits(environments: pd.DataFrame) -> dict[str, int]:
    """Items per git commit of the runs (marked where the tree had uncommitted changes)."""
    commits: dict[str, int] = {}
    if "git_commit" in environments:
        for _, r in environments.iterrows():
            key = f"{r['git_commit']}" + (" (with uncommitted changes)" if r.get("git_dirty") is True else "")
            commits[key] = commits.get(key, 0) + 1
    return commits


def reproducibility_appendix(doc: Doc, made: Written) -> None:
    """Commits and versions of the runs and of this report's environment, seeds, the plans."""
    inputs = made.inputs
    doc.heading("Appendix: reproducibility")
    commits = _commits(inputs.environments)
    listed = "; ".join(f"{c} ({n} items)" for c, n in commits.items())
    doc.para(f"Git commit of the runs: {listed or 'not recorded'}.")
    env = inputs.environments
    run_versions = {c: ", ".join(dict.fromkeys(env[c].astype(str)))
                    for c in ("python", "torch", "cuda", "cudnn", "lfubench") if len(env) and c in env}
    if run_versions:
        doc.para("Versions of the runs: " + "; ".join(f"{k} {v}" for k, v in run_versions.items()) + ".")
    if inputs.versions:
        doc.para("Versions of the environment that made this report: "
                 + "; ".join(f"{k} {v}" for k, v in inputs.versions.items()) + ".")
    seeds = sorted({int(s) for s in inputs.items["seed"].dropna()}) if len(inputs.items) else []
    doc.para(f"Seeds of the items: {', '.join(map(str, seeds)) or 'none'}; bootstrap seed {inputs.seed}.")
    for run in inputs.runs:
        if run.plan_text:
            doc.heading(f"Effective plan: {run.source}", 2)
            doc.code(run.plan_text)


#: the report's sections, in order
SECTIONS = (summary_section, setup_section, results_section, deployment_section, sweeps_section,
            failures_section, statistics_appendix, reproducibility_appendix)


def document(made: Written) -> str:
    """The report's Typst source."""
    doc = Doc()
    for section in SECTIONS:
        section(doc, made)
    sources = ", ".join(run.source for run in made.inputs.runs) or "a run"
    subtitle = f"made by lfubench on {datetime.date.today().isoformat()} from {sources}"
    return doc.source(made.inputs.title, subtitle)
