"""``lfubench report RUN_DIR [RUN_DIR ...] | --storage URL --study NAME``: the paper-style report
(tables, statistics, figures, PDF) of one or several runs.

This module gathers what a report needs -- the tidy tables, failed items, hardware/software
records, splits, the effective plans, package versions -- from run folders or a storage (through
:mod:`studies.records`) and hands DataFrames and plain dicts to :func:`reports.build.build_outputs`.
``lfubench bench`` ends with the same report through :func:`write_report`.
"""

from __future__ import annotations

import argparse
import logging
import tomllib
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import pandas as pd

from lfubench.bench.errors import LfubenchError

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


def _read_plan(path: Path) -> tuple[dict, str]:
    try:
        text = path.read_text()
        return tomllib.loads(text), text
    except OSError as err:
        raise LfubenchError(f"{path}: cannot read the plan ({err.strerror})") from None
    except tomllib.TOMLDecodeError as err:
        raise LfubenchError(f"{path}: not a valid plan file ({err})") from None


def _item_ids(plan_path: Path) -> list[str]:
    from lfubench.studies.plan import load_plan

    return [item.id for item in load_plan(plan_path).items()]


def run_record(
    run_dir: str | Path,
    trials: Sequence,
    source: str | None = None,
    plan_path: str | Path | None = "plan.toml",
) -> dict:
    """What a report needs of one run: ``source``, ``root`` (the folder that overlays paths are
    relative to), ``plan`` and ``plan_text`` (the effective plan, when known), ``item_ids`` (the
    plan's items) and ``trials``."""
    run = Path(run_dir)
    record = {"source": source or str(run), "root": run, "trials": list(trials), "item_ids": []}
    plan_path = run / plan_path if plan_path else None  # an absolute plan_path stays as it is
    if plan_path is not None and plan_path.is_file():
        record["plan"], record["plan_text"] = _read_plan(plan_path)
        record["item_ids"] = _item_ids(plan_path)
    return record


def load_run(run_dir: str | Path) -> dict:
    """One run folder (its ``plan.toml`` and ``study.db``), as :func:`run_record`."""
    from lfubench.studies.records import load_trials

    run = Path(run_dir)
    if not run.is_dir():
        raise LfubenchError(f"{run}: no such run folder")
    plan_path, db = run / "plan.toml", run / "study.db"
    if not plan_path.is_file() and (run / "study.toml").is_file():
        return load_sweep_run(run)
    if not plan_path.is_file():
        raise LfubenchError(f"{run}: not a run folder (no plan.toml or study.toml)")
    if not db.is_file():
        raise LfubenchError(f"{run}: no study.db (a run with another --storage: use --storage and --study)")
    plan, _ = _read_plan(plan_path)
    if "name" not in plan:
        raise LfubenchError(f"{plan_path}: the plan has no 'name'")
    return run_record(run, load_trials(f"sqlite:///{db.resolve()}", plan["name"]))


def load_sweep_run(run: Path) -> dict:
    """A sweep's run folder (its effective ``study.toml`` and ``study.db``), as
    :func:`run_record` plus ``sweep`` (the study and its storage URL)."""
    from lfubench.studies.records import load_trials
    from lfubench.studies.sweepfile import load_study

    db = run / "study.db"
    if not db.is_file():
        raise LfubenchError(f"{run}: no study.db (a sweep with another --storage: use --storage and --study)")
    study = load_study(run / "study.toml")
    url = f"sqlite:///{db.resolve()}"
    record = run_record(run, load_trials(url, study.name), plan_path=None)
    record["plan"], record["plan_text"] = _read_plan(run / "study.toml")
    record["sweep"] = (study, url)
    return record


def sweep_sections(out: Path, runs: Sequence[dict]) -> list[dict]:
    """The front table and figures of each sweep among ``runs``, written under ``out``."""
    from lfubench.reports.sweeps import front_table, write_sweep_outputs
    from lfubench.studies.sweep import hypervolume_history, importances, open_sweep, trials_frame

    sections = []
    for run in runs:
        if "sweep" not in run:
            continue
        study, url = run["sweep"]
        stored = open_sweep(study, url)
        trials = trials_frame(stored, study)
        objectives = list(zip(study.objectives.names, study.objectives.directions, strict=True))
        folder = f"sweep_{study.name}"
        written = write_sweep_outputs(out / folder, trials, hypervolume_history(trials, study),
                                      importances(stored, study), objectives, f"sweep: {study.name}")
        done = int((trials["state"] == "complete").sum()) if not trials.empty else 0
        goals = ", ".join(f"{d} {n}" for n, d in objectives)
        cons = study.objectives.constraints
        captions = {
            "sweep_front": "every complete trial by its objectives; the front's trials ringed, dominated and "
                           "infeasible ones grey, one colour per family.",
            "sweep_history": "each objective by trial number, and the hypervolume (or best value) so far.",
            "sweep_importance": "fANOVA importance of each searched parameter for each objective.",
        }
        figures = [(f"{folder}/{p.name}", f"Sweep {study.name}: {captions[p.stem]}")
                   for p in written["figures"] if p.suffix == ".pdf"]
        sections.append({
            "name": study.name,
            "summary": f"{done} complete trials of {study.name} ({study.description or 'no description'}); "
                       f"objectives: {goals}"
                       + (f"; constraints: {', '.join(c.text for c in cons)}" if cons else "") + ".",
            "front": front_table(trials, objectives), "figures": figures})
    return sections


def load_storage(storage: str, study: str, plan: str | None = None) -> dict:
    """A study in a storage, with its effective plan file if given (overlays paths are taken
    relative to the plan's folder, the run folder)."""
    from lfubench.studies.records import load_trials

    if plan and not Path(plan).is_file():
        raise LfubenchError(f"--plan {plan}: no such file")
    root = Path(plan).parent if plan else Path.cwd()
    return run_record(
        root,
        load_trials(storage, study),
        source=f"study {study}",
        plan_path=Path(plan).resolve() if plan else None,
    )


def gather(runs: Sequence[dict]) -> dict:
    """The report's inputs from loaded runs, merged: results, efficiency, items, failures,
    environments, splits. An item present in two runs is refused (report them separately)."""
    from lfubench.studies.records import collect, environments, failures, splits, trial_item

    parts: dict[str, list[pd.DataFrame]] = {
        k: [] for k in ("results", "efficiency", "items", "failures", "environments")
    }
    seen: dict[str, str] = {}
    all_splits: dict = {}
    for run in runs:
        results, efficiency, items = collect([t for t in run["trials"] if t.state.name == "COMPLETE"])
        for item in items["item"]:
            if item in seen:
                raise LfubenchError(
                    f"item {item} is in both {seen[item]} and {run['source']}; report these runs separately"
                )
            seen[item] = run["source"]
        if "overlays" in items:  # paths relative to the run folder -> readable paths
            root = Path(run["root"])
            items["overlays"] = [
                str(root / p) if isinstance(p, str) and p else None for p in items["overlays"]
            ]
            for p in items["overlays"].dropna():
                if not Path(p).is_file():
                    raise LfubenchError(
                        f"{p}: overlays file named by the items of {run['source']} is missing"
                    )
        fails = failures(run["trials"])
        known = {trial_item(t) for t in run["trials"]}
        pending = [i for i in run.get("item_ids", []) if i not in known]  # items no trial has run yet
        if pending:
            fails = pd.concat(
                [
                    fails,
                    pd.DataFrame(
                        {"item": pending, "state": "pending", "attempts": 0, "reason": "not run yet"}
                    ),
                ],
                ignore_index=True,
            )
        for key, df in (
            ("results", results),
            ("efficiency", efficiency),
            ("items", items),
            ("failures", fails),
            ("environments", environments(run["trials"])),
        ):
            parts[key].append(df)
        for name, sp in splits(run["trials"]).items():
            all_splits.setdefault(name, sp)
    return {
        k: pd.concat([d for d in v if len(d.columns)], ignore_index=True)
        if any(len(d.columns) for d in v)
        else pd.DataFrame()
        for k, v in parts.items()
    } | {"splits": all_splits}


def write_report(
    out: str | Path,
    runs: Sequence[dict],
    title: str,
    *,
    reference: str | None = None,
    seed: int = 0,
    pdf: bool = True,
    report_name: str = "report.pdf",
) -> dict[str, list[Path]]:
    """Gather ``runs`` and write every output into ``out`` (see :func:`reports.build.build_outputs`)."""
    from lfubench.reports.build import build_outputs
    from lfubench.reports.schema import ReportInputError

    data = gather(runs)
    if reference is None:
        firsts = [m["label"] for run in runs for m in (run.get("plan") or {}).get("models", [])[:1]]
        reference = firsts[0] if firsts and firsts[0] in set(data["results"].get("label", [])) else None
    try:
        return build_outputs(
            out,
            data["results"],
            data["efficiency"],
            data["items"],
            title,
            pdf=pdf,
            failures=data["failures"],
            environments=data["environments"],
            runs=[{k: run.get(k) for k in ("source", "plan", "plan_text")} for run in runs],
            splits=data["splits"],
            versions=versions(),
            reference=reference,
            seed=seed,
            report_name=report_name,
            sweeps=sweep_sections(Path(out), runs),
        )
    except ReportInputError as err:
        raise LfubenchError(str(err)) from None


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
    if args.output:
        output = Path(args.output)
        if output.suffix.lower() != ".pdf":
            raise LfubenchError(f"-o {output}: the report is a PDF; name a .pdf file")
    elif len(runs) == 1 and args.runs:
        output = Path(args.runs[0]) / "report.pdf"
    else:
        raise LfubenchError("-o/--output is required for several run folders or a storage")
    names = list(dict.fromkeys((r.get("plan") or {}).get("name") or r["source"] for r in runs))
    written = write_report(
        output.parent,
        runs,
        f"lfubench: {', '.join(names)}",
        reference=args.reference,
        seed=args.seed,
        pdf=not args.no_pdf,
        report_name=output.name,
    )
    n = sum(len(v) for v in written.values())
    print(f"wrote {n} files to {output.parent}" + (f"; report: {output}" if not args.no_pdf else ""))
    return 0
