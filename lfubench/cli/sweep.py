"""``lfubench sweep STUDY``: run a sweep study (an Optuna study whose trials are bench items)
with one or several workers; ``lfubench sweep show STUDY``: its Pareto front, hypervolume
history, parameter importances and figures."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from lfubench.bench.errors import LfubenchError

from .args import add_run_options

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a sweep study (TOML), or show its results: sweep show STUDY",
                       usage="lfubench sweep [show] STUDY [options]",
                       description="Run a sweep study: lfubench sweep STUDY [options]. Show its "
                       "results: lfubench sweep show STUDY [--storage URL] [--format md|csv|json]. STUDY is "
                       "a shipped study's name (lfubench plans lists them) or a study TOML file.")
    p.add_argument("target", nargs="+", metavar="STUDY", help="a shipped study's name (lfubench plans lists "
                   "them: lfubench sweep smoke) or a study TOML file; after 'show' to print and draw the "
                   "results")
    add_run_options(p, "study", "trial", "n_trials=20, train.epochs=2, sampler.name=tpe, "
                    "search.base_width=[4,8], search.lfunet.groups=[4,8], pruner.name=median, "
                    "datasets.NAME.cases=6",
                    "with several CPU workers each trains with cores/N threads unless the study sets "
                    "[train].threads")
    p.add_argument("--max-trials", type=int, help="stop this worker after N trials")
    p.add_argument("--format", choices=("md", "csv", "json"), default="md", help="front table format (show)")
    p.add_argument("--no-show", action="store_true", help="after running, skip the results")
    p.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _target(args) -> tuple[str, str]:
    t = args.target
    if t[0] == "show":
        if len(t) != 2:
            raise LfubenchError("usage: lfubench sweep show STUDY.toml [--storage URL]")
        return "show", t[1]
    if len(t) != 1:
        raise LfubenchError(f"one study file expected, got {' '.join(t)!r} (to see results: lfubench sweep "
                            "show STUDY.toml)")
    return "run", t[0]


def _run(args, study):
    """The study's run folder (``--out``, default ``runs/<study name>``) and storage."""
    from lfubench.studies.run import Run

    return Run(args.out or Path("runs") / study.name, args.storage)


def run(args: argparse.Namespace) -> int:
    from lfubench.studies.plan import check_devices
    from lfubench.studies.run import tag_worker_logs
    from lfubench.studies.sweepfile import load_study

    mode, path = _target(args)
    if args.worker_tag:
        tag_worker_logs(args.worker_tag)
    study = load_study(path, overrides=args.set)
    if mode == "show":
        return show(args, study)
    check_devices(study, args.devices)  # a study this machine cannot run stops here, in one line
    return run_sweep(args, study)


def run_sweep(args: argparse.Namespace, study) -> int:
    from lfubench.studies.engine import EngineConfig
    from lfubench.studies.run import spawn_workers, worker_devices
    from lfubench.studies.sweep import Sweep

    devices = worker_devices(args.devices, args.workers)
    if args.max_trials is not None and args.max_trials < 1:
        raise LfubenchError(f"--max-trials must be at least 1, got {args.max_trials}")
    run = _run(args, study)
    run.write_effective(study)
    config = EngineConfig(heartbeat_s=min(10.0, args.grace / 6), grace_s=args.grace)
    if args.threads:
        for section in (study.train, study.measure):
            if section.threads is None:
                section.threads = args.threads
    sweep = Sweep(study, run.storage_url, config)
    budget = f"{study.settings.n_trials} trials" if study.settings.n_trials else "no trial limit"
    if study.settings.timeout:
        budget += f", {study.settings.timeout:g} s per worker"
    if not args.worker_tag:
        sweep.sync()  # the slots exist before any worker starts
        before = sweep.counts()
        t0 = time.perf_counter()
        log.info("sweep %s: %s, %d done before (%s sampler, seed %d); objectives %s; storage %s",
                 study.name, budget, before["complete"] + before["failed"] + before["pruned"],
                 study.sampler.name, study.sampler.seed,
                 ", ".join(f"{d} {n}" for n, d in zip(study.objectives.names, study.objectives.directions,
                                                       strict=True)), run.storage_shown)
    if len(devices) > 1:
        threads = max(1, (os.cpu_count() or 1) // len(devices))
        set_threads = study.train.threads is None or study.measure.threads is None
        log.info("starting %d workers%s%s", len(devices),
                 "" if devices[0] is None else " on " + ", ".join(f"cuda:{d}" for d in devices),
                 f", {threads} CPU thread(s) each" if set_threads else "")
        extra = ["--grace", str(args.grace), "--no-show", "--no-progress", "--threads", str(threads)]
        extra += [f"--set={item}" for item in args.set]
        if args.max_trials is not None:
            extra += ["--max-trials", str(args.max_trials)]
        spawn_workers(["sweep", _target(args)[1]], run.folder, run.storage_url, devices, extra,
                      env={"OMP_NUM_THREADS": str(threads)})
    else:
        _work(args, study, sweep, run.folder)
    if args.worker_tag:
        return 0
    counts = sweep.counts()
    print(f"sweep {study.name}: {counts['complete']} complete, {counts['failed']} failed, "
          f"{counts['pruned']} pruned"
          + (f", {counts['running']} running elsewhere" if counts["running"] else "")
          + (f", {counts['waiting']} waiting" if counts["waiting"] else "")
          + f"; storage {run.storage_shown}")
    ran = sum(counts[k] - before[k] for k in ("complete", "failed", "pruned"))
    hours = (time.perf_counter() - t0) / 3600
    if ran:
        print(f"this run: {ran} trial(s) in {hours * 60:.1f} min with {len(devices)} worker(s): "
              f"{ran / hours:.1f} trials/hour")
    if not args.no_show:
        show(args, study)
    return 0


def _work(args, study, sweep, out: Path) -> dict:
    """This process's trials, each logged when it starts and when it ends."""
    from optuna.trial import TrialState
    from tqdm.contrib.logging import logging_redirect_tqdm

    from lfubench.studies.queue import SLOT
    from lfubench.studies.sweep import item_evaluator

    evaluate = item_evaluator(study, out, progress=not args.no_progress)
    total = study.settings.n_trials
    clock: dict[int, float] = {}

    def started(trial, spec) -> None:
        clock[trial.number] = time.perf_counter()
        of = f"/{total}" if total else ""
        log.info("trial %d (slot %s%s) started: %s", trial.number, trial.user_attrs.get(SLOT), of,
                 spec.label)

    def ended(trial, record, reason) -> None:
        took = time.perf_counter() - clock.get(trial.number, time.perf_counter())
        if reason:
            pruned = sweep.queue.get(trial.number).state == TrialState.PRUNED
            log.info("trial %d %s after %.1f s: %s", trial.number, "stopped" if pruned else "failed", took,
                     reason)
            return
        figures = sweep.queue.get(trial.number).user_attrs.get("objectives", {})
        log.info("trial %d done in %.1f s: %s", trial.number, took,
                 ", ".join(f"{k} {v:.4g}" for k, v in figures.items()))

    with logging_redirect_tqdm():
        counts = sweep.run(evaluate, max_trials=args.max_trials, on_start=started, on_end=ended)
    log.info("this worker ran %d trial(s), %d failed, %d pruned", sum(counts.values()), counts["failed"],
             counts["pruned"])
    return counts


def show(args: argparse.Namespace, study) -> int:
    """Print the front and write the sweep's tables and figures into OUT/sweep/."""
    from lfubench.reports.sweeps import format_front

    run = _run(args, study)
    if run.own_storage and not run.db.exists():
        raise LfubenchError(f"no sweep storage at {run.db}; run 'lfubench sweep {args.target[-1]}' "
                            "first, or give --storage / --out")
    results = run.sweep_results(study)
    trials, hv, imp = results.trials, results.history, results.importances
    written = results.write(run.sweep_dir)
    front = results.front()
    n_done, n_failed, n_pruned = results.count("complete"), results.count("fail"), results.count("pruned")
    cons = "; constraints " + ", ".join(c.text for c in study.objectives.constraints) \
        if study.objectives.constraints else ""
    header = (f"Pareto front of sweep {study.name}: {len(front)} of {n_done} complete trials "
              f"({n_failed} failed, {n_pruned} pruned){cons}; scores are test-case means at the model's own "
              "pruning level")
    print(format_front(front, args.format, header=header if args.format != "csv" else None))
    if args.format == "md":
        if not hv.empty:
            col = "hypervolume" if "hypervolume" in hv else "best"
            marks = sorted({len(hv) // 4, len(hv) // 2, 3 * len(hv) // 4, len(hv)} - {0})
            ref = hv["reference"].iloc[0] if "reference" in hv else ""
            print(f"\n{col} by trial count: " + ", ".join(f"{k}: {hv[col].iloc[k - 1]:.4g}" for k in marks)
                  + (f" (reference {ref})" if ref else ""))
        for name in dict.fromkeys(imp["objective"]):
            sel = imp[imp["objective"] == name]
            pairs = zip(sel["parameter"], sel["importance"], strict=True)
            print(f"importance for {name} (fANOVA): " + ", ".join(f"{p} {v:.2f}" for p, v in pairs))
        failed = trials[trials["state"] == "fail"] if not trials.empty else trials
        for _, r in failed.iterrows():
            print(f"failed: trial {r['number']}: {r['fail_reason']}", file=sys.stderr)
    log.info("wrote %s", ", ".join(str(p) for paths in written.values() for p in paths))
    return 0
