"""The run engine: resumption after a killed worker, several workers, recorded failures."""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest
from optuna.trial import TrialState

from lfubench.studies.engine import Engine

from .helpers import complete_items, fake_record, start_plan_worker, write_study


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_two_workers_finish_every_item_exactly_once(tmp_path, kind):
    storage = f"sqlite:///{tmp_path}/s.db" if kind == "sqlite" else f"journal:{tmp_path}/s.log"
    log = tmp_path / "runs.log"
    Engine(storage, "test", [f"item{k}" for k in range(8)]).sync()  # create the study once
    workers = [start_plan_worker(storage, 8, 0.5, log) for _ in range(2)]
    outs = [w.communicate(timeout=120)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outs
    starts = Counter(line.split()[1] for line in log.read_text().splitlines() if line.startswith("start"))
    assert starts == Counter({f"item{k}": 1 for k in range(8)})
    done = complete_items(storage, 8)
    assert sorted(done) == [f"item{k}" for k in range(8)]
    assert all(len(v) == 1 for v in done.values())
    assert sum("'complete': " in o for o in outs) == 2
    # both workers took part
    assert all("'complete': 0" not in o for o in outs), outs


def test_killed_worker_loses_only_its_running_item(tmp_path):
    storage = f"sqlite:///{tmp_path}/s.db"
    log = tmp_path / "runs.log"
    worker = start_plan_worker(storage, 6, 0.6, log)
    deadline = time.time() + 60
    while time.time() < deadline:  # kill it while item2 is running
        if log.exists() and "start item2" in log.read_text():
            break
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    before = {k: v[0].user_attrs["finished_at"] for k, v in complete_items(storage, 6).items()}
    assert sorted(before) == ["item0", "item1"]
    time.sleep(2.0)  # past the grace period: the killed worker's trial is stale
    rerun = start_plan_worker(storage, 6, 0.05, log)
    assert rerun.communicate(timeout=120)[0].strip() == "{'complete': 4, 'failed': 0}"
    after = complete_items(storage, 6)
    assert sorted(after) == [f"item{k}" for k in range(6)]
    assert all(len(v) == 1 for v in after.values())  # no item done twice
    assert {k: after[k][0].user_attrs["finished_at"] for k in before} == before  # finished rows unchanged
    engine = Engine(storage, "test", [f"item{k}" for k in range(6)])
    lost = [t for t in engine.study.get_trials(states=(TrialState.FAIL,))]
    assert [t.params["item"] for t in lost] == ["item2"]
    assert lost[0].user_attrs["fail_reason"].startswith("worker lost: no heartbeat for")
    # a third run has nothing left to do
    third = start_plan_worker(storage, 6, 0.05, log)
    assert third.communicate(timeout=60)[0].strip() == "{'complete': 0, 'failed': 0}"


def test_failing_item_is_recorded_and_the_rest_complete(tmp_path):
    storage = f"sqlite:///{tmp_path}/s.db"
    worker = start_plan_worker(storage, 5, 0.0, tmp_path / "runs.log", "fail3")
    assert worker.communicate(timeout=60)[0].strip() == "{'complete': 4, 'failed': 1}"
    engine = Engine(storage, "test", [f"item{k}" for k in range(5)])
    assert engine.status() == {"item0": "complete", "item1": "complete", "item2": "complete",
                               "item3": "failed", "item4": "complete"}
    failed = engine.study.get_trials(states=(TrialState.FAIL,))
    reason = failed[0].user_attrs["fail_reason"]
    assert reason == "RuntimeError: planted failure: unreadable case volume-3.nii"


def test_bad_storages_are_one_clear_line(tmp_path):
    """A wrong URL or an unreachable server names the storage (password hidden) and the cause."""
    from lfubench.bench.errors import LfubenchError
    from lfubench.studies.engine import make_storage

    with pytest.raises(LfubenchError, match=r"storage notaurl: not a database URL"):
        make_storage("notaurl")
    with pytest.raises(LfubenchError, match=r"storage postgresql://u:\*\*\*@127.0.0.1:1/x: cannot connect"):
        make_storage("postgresql://u:secret@127.0.0.1:1/x")


def _open_storage(url: str, queue) -> None:
    from lfubench.studies.engine import make_storage

    try:
        make_storage(url)
        queue.put("ok")
    except Exception as err:  # reported to the test, which names it
        queue.put(f"{type(err).__name__}: {err}")


def test_workers_starting_together_on_a_new_sqlite_file_all_open_it(tmp_path):
    """SQLite reports the table-creation race as 'table ... already exists'; creation is locked."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    for k in range(4):
        url = f"sqlite:///{tmp_path}/s{k}.db"
        queue = ctx.Queue()
        procs = [ctx.Process(target=_open_storage, args=(url, queue)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        assert [queue.get(timeout=5) for _ in procs] == ["ok"] * 4


def test_a_worker_whose_item_was_taken_as_lost_drops_its_result_and_goes_on(tmp_path, caplog):
    """Another worker takes the running item as lost (its grace is 0 here): the first worker's
    result is not stored on the failed trial, it says so in one line and runs what is left."""
    import logging

    from lfubench.studies.engine import EngineConfig

    storage, items = f"sqlite:///{tmp_path}/s.db", ["item0", "item1"]
    engine = Engine(storage, "test", items, EngineConfig(heartbeat_s=0.05, grace_s=30))
    other = Engine(storage, "test", items, EngineConfig(grace_s=0.0))
    calls = []

    def run_item(item):
        calls.append(item)
        if len(calls) == 1:
            time.sleep(0.1)
            assert other.sync() == ["item0"]  # taken as lost and enqueued again
        return {"value": 0.5, "finished_at": time.time()}

    with caplog.at_level(logging.WARNING, "lfubench.studies"):
        assert engine.run(run_item) == {"complete": 2, "failed": 0}
    assert calls == ["item0", "item1", "item0"]
    trials = engine.study.get_trials()
    assert [(t.params["item"], t.state) for t in trials] == [
        ("item0", TrialState.FAIL), ("item1", TrialState.COMPLETE), ("item0", TrialState.COMPLETE)]
    assert trials[0].user_attrs["fail_reason"].startswith("worker lost: no heartbeat for")
    assert "finished_at" not in trials[0].user_attrs  # the dropped result was not written
    assert [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()] == [
        "item item0: trial 0 was taken as lost by another worker while it ran here; this result is dropped "
        "(the retry stores its own)"]


def test_a_sweep_worker_whose_trial_was_taken_as_lost_drops_its_result_and_goes_on(tmp_path, caplog):
    import logging

    from lfubench.studies.engine import EngineConfig
    from lfubench.studies.sweep import Sweep
    from lfubench.studies.sweepfile import load_study

    study, storage = load_study(write_study(tmp_path, n_trials=2)), f"sqlite:///{tmp_path}/s.db"
    sweep = Sweep(study, storage, EngineConfig(heartbeat_s=0.05, grace_s=30))
    other = Sweep(study, storage, EngineConfig(grace_s=0.0))
    calls = []

    def evaluate(spec, trial):
        calls.append(trial.number)
        if len(calls) == 1:
            time.sleep(0.1)
            assert other.sync() == [0]  # taken as lost, its slot enqueued again
        return fake_record(spec)

    with caplog.at_level(logging.WARNING, "lfubench.studies"):
        assert sweep.run(evaluate) == {"complete": 2, "failed": 0, "pruned": 0}
    assert calls == [0, 1, 2]
    lost, *done = sweep.study.get_trials()
    assert lost.state == TrialState.FAIL and lost.user_attrs["lost"] is True
    assert "metrics" not in lost.user_attrs and "objectives" not in lost.user_attrs
    assert [t.state for t in done] == [TrialState.COMPLETE] * 2
    assert sorted(t.user_attrs["slot"] for t in done) == [0, 1] and done[1].params == lost.params
    assert [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()] == [
        "trial 0 was taken as lost by another worker while it ran here; this result is dropped "
        "(the retry stores its own)"]
