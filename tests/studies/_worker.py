"""Worker processes for the engine tests: fake plan items, or fake sweep trials, that sleep and
log their runs.

    python -m tests.studies._worker STORAGE N_ITEMS SLEEP LOG [fail3] [OPTION=VALUE ...]
    python -m tests.studies._worker sweep STUDY STORAGE SLEEP LOG [OPTION=VALUE ...]

Options: ``grace`` and ``heartbeat`` (seconds; default 1.5 and 0.2), ``retry`` (the queue's
retry bound, seconds), ``logfile`` (the worker's log, INFO and up). As the command line does, a
:class:`LfubenchError` is one line on stderr and exit code 2.
"""

import logging
import os
import sys
import time

from lfubench.bench.errors import LfubenchError
from lfubench.studies import queue
from lfubench.studies.engine import Engine, EngineConfig


def _options() -> tuple[list[str], dict[str, str]]:
    args = [a for a in sys.argv[1:] if "=" not in a]
    return args, dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)


def _config(opts: dict[str, str]) -> EngineConfig:
    if "retry" in opts:
        queue.RETRY_WAIT_S = float(opts["retry"])
    if "logfile" in opts:
        logging.basicConfig(filename=opts["logfile"], level=logging.INFO,
                            format=f"%(asctime)s pid {os.getpid()} %(levelname)s %(name)s: %(message)s")
    return EngineConfig(heartbeat_s=float(opts.get("heartbeat", 0.2)), grace_s=float(opts.get("grace", 1.5)))


def plan_worker(args: list[str], opts: dict[str, str]) -> None:
    storage, n_items, sleep_s, log_path = args[0], int(args[1]), float(args[2]), args[3]
    items = [f"item{k}" for k in range(n_items)]

    def run_item(item: str) -> dict:
        with open(log_path, "a") as f:
            f.write(f"start {item}\n")
        time.sleep(sleep_s)
        if item == "item3" and "fail3" in args:
            raise RuntimeError("planted failure: unreadable case volume-3.nii")
        with open(log_path, "a") as f:
            f.write(f"done {item}\n")
        return {"value": int(item[4:]) / 10, "finished_at": time.time()}

    engine = Engine(storage, "test", items, _config(opts))
    print(engine.run(run_item), flush=True)


def sweep_worker(args: list[str], opts: dict[str, str]) -> None:
    from lfubench.studies.sweep import Sweep
    from lfubench.studies.sweepfile import load_study
    from tests.studies.helpers import fake_record

    study_path, storage, sleep_s, log_path = args[1], args[2], float(args[3]), args[4]

    def evaluate(spec, trial):
        with open(log_path, "a") as f:
            f.write(f"start {trial.number} {trial.user_attrs.get('slot')}\n")
        time.sleep(sleep_s)
        return fake_record(spec)

    sweep = Sweep(load_study(study_path), storage, _config(opts))
    print(sweep.run(evaluate), flush=True)


def main() -> int:
    args, opts = _options()
    try:
        if args[0] == "sweep":
            sweep_worker(args, opts)
        else:
            plan_worker(args, opts)
    except LfubenchError as err:
        print(f"worker: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
