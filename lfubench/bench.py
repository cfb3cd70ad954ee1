"""``lfubench bench PLAN``: run a benchmark plan (train, evaluate, measure) and write results,
tables, Pareto plots and a report."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from bench.errors import LfubenchError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark plan (TOML) and write results and reports")
    p.add_argument("plan", help="plan TOML file (see studies/plans/)")
    p.add_argument("--out", help="run folder (default runs/<plan name>)")
    p.add_argument("--storage", help="Optuna storage: sqlite:///FILE (default: OUT/study.db), "
                   "journal:FILE for several local processes, or an RDB URL such as postgresql://...")
    p.add_argument("--max-items", type=int, help="stop this worker after N items")
    p.add_argument("--grace", type=float, default=60.0,
                   help="seconds without a heartbeat after which a running item counts as lost and is "
                   "retried (default 60; workers stamp every min(10, grace/6) s)")
    p.add_argument("--no-report", action="store_true", help="skip tables, plots and the PDF")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from studies.engine import Engine, EngineConfig
    from studies.pipeline import run_item
    from studies.plan import load_plan

    plan = load_plan(args.plan)
    out = Path(args.out or Path("runs") / plan.name)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "plan.toml").exists():
        shutil.copyfile(args.plan, out / "plan.toml")
    storage = args.storage or f"sqlite:///{(out / 'study.db').resolve()}"
    items = {item.id: item for item in plan.items()}
    config = EngineConfig(heartbeat_s=min(10.0, args.grace / 6), grace_s=args.grace)
    engine = Engine(storage, plan.name, list(items), config)
    done_before = sum(v == "complete" for v in engine.status().values())
    log.info("plan %s: %d items, %d already complete; storage %s",
             plan.name, len(items), done_before, storage)
    counts = engine.run(lambda item_id: run_item(items[item_id], plan, out, progress=not args.no_progress),
                        max_items=args.max_items)
    status = engine.status()
    for item_id, state in status.items():
        if state == "failed":
            reason = next((t.user_attrs.get("fail_reason") for t in reversed(engine.study.trials)
                           if t.params.get("item") == item_id), "")
            print(f"failed: {item_id}: {reason}", file=sys.stderr)
    if not args.no_report:
        from reports.build import build_outputs, collect

        tidy, eff = collect(engine.completed())
        written = build_outputs(out, tidy, eff, f"lfubench: {plan.name}")
        print((out / "table.md").read_text())
        log.info("wrote %s", ", ".join(str(p) for paths in written.values() for p in paths))
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
