"""A PostgreSQL storage that goes away mid-study: workers of a plan (:class:`Engine`) and of a
sweep (:class:`Sweep`) on a real cluster, which the test stops (``pg_ctl stop -m fast``, as a
failover or a minor upgrade does) and starts again.

- An outage of a few seconds is ridden out: every item / slot is done exactly once, none fails.
- An outage longer than a worker's retry bound stops that worker with one line (no traceback);
  its trial stays RUNNING, and a run started right after waits for its heartbeat to go stale,
  then retries it: the study ends complete, not one trial short.

The workers are ``tests.studies._worker`` processes running fake work that sleeps; each logs to
its own file, and the test prints what the workers logged about the storage.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from optuna.trial import TrialState

from lfubench.studies.engine import Engine

from .helpers import ROOT, complete_by_slot, complete_items, write_study

pytestmark = pytest.mark.slow

OUTAGE_S = 3.0  # the server is down this long (plus its own stop and start)
N = 6  # plan items, or sweep slots


def _worker(kind: str, url: str, tmp_path: Path, tag: str, sleep: float, *opts: str) -> subprocess.Popen:
    runs = str(tmp_path / "runs.log")
    target = [url, str(N), str(sleep), runs] if kind == "plan" else ["sweep", str(tmp_path / "fake.toml"),
                                                                     url, str(sleep), runs]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tests.studies._worker", *target, *opts,
                             f"logfile={tmp_path / f'{tag}.log'}"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _runs(tmp_path: Path) -> list[str]:
    path = tmp_path / "runs.log"
    return path.read_text().splitlines() if path.exists() else []


def _wait_for(tmp_path: Path, started: int) -> None:
    """Wait until ``started`` runs have started."""
    deadline = time.time() + 120
    while time.time() < deadline and sum(r.startswith("start") for r in _runs(tmp_path)) < started:
        time.sleep(0.05)
    assert sum(r.startswith("start") for r in _runs(tmp_path)) >= started, _runs(tmp_path)


def _storage_lines(tmp_path: Path, *tags: str) -> list[str]:
    """What the workers logged about the storage and about waiting or lost trials."""
    keys = ("storage", "heartbeat", "waiting for", "worker lost", "taken as lost")
    lines = []
    for tag in tags:
        path = tmp_path / f"{tag}.log"
        if path.exists():
            lines += [f"[{tag}] {line}" for line in path.read_text().splitlines()
                      if any(k in line for k in keys)]
    return lines


def _done_once(kind: str, url: str, tmp_path: Path) -> dict:
    done = complete_items(url, N) if kind == "plan" else complete_by_slot(tmp_path / "fake.toml", url)
    expect = [f"item{k}" for k in range(N)] if kind == "plan" else list(range(N))
    assert sorted(done) == expect and all(len(v) == 1 for v in done.values()), done
    return done


def _queue(kind: str, url: str, tmp_path: Path):
    """The plan's :class:`Engine` or the sweep's :class:`Sweep` on ``url``."""
    if kind == "plan":
        return Engine(url, "test", [f"item{k}" for k in range(N)])
    from lfubench.studies.sweep import Sweep
    from lfubench.studies.sweepfile import load_study

    return Sweep(load_study(tmp_path / "fake.toml"), url)


def _trials(kind: str, url: str, tmp_path: Path) -> list:
    return _queue(kind, url, tmp_path).study.get_trials()


@pytest.mark.parametrize("outage", ["restart", "stop-start"])
@pytest.mark.parametrize("kind", ["plan", "sweep"])
def test_two_workers_ride_out_a_database_outage(postgres, tmp_path, kind, outage):
    """``restart``: ``pg_ctl restart -m fast``; ``stop-start``: the server stopped for ``OUTAGE_S``."""
    url = postgres.database(f"ride_{kind}_{outage.replace('-', '_')}")
    write_study(tmp_path, n_trials=N)
    _queue(kind, url, tmp_path).sync()  # enqueued once, before the workers start (as the command line does)
    # grace well above the outage: a live trial must not look lost to the other worker
    workers = [_worker(kind, url, tmp_path, f"w{k}", 0.5, "grace=20") for k in range(2)]
    _wait_for(tmp_path, 3)
    if outage == "restart":
        note = f"pg_ctl restart -m fast took {postgres.restart():.2f} s"
    else:
        t0 = time.monotonic()
        stopped = postgres.stop()
        time.sleep(OUTAGE_S)
        started = postgres.start()
        note = (f"server stopped in {stopped:.2f} s, down {time.monotonic() - t0:.2f} s in all, "
                f"started in {started:.2f} s")
    outs = [w.communicate(timeout=180) for w in workers]
    lines = _storage_lines(tmp_path, "w0", "w1")
    print(f"{kind}, {outage}: {note}")
    print("\n".join(lines))
    assert [w.returncode for w in workers] == [0, 0], outs
    assert all("Traceback" not in err for _, err in outs), outs
    # every item / slot ran once and is complete once; no trial failed or was lost
    starts = Counter(r.split()[1] if kind == "plan" else r.split()[2] for r in _runs(tmp_path)
                     if r.startswith("start"))
    assert sorted(starts.values()) == [1] * N, starts
    _done_once(kind, url, tmp_path)
    trials = _trials(kind, url, tmp_path)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * N, [(t.number, t.state) for t in trials]
    if outage == "stop-start":  # the outage was met, and ridden out by reconnecting
        assert any("connection lost" in line for line in lines), lines
        assert any("reconnected after" in line for line in lines), lines


@pytest.mark.parametrize("kind", ["plan", "sweep"])
def test_a_worker_cut_off_too_long_stops_in_one_line_and_a_rerun_retries_its_trial(postgres, tmp_path, kind):
    url = postgres.database(f"cut_{kind}")
    write_study(tmp_path, n_trials=N)
    worker = _worker(kind, url, tmp_path, "first", 4.0, "grace=3", "retry=2")
    _wait_for(tmp_path, 2)  # the second item / trial is running
    postgres.stop()
    out, err = worker.communicate(timeout=60)
    postgres.start()
    print(f"{kind}: the first worker's stderr: {err.strip()}")
    assert worker.returncode == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "unreachable for" in err and "is left running: a later run retries it" in err, err
    states = [t.state for t in _trials(kind, url, tmp_path)]
    assert states.count(TrialState.RUNNING) == 1 and states.count(TrialState.COMPLETE) == 1, states
    # a run started at once waits for the trial's heartbeat to go stale, then retries it
    t0 = time.monotonic()
    rerun = _worker(kind, url, tmp_path, "rerun", 0.1, "grace=15")
    out, err = rerun.communicate(timeout=120)
    took = time.monotonic() - t0
    lines = _storage_lines(tmp_path, "first", "rerun")
    print(f"{kind}: the re-run took {took:.1f} s")
    print("\n".join(lines))
    assert rerun.returncode == 0, (out, err)
    counts = ast.literal_eval(out.strip())  # the worker prints its counts
    assert counts["complete"] == N - 1 and counts["failed"] == 0, out
    assert any("waiting for 1 trial(s) running elsewhere" in line for line in lines), lines
    _done_once(kind, url, tmp_path)
    trials = _trials(kind, url, tmp_path)
    lost = [t for t in trials if t.state == TrialState.FAIL]
    assert len(lost) == 1 and lost[0].user_attrs["fail_reason"].startswith("worker lost: no heartbeat for")
    assert [t.state for t in trials].count(TrialState.COMPLETE) == N
