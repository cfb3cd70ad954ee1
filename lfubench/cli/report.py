"""``lfubench report RUN_DIR [RUN_DIR ...] | --storage URL --study NAME``: the paper-style report
(tables, statistics, figures, PDF) of one or several runs.

This module gathers what a report needs -- the tidy tables, failed items, hardware/software
records, splits, the effective plans or studies, sweep results, package versions -- from run
folders (:class:`studies.run.Run`) or a storage (through :mod:`studies.records`) into one
:class:`reports.inputs.ReportInputs` for :func:`reports.build.build_outputs`. ``lfubench bench``
ends with the same report through :func:`write_report`.

Each item's overlays file is found in the run folder recorded with the item (``run_dir`` of its
record), else in the run folder named on the command line (or the folder of ``--plan``), else
relative to the working folder; one that cannot be found is left out of the figure and named.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from lfubench.bench.errors import LfubenchError

if TYPE_CHECKING:
    from lfubench.reports.inputs import ReportInputs, RunInfo, SweepData
    from lfubench.studies.plan import Plan
    from lfubench.studies.sweepfile import SweepStudy

log = logging.getLogger(__name__)

#: packages whose versions the reproducibility appendix lists (the report's own environment)
PACKAGES = (
    "lfubench",
    "torch",
    "numpy",
    "scipy",
    "pandas",
    "matplotlib",
    "optuna",
    "fvcore",
    "medpy",
    "nibabel",
    "typst",
    "adjustText",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="the paper-style report (tables, statistics, figures, PDF) of runs",
        description="Write tables (CSV, Markdown, LaTeX), statistics, figures (PDF and PNG) and "
        "report.pdf for one or several run folders (merged), or for a study in a storage.",
    )
    p.add_argument(
        "runs", nargs="*", metavar="RUN_DIR", help="run folders (each with plan.toml and study.db)"
    )
    p.add_argument(
        "--storage",
        help="an Optuna storage URL (sqlite:///FILE, journal:FILE, postgresql://...) "
        "instead of run folders; needs --study",
    )
    p.add_argument("--study", help="the study (plan name) in --storage")
    p.add_argument("--plan", help="with --storage: the run's effective plan.toml (for the setup section)")
    p.add_argument(
        "-o",
        "--output",
        help="the PDF to write; tables and figures go beside it (default: "
        "RUN_DIR/report.pdf for one run folder; required otherwise)",
    )
    p.add_argument(
        "--reference",
        metavar="LABEL",
        help="the model label the significance tests compare against (default: the first model of the plan)",
    )
    p.add_argument("--seed", type=int, default=0, help="the bootstrap's seed (default 0)")
    p.add_argument(
        "--runtime",
        metavar="RUNTIME",
        help="the runtime whose latency the Pareto plots show, one the runs measured unquantized "
        "(default: the first measured other than PyTorch eager, torch; else torch)",
    )
    p.add_argument("--no-pdf", action="store_true", help="tables and figures only")
    p.set_defaults(func=run)


def versions(packages: Sequence[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` (``not installed`` where missing)."""
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


@dataclass
class LoadedRun:
    """One run folder or storage study, read: ``source`` (where from), its ``trials``, ``root``
    (the run folder its items' overlays paths are relative to, for records that do not say;
    None: the working folder), its effective plan or study (``spec``, typed, and ``spec_text``,
    the file) and, for a sweep, its storage URL."""

    source: str
    trials: list
    root: Path | None = None
    spec: Plan | SweepStudy | None = None
    spec_text: str | None = None
    sweep_storage: str | None = None
    item_ids: list[str] = field(default_factory=list)


def _spec_file(path: Path) -> tuple[Plan, str]:
    from lfubench.studies.plan import load_plan

    try:
        text = path.read_text()
    except OSError as err:
        raise LfubenchError(f"{path}: cannot read the plan ({err.strerror})") from None
    return load_plan(path), text


def run_record(
    run_dir: str | Path,
    trials: Sequence,
    source: str | None = None,
    plan_path: str | Path | None = "plan.toml",
) -> LoadedRun:
    """A run whose trials are already loaded (``lfubench bench`` reporting its own run):
    ``plan_path`` (relative to ``run_dir``, or absolute) is its effective plan, when present."""
    run = Path(run_dir)
    loaded = LoadedRun(source or str(run), list(trials), run)
    path = run / plan_path if plan_path else None  # an absolute plan_path stays as it is
    if path is not None and path.is_file():
        loaded.spec, loaded.spec_text = _spec_file(path)
        loaded.item_ids = [item.id for item in loaded.spec.items()]
    return loaded


def load_run(run_dir: str | Path) -> LoadedRun:
    """One run folder (:class:`studies.run.Run`): a plan's or a sweep's."""
    from lfubench.studies.plan import Plan
    from lfubench.studies.run import Run

    run = Run.open(run_dir)
    spec = run.effective()
    loaded = LoadedRun(str(run.folder), run.trials(), run.folder, spec, run.effective_file.read_text())
    if isinstance(spec, Plan):
        loaded.item_ids = [item.id for item in spec.items()]
    else:
        loaded.sweep_storage = run.storage_url
    return loaded


def load_storage(storage: str, study: str, plan: str | None = None) -> LoadedRun:
    """A study in a storage, with its effective plan file if given (its folder is the run
    folder of items whose records do not name theirs)."""
    from lfubench.studies.records import load_trials

    if plan and not Path(plan).is_file():
        raise LfubenchError(f"--plan {plan}: no such file")
    trials = load_trials(storage, study)
    if not plan:
        return LoadedRun(f"study {study}", trials)
    path = Path(plan).resolve()
    return run_record(path.parent, trials, source=f"study {study}", plan_path=path)


def run_info(run: LoadedRun) -> RunInfo:
    """What a report shows of a run's plan or study, as plain typed facts."""
    from lfubench.reports.inputs import DatasetInfo, RunInfo
    from lfubench.studies.plan import Plan

    spec = run.spec
    if spec is None:
        return RunInfo(run.source)
    effective = spec.to_dict()
    datasets = spec.datasets if isinstance(spec, Plan) else [spec.dataset]
    models = spec.models if isinstance(spec, Plan) else []
    return RunInfo(
        source=run.source,
        name=spec.name,
        plan_text=run.spec_text,
        datasets=tuple(DatasetInfo(d.name, d.kind, d.phantom, settings)
                       for d, settings in zip(datasets, effective["datasets"], strict=True)),
        train=effective["train"],
        measure=effective["measure"],
        widths={m.label: m.kwargs["base_width"] for m in models if "base_width" in m.kwargs},
        first_model=models[0].label if models else None,
    )


def sweep_data(run: LoadedRun) -> SweepData | None:
    """The results of a sweep run (None for a plan's)."""
    from lfubench.reports.inputs import SweepData
    from lfubench.studies.run import sweep_results

    if run.sweep_storage is None:
        return None
    res = sweep_results(run.spec, run.sweep_storage)
    constraints = [c.text for c in res.study.objectives.constraints]
    return SweepData(res.study.name, res.study.description, res.objectives, constraints, res.trials,
                     res.history, res.importances)


def _overlays(run: LoadedRun, items: pd.DataFrame) -> pd.Series:
    """Each item's overlays file (:meth:`ItemRecord.overlays_file`, with ``run.root`` as the
    fallback folder); the report says which are missing."""
    from lfubench.studies.records import records

    found = {rec.item: str(path) for rec in records(run.trials)
             if (path := rec.overlays_file(run.root)) is not None}
    return pd.Series([found.get(i) for i in items["item"]], index=items.index, dtype=object)


def _failures(run: LoadedRun) -> pd.DataFrame:
    """The run's items without a result: failed or running ones, and the plan's items no trial
    has run yet (``pending``)."""
    from lfubench.studies.records import failures, trial_item

    fails = failures(run.trials)
    known = {trial_item(t) for t in run.trials}
    pending = [i for i in run.item_ids if i not in known]
    if not pending:
        return fails
    waiting = pd.DataFrame({"item": pending, "state": "pending", "attempts": 0, "reason": "not run yet"})
    return pd.concat([fails, waiting], ignore_index=True) if len(fails) else waiting


def _concat(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f.columns)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def gather(runs: Sequence[LoadedRun]) -> dict:
    """The report's tables from loaded runs, merged: results, efficiency, items (overlays
    resolved), failures, environments, splits. An item present in two runs is refused (report
    them separately)."""
    from lfubench.studies.records import collect, environments, splits

    parts: dict[str, list[pd.DataFrame]] = {k: [] for k in ("results", "efficiency", "items", "failures",
                                                            "environments")}
    seen: dict[str, str] = {}
    all_splits: dict = {}
    for run in runs:
        results, efficiency, items = collect([t for t in run.trials if t.state.name == "COMPLETE"])
        for item in items["item"]:
            if item in seen:
                raise LfubenchError(f"item {item} is in both {seen[item]} and {run.source}; report these "
                                    "runs separately")
            seen[item] = run.source
        items["overlays"] = _overlays(run, items)
        for key, df in (("results", results), ("efficiency", efficiency), ("items", items),
                        ("failures", _failures(run)), ("environments", environments(run.trials))):
            parts[key].append(df)
        for name, sp in splits(run.trials).items():
            all_splits.setdefault(name, sp)
    return {k: _concat(v) for k, v in parts.items()} | {"splits": all_splits}


def report_inputs(runs: Sequence[LoadedRun], title: str, *, reference: str | None = None,
                  seed: int = 0) -> ReportInputs:
    """One typed input for the report of ``runs`` (merged)."""
    from lfubench.reports.inputs import FAILURE_COLUMNS, ReportInputs
    from lfubench.reports.schema import ReportInputError

    data = gather(runs)
    failures = data["failures"] if len(data["failures"].columns) else pd.DataFrame(columns=FAILURE_COLUMNS)
    try:
        return ReportInputs(
            data["results"], data["efficiency"], data["items"], title, failures=failures,
            environments=data["environments"], runs=[run_info(r) for r in runs], splits=data["splits"],
            sweeps=[s for r in runs if (s := sweep_data(r)) is not None], versions=versions(),
            reference=reference, seed=seed)
    except ReportInputError as err:
        raise LfubenchError(str(err)) from None


def write_report(
    out: str | Path,
    runs: Sequence[LoadedRun],
    title: str,
    *,
    reference: str | None = None,
    seed: int = 0,
    pdf: bool = True,
    report_name: str = "report.pdf",
    runtime: str | None = None,
) -> dict[str, list[Path]]:
    """Gather ``runs`` and write every output into ``out`` (see :func:`reports.build.build_outputs`;
    ``runtime``: the Pareto plots' latency, :func:`reports.pareto.pareto_runtime`)."""
    from lfubench.reports.build import build_outputs
    from lfubench.reports.schema import ReportInputError

    inputs = report_inputs(runs, title, reference=reference, seed=seed)
    try:
        return build_outputs(inputs, out, pdf=pdf, report_name=report_name, runtime=runtime)
    except ReportInputError as err:
        raise LfubenchError(str(err)) from None


def _output(args: argparse.Namespace, runs: Sequence[LoadedRun]) -> Path:
    if args.output:
        output = Path(args.output)
        if output.suffix.lower() != ".pdf":
            raise LfubenchError(f"-o {output}: the report is a PDF; name a .pdf file")
        return output
    if len(runs) == 1 and args.runs:
        return Path(args.runs[0]) / "report.pdf"
    raise LfubenchError("-o/--output is required for several run folders or a storage")


def run(args: argparse.Namespace) -> int:
    if args.storage or args.study:
        if not (args.storage and args.study):
            raise LfubenchError("--storage and --study go together")
        if args.runs:
            raise LfubenchError("give run folders or --storage/--study, not both")
        runs = [load_storage(args.storage, args.study, args.plan)]
    elif args.runs:
        if args.plan:
            raise LfubenchError("--plan goes with --storage (a run folder holds its plan.toml)")
        runs = [load_run(r) for r in args.runs]
    else:
        raise LfubenchError("name run folders, or --storage URL --study NAME")
    output = _output(args, runs)
    names = list(dict.fromkeys(r.spec.name if r.spec is not None else r.source for r in runs))
    written = write_report(output.parent, runs, f"lfubench: {', '.join(names)}", reference=args.reference,
                           seed=args.seed, pdf=not args.no_pdf, report_name=output.name, runtime=args.runtime)
    n = sum(len(v) for v in written.values())
    print(f"wrote {n} files to {output.parent}" + (f"; report: {output}" if not args.no_pdf else ""))
    return 0
