"""``lfubench bench PLAN``: run a benchmark plan (train, evaluate, measure) and write results,
tables, Pareto plots and a report."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from lfubench.bench.errors import LfubenchError

from .args import add_run_options

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark plan (TOML) and write results and reports")
    p.add_argument("plan", help="a shipped plan's name (lfubench plans lists them: lfubench bench default) "
                   "or a plan TOML file")
    add_run_options(p, "plan", "item", "train.epochs=2, measure.batch_sizes=[1,8], datasets.NAME.cases=6, "
                    "models.LABEL.base_width=16, seeds=[0,1]",
                    "with several CPU workers, keep workers x [train].threads within the machine's cores")
    p.add_argument("--max-items", type=int, help="stop this worker after N items")
    p.add_argument("--no-report", action="store_true", help="skip tables, plots and the PDF")
    p.set_defaults(func=run)


def _work(args, plan, run, engine, items: dict, done_before: int) -> dict:
    """This process's share of the items, one by one, each logged when it starts and ends."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    from lfubench.reports.record import ItemRecord
    from lfubench.studies.pipeline import budget, run_item
    from lfubench.studies.progress import PlanProgress

    progress = PlanProgress(len(items), done_before, budget(plan), bar=not args.no_progress)

    def work(item_id: str) -> ItemRecord:
        t0 = progress.start(item_id, sum(v in ("complete", "running") for v in engine.status().values()))
        try:
            record = run_item(items[item_id], plan, run.folder, progress=not args.no_progress)
        except Exception as err:
            progress.failed_item(item_id, err, t0)
            raise
        progress.finished(item_id, record, t0, sum(v != "complete" for v in engine.status().values()) - 1)
        return record

    with logging_redirect_tqdm():
        counts = engine.run(work, max_items=args.max_items)
    progress.close(sum(v == "complete" for v in engine.status().values()))
    return counts


def run(args: argparse.Namespace) -> int:
    from lfubench.studies.engine import Engine, EngineConfig
    from lfubench.studies.plan import check_devices, load_plan
    from lfubench.studies.run import Run, spawn_workers, tag_worker_logs, worker_devices

    if args.worker_tag:
        tag_worker_logs(args.worker_tag)
    devices = worker_devices(args.devices, args.workers)
    plan = load_plan(args.plan, overrides=args.set)
    check_devices(plan, args.devices)  # a plan this machine cannot run stops here, in one line
    run = Run(args.out or Path("runs") / plan.name, args.storage)
    out = run.folder
    run.write_effective(plan)
    items = {item.id: item for item in plan.items()}
    config = EngineConfig(heartbeat_s=min(10.0, args.grace / 6), grace_s=args.grace)
    engine = Engine(run.storage_url, plan.name, list(items), config)
    engine.sync()  # enqueue once, before any worker starts
    done_before = sum(v == "complete" for v in engine.status().values())
    log.info("plan %s: %d items, %d already complete; storage %s",
             plan.name, len(items), done_before, run.storage_shown)
    if len(devices) > 1:
        threads = max(plan.train.threads or 0, plan.measure.threads or 0)
        if threads and len(devices) * threads > (os.cpu_count() or 1):
            log.warning("%d workers x %d threads exceed the machine's %d cores: timings will suffer",
                        len(devices), threads, os.cpu_count())
        log.info("starting %d workers%s", len(devices),
                 "" if devices[0] is None else " on " + ", ".join(f"cuda:{d}" for d in devices))
        extra = ["--grace", str(args.grace), "--no-report", "--no-progress"]
        extra += [f"--set={item}" for item in args.set]
        if args.max_items is not None:
            extra += ["--max-items", str(args.max_items)]
        spawn_workers(["bench", args.plan], out, run.storage_url, devices, extra)
        status = engine.status()
        counts = {"complete": sum(v == "complete" for v in status.values()) - done_before,
                  "failed": sum(v == "failed" for v in status.values())}
    else:
        counts = _work(args, plan, run, engine, items, done_before)
    status = engine.status()
    for item_id, state in status.items():
        if state == "failed":
            print(f"failed: {item_id}: {engine.fail_reason(item_id)}", file=sys.stderr)
    if not args.no_report:
        from lfubench.cli.report import run_record, write_report

        trials = engine.study.get_trials(deepcopy=False)
        written = write_report(out, [run_record(out, trials)], f"lfubench: {plan.name}")
        print((out / "table.md").read_text())
        log.info("wrote %s", ", ".join(str(p) for paths in written.values() for p in paths))
    if args.worker_tag:  # a worker started by --workers/--devices: the parent reports
        return 0
    n_done = sum(v == "complete" for v in status.values())
    print(f"{n_done}/{len(items)} items complete ({counts['complete']} run now, "
          f"{counts['failed']} failed now); results in {out}")
    running = [i for i, v in status.items() if v in ("running", "waiting")]
    if running:
        print(f"{len(running)} item(s) still running or waiting in other workers", file=sys.stderr)
    failed = [i for i, v in status.items() if v in ("failed", "pending")]
    if failed and args.max_items is None:
        raise LfubenchError(f"{len(failed)} item(s) failed: {', '.join(failed[:5])}")
    return 0
