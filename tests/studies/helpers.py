"""Helpers of the studies tests: a fake sweep study and its fake item, worker processes of a plan
or a sweep, and what a storage holds once they ran.

The fake item runs no training: its record has the shape of :func:`studies.pipeline.run_item`'s,
with the model's real parameter count and a Dice that grows with width. Run as a module
(``python -m tests.studies.helpers STUDY STORAGE LOG SLEEP [fail2]``) this is one sweep worker
for the multi-process tests (:func:`start_sweep_worker`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from lfubench import models
from lfubench.bench.complexity import count_params
from lfubench.studies.engine import Engine, EngineConfig

from ._plans import nsga2, study_text

ROOT = Path(__file__).resolve().parents[2]

#: the fake sweep study, a ``str.format`` template of ``n_trials`` and ``constraints``
STUDY = study_text("fake", """family = ["lfunet", "unet", "unetpp"]
base_width = [4, 8, 12]
groups = [1, 2, 4, 8]
prune_level = [2, 4]
prune_ratio = {{low = 0.0, high = 0.5, step = 0.25}}""", n_trials="{n_trials}",
                   measure_keys='batch_sizes = [1, 8]\nprecision = ["fp32"]',
                   objective_keys="constraints = {constraints}",
                   sampler=nsga2(4))


def write_study(tmp_path: Path, n_trials: int = 6, constraints: str = "[]", text: str | None = None) -> Path:
    path = tmp_path / "fake.toml"
    path.write_text(text if text is not None else STUDY.format(n_trials=n_trials, constraints=constraints))
    return path


def fake_record(spec, level_rows: int = 2) -> dict:
    """A record shaped like run_item's: two test cases x (liver, tumor) x (dice, hd95) at the
    model's level, efficiency rows at batch 1 and 8, the model's real parameter count."""
    net = models.create_model(spec.name, in_channels=3, num_classes=3, **spec.kwargs)
    params = count_params(net)
    level = getattr(net, "prune_level", 0) or 0
    width = spec.kwargs.get("base_width", 8)
    dice = min(0.95, 0.4 + 0.04 * width - 0.2 * spec.prune_ratio + (0.05 if spec.name == "lfunet" else 0))
    metrics = []
    for case in ("c1", "c2"):
        for region, shift in (("liver", 0.1), ("tumor", -0.1)):
            key = {"level": level, "stage": "final", "case": case, "region": region}
            metrics.append({**key, "metric": "dice", "value": dice + shift})
            metrics.append({**key, "metric": "hd95", "value": 10.0 / width})
    efficiency = [{"level": level, "stage": "final", "batch": b, "precision": "fp32", "params": params,
                   "gmacs": params / 1e5, "latency_ms": 0.001 * params * b, "peak_mb": 5.0, "status": "ok"}
                  for b in (1, 8)]
    return {"value": dice, "metrics": metrics, "efficiency": efficiency, "train": {"seconds": 1.5}}


def _start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            text=True)


def start_plan_worker(storage: str, n: int, sleep: float, log: Path, *extra: str) -> subprocess.Popen:
    """A ``tests.studies._worker`` process running ``n`` fake plan items of study ``test``."""
    return _start("tests.studies._worker", storage, str(n), str(sleep), str(log), *extra)


def start_sweep_worker(study: str, storage: str, log: Path, sleep: float, *extra: str) -> subprocess.Popen:
    """A sweep worker process (this module run by :func:`sweep_worker_main`) on ``study``."""
    return _start("tests.studies.helpers", study, storage, str(log), str(sleep), *extra)


def complete_items(storage: str, n: int) -> dict[str, list]:
    """item -> its COMPLETE trials, of the plan study ``test`` of ``n`` items."""
    engine = Engine(storage, "test", [f"item{k}" for k in range(n)])
    by_item: dict[str, list] = {}
    for t in engine.study.get_trials(states=(TrialState.COMPLETE,)):
        by_item.setdefault(t.params["item"], []).append(t)
    return by_item


def complete_by_slot(study_path: Path, storage: str) -> dict[int, list]:
    """slot -> its COMPLETE trials, of the sweep study in ``study_path``."""
    from lfubench.studies.engine import make_storage
    from lfubench.studies.sweepfile import load_study

    stored = optuna.load_study(study_name=load_study(study_path).name, storage=make_storage(storage))
    out: dict[int, list] = {}
    for t in stored.get_trials(states=(TrialState.COMPLETE,)):
        out.setdefault(t.user_attrs["slot"], []).append(t)
    return out


def sweep_worker_main() -> None:
    """One sweep worker: ``STUDY STORAGE LOG SLEEP [fail2]`` from the command line; each trial logs
    ``start NUMBER SLOT`` to LOG, sleeps, and returns the fake record (slot 2 fails with ``fail2``)."""
    from lfubench.studies.sweep import Sweep
    from lfubench.studies.sweepfile import load_study

    study_path, storage, log_path, sleep = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])

    def evaluate(spec, trial):
        with open(log_path, "a") as f:
            f.write(f"start {trial.number} {trial.user_attrs.get('slot')}\n")
        time.sleep(sleep)
        if "fail2" in sys.argv and trial.user_attrs.get("slot") == 2:
            raise RuntimeError("planted failure: loss is NaN at step 3")
        return fake_record(spec)

    sweep = Sweep(load_study(study_path), storage, EngineConfig(heartbeat_s=0.2, grace_s=1.5))
    print(sweep.run(evaluate))


if __name__ == "__main__":
    sweep_worker_main()
