"""``lfubench bench PLAN``: run a benchmark plan (train, evaluate, measure) and write results,
tables, Pareto plots and a report."""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from lfubench.bench.errors import LfubenchError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark plan (TOML) and write results and reports")
    p.add_argument("plan", help="plan TOML file (see studies/plans/)")
    p.add_argument("--out", help="run folder (default runs/<plan name>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a plan setting, validated like the file: train.epochs=2, "
                   "measure.batch_sizes=[1,8], datasets.NAME.cases=6, models.LABEL.base_width=16, "
                   "seeds=[0,1] (repeatable; the run folder keeps the effective plan)")
    p.add_argument("--storage", help="Optuna storage: sqlite:///FILE (default: OUT/study.db), "
                   "journal:FILE for several local processes, or an RDB URL such as postgresql://...")
    p.add_argument("--max-items", type=int, help="stop this worker after N items")
    p.add_argument("--grace", type=float, default=60.0,
                   help="seconds without a heartbeat after which a running item counts as lost and is "
                   "retried (default 60; workers stamp every min(10, grace/6) s)")
    p.add_argument("--workers", type=int, default=1,
                   help="local worker processes sharing the storage (default 1); with several CPU workers, "
                   "keep workers x [train].threads within the machine's cores")
    p.add_argument("--devices", help="comma-separated GPUs, one worker each: cuda:0,cuda:1 (each worker "
                   "sees only its own GPU; the plan's measure.device stays 'cuda')")
    p.add_argument("--worker-tag", help=argparse.SUPPRESS)
    p.add_argument("--no-report", action="store_true", help="skip tables, plots and the PDF")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def write_effective_plan(plan, out: Path) -> None:
    """Keep the effective plan in the run folder; refuse a folder that holds a different one
    (finished items would otherwise be mixed with items of other settings)."""
    import tomllib

    import tomli_w

    path = out / "plan.toml"
    effective = plan.to_dict()
    if path.exists():
        try:
            kept = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError:
            kept = None
        if kept != effective:
            changed = sorted(k for k in set(effective) | set(kept or {})
                             if (kept or {}).get(k) != effective.get(k))
            raise LfubenchError(f"{out} holds a run of a different plan (differs in: {', '.join(changed)}); "
                                "choose another --out, or delete the folder to start over")
        return
    tmp = path.with_name(".plan.toml.tmp")
    tmp.write_text(f"# the effective plan of this run: {plan.path} with its --set overrides, defaults "
                   f"filled in\n{tomli_w.dumps(effective)}")
    tmp.replace(path)


def _devices(text: str | None, workers: int) -> list[str | None]:
    """One entry per worker: the CUDA device index it may see, or None (all visible)."""
    if workers < 1:
        raise LfubenchError(f"--workers must be at least 1, got {workers}")
    if not text:
        return [None] * workers
    devices = [d.strip() for d in text.split(",") if d.strip()]
    if not devices or any(not re.fullmatch(r"cuda:\d+", d) for d in devices):
        raise LfubenchError(f"--devices must look like cuda:0,cuda:1, got {text!r}")
    if len(set(devices)) != len(devices):
        raise LfubenchError(f"--devices names a device twice: {text!r}")
    if workers not in (1, len(devices)):
        raise LfubenchError(f"--workers {workers} does not match the {len(devices)} --devices "
                            "(one worker each)")
    return [d.split(":")[1] for d in devices]


def _spawn_workers(args: argparse.Namespace, out: Path, storage: str, devices: list[str | None]) -> list[int]:
    """Start one ``lfubench bench`` process per worker on the same storage; return their exit codes."""
    procs = []
    for k, device in enumerate(devices):
        cmd = [sys.executable, "-m", "lfubench", "bench", args.plan, "--out", str(out), "--storage", storage,
               "--grace", str(args.grace), "--no-report", "--no-progress", "--worker-tag", f"w{k}"]
        cmd += [f"--set={item}" for item in args.set]
        if args.max_items is not None:
            cmd += ["--max-items", str(args.max_items)]
        env = dict(os.environ)
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
        procs.append(subprocess.Popen(cmd, env=env))
    return [proc.wait() for proc in procs]


def _work(args, plan, out: Path, engine, items: dict, done_before: int) -> dict:
    """This process's share of the items, one by one, each logged when it starts and ends."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    from lfubench.studies.pipeline import budget, run_item
    from lfubench.studies.progress import PlanProgress

    progress = PlanProgress(len(items), done_before, budget(plan), bar=not args.no_progress)

    def work(item_id: str) -> dict:
        t0 = progress.start(item_id, sum(v in ("complete", "running") for v in engine.status().values()))
        try:
            record = run_item(items[item_id], plan, out, progress=not args.no_progress)
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

    if args.worker_tag:
        tagged = logging.Formatter(f"[{args.worker_tag}] %(levelname)s %(name)s: %(message)s")
        for handler in logging.getLogger().handlers:
            handler.setFormatter(tagged)
    devices = _devices(args.devices, args.workers)
    plan = load_plan(args.plan, overrides=args.set)
    check_devices(plan, args.devices)  # a plan this machine cannot run stops here, in one line
    out = Path(args.out or Path("runs") / plan.name)
    out.mkdir(parents=True, exist_ok=True)
    write_effective_plan(plan, out)
    storage = args.storage or f"sqlite:///{(out / 'study.db').resolve()}"
    items = {item.id: item for item in plan.items()}
    config = EngineConfig(heartbeat_s=min(10.0, args.grace / 6), grace_s=args.grace)
    engine = Engine(storage, plan.name, list(items), config)
    engine.sync()  # enqueue once, before any worker starts
    done_before = sum(v == "complete" for v in engine.status().values())
    log.info("plan %s: %d items, %d already complete; storage %s",
             plan.name, len(items), done_before, storage)
    if len(devices) > 1:
        threads = max(plan.train.threads or 0, plan.measure.threads or 0)
        if threads and len(devices) * threads > (os.cpu_count() or 1):
            log.warning("%d workers x %d threads exceed the machine's %d cores: timings will suffer",
                        len(devices), threads, os.cpu_count())
        log.info("starting %d workers%s", len(devices),
                 "" if devices[0] is None else " on " + ", ".join(f"cuda:{d}" for d in devices))
        codes = _spawn_workers(args, out, storage, devices)
        if any(code not in (0, 2) for code in codes):
            raise LfubenchError(f"worker exit codes {codes}: a worker was killed or crashed; "
                                "run again to resume")
        status = engine.status()
        counts = {"complete": sum(v == "complete" for v in status.values()) - done_before,
                  "failed": sum(v == "failed" for v in status.values())}
    else:
        counts = _work(args, plan, out, engine, items, done_before)
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
