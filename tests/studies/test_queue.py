"""The job queue (:mod:`studies.queue`): pinned against the installed Optuna, the one home of
Optuna's internals, a heartbeat that outlives transient storage errors, and storage calls that
ride out a lost connection within a bounded wait."""

from __future__ import annotations

import ast
import logging
import time
import warnings
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from lfubench.studies import queue
from lfubench.studies.queue import Heartbeat, Queue, StorageUnavailable, make_storage

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["models", "bench", "studies", "reports", "lfubench", "tests", "benchmarks", "noxfile.py"]


# --- pinned: what the queue still needs below Optuna's public surface ---------------------------


def test_the_exact_hypervolume_the_queue_borrows_from_optuna():
    """``optuna._hypervolume.compute_hypervolume`` (no public name): exact volumes by hand."""
    import numpy as np
    from optuna._hypervolume import compute_hypervolume  # noqa: F401  (the module and name exist)

    # two points in 2D: 2 x 1 + 1 x 2 - their 1 x 1 overlap
    assert queue.hypervolume(np.array([[1.0, 2.0], [2.0, 1.0]]), np.array([3.0, 3.0])) == pytest.approx(3.0)
    # one point in 3D: a box; a dominated point adds nothing
    pts = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    assert queue.hypervolume(pts, np.array([1.0, 2.0, 3.0])) == pytest.approx(6.0)


def test_get_storage_wraps_an_rdb_storage_in_optunas_trial_cache(tmp_path):
    """``optuna.storages.get_storage`` (public name, documented as internal) gives the cached
    storage ``create_study`` would use; the queue wraps it to retry calls."""
    rdb = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/s.db")
    cached = optuna.storages.get_storage(rdb)
    assert isinstance(cached, optuna.storages.BaseStorage) and cached is not rdb
    sid = cached.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "s")
    assert rdb.get_study_id_from_name("s") == sid
    storage = make_storage(f"sqlite:///{tmp_path}/t.db")
    assert isinstance(storage, queue.RetryingStorage) and isinstance(storage, optuna.storages.BaseStorage)
    # every abstract method of Optuna's storage interface is delegated (the class can be made)
    abstract = {n for n in queue.STORAGE_METHODS if getattr(getattr(optuna.storages.BaseStorage, n),
                                                            "__isabstractmethod__", False)}
    assert abstract and not queue.RetryingStorage.__abstractmethods__
    used = {"set_trial_state_values", "set_trial_user_attr", "get_all_trials", "create_new_trial",
            "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id"}
    assert used <= set(queue.STORAGE_METHODS)


def test_optunas_storage_keeps_the_rules_the_queue_relies_on(tmp_path):
    """Claiming, finishing elsewhere and lost connections as the queue expects them."""
    q = Queue(f"sqlite:///{tmp_path}/s.db", "s")
    q.enqueue({"item": "a"}, {"item": "a"})
    waiting = q.trials((TrialState.WAITING,))
    assert [t.user_attrs["item"] for t in waiting] == ["a"]
    # a WAITING trial is claimed once: a second claim is refused (False), not an error
    assert q.claim(waiting[0]) is True
    assert q.claim(waiting[0]) is False
    # optuna.Trial(study, trial_id) makes the live trial of a claimed one, with its fixed parameter
    trial = q.live(waiting[0].number)
    assert isinstance(trial, optuna.Trial) and trial.suggest_categorical("item", ["a", "b"]) == "a"
    assert q.get(trial.number).user_attrs[queue.WORKER].endswith(f":{__import__('os').getpid()}")
    # a trial finished elsewhere refuses writes with UpdateFinishedTrialError ...
    assert q.drop(trial.number, "worker lost: test", **{queue.LOST: True})
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        q.storage.set_trial_user_attr(q.trial_id(trial.number), queue.HEARTBEAT, 1.0)
    # ... and the queue's finish reports it instead of writing twice
    assert q.finish(trial, 1.0) is False
    stored = q.get(trial.number)
    assert stored.state == TrialState.FAIL and stored.user_attrs[queue.FAIL_REASON] == "worker lost: test"
    # Optuna wraps a database error in StorageInternalError raised from SQLAlchemy's error
    rdb = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/s.db")
    with sqlalchemy.create_engine(f"sqlite:///{tmp_path}/s.db").begin() as conn:
        conn.execute(sqlalchemy.text("DROP TABLE trial_user_attributes"))
    with pytest.raises(optuna.exceptions.StorageInternalError) as err:
        rdb.set_trial_user_attr(q.trial_id(0), "x", 1)
    assert isinstance(err.value.__cause__, sqlalchemy.exc.OperationalError)


def test_a_claimed_trial_draws_from_the_trials_stored_now(tmp_path):
    """``Queue.live`` puts each claimed trial on a study object of its own, so a sampler does not
    draw from trials a study object cached before (Optuna caches them per thread until a tell)."""
    url = f"sqlite:///{tmp_path}/s.db"
    q = Queue(url, "s")
    seen = []

    class Spy(optuna.samplers.RandomSampler):
        def sample_independent(self, study, trial, name, distribution):
            seen.append(len(study.get_trials(deepcopy=False)))
            return super().sample_independent(study, trial, name, distribution)

    q.enqueue({}, {})
    first = q.trials((TrialState.WAITING,))[0]
    assert q.claim(first)
    q.live(first.number, Spy()).suggest_float("x", 0, 1)
    other = Queue(url, "s")  # another worker adds a trial meanwhile
    other.enqueue({}, {})
    second = q.trials((TrialState.WAITING,))[0]
    assert q.claim(second)
    q.live(second.number, Spy()).suggest_float("x", 0, 1)
    assert seen == [1, 2]


def _optuna_private_names() -> set[str]:
    """Private attributes of Optuna's study, trial and storage objects (from live objects)."""
    warnings.simplefilter("ignore")
    study = optuna.create_study(storage=optuna.storages.RDBStorage("sqlite:///:memory:"))
    trial = study.ask()
    study.tell(trial, 1.0)
    names = set()
    for obj in (study, trial, study.trials[0], study._storage, study._storage._backend,
                optuna.storages.JournalStorage, optuna.storages.InMemoryStorage()):
        names |= {n for n in [*dir(obj), *getattr(obj, "__dict__", {})]
                  if n.startswith("_") and not n.startswith("__")}
    return names - {"_abc_impl"}


def _violations(source: str, name: str, private: set[str]) -> list[str]:
    """Where ``source`` (the text of file ``name``) reaches into Optuna's internals."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        where = f"{name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "optuna":
            if any(part.startswith("_") for part in node.module.split(".")) or any(
                    a.name.startswith("_") for a in node.names):
                found.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] == "optuna"
                      and any(p.startswith("_") for p in a.name.split("."))]
        elif isinstance(node, ast.Attribute):
            if node.attr in ("system_attrs", "set_trial_system_attr", "get_trial_system_attrs",
                             "set_system_attr"):
                found.append(f"{where}: .{node.attr}")
            elif node.attr in private and not (isinstance(node.value, ast.Name)
                                               and node.value.id in ("self", "cls")):
                found.append(f"{where}: .{node.attr}")
            elif node.attr.startswith("_") and not node.attr.startswith("__"):
                root = node.value
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id == "optuna":
                    found.append(f"{where}: optuna...{node.attr}")
    return found


def test_no_module_but_the_queue_touches_optuna_internals():
    private = _optuna_private_names()
    assert {"_trial_id", "_study_id", "_thread_local", "_storage"} <= private
    skip = {ROOT / "studies" / "queue.py", Path(__file__).resolve()}
    files = [p for name in SOURCES for p in ([ROOT / name] if name.endswith(".py") else
                                             sorted((ROOT / name).rglob("*.py")))
             if p.exists() and p.resolve() not in skip]
    assert len(files) > 50
    found = [v for p in files for v in _violations(p.read_text(), str(p.relative_to(ROOT)), private)]
    assert found == []

    # the scan sees each kind it looks for (a text with one of each)
    probe = ("import optuna._imports\nfrom optuna._hypervolume import x\nfrom optuna.storages import _rdb\n"
             "t._trial_id\nstudy._thread_local.x = 1\nt.system_attrs\noptuna._imports.y\nself._storage\n")
    found = _violations(probe, "probe.py", private)
    assert sorted(v.split(": ", 1)[1] for v in found) == sorted([
        "import optuna._imports", "from optuna._hypervolume import ...", "from optuna.storages import ...",
        "._trial_id", "._thread_local", ".system_attrs", "optuna..._imports"]), found


# --- the heartbeat ---------------------------------------------------------------------------------


class _Flaky:
    """A storage whose stamps fail on the calls numbered in ``fail`` (with ``error``)."""

    def __init__(self, fail: set[int], error: Exception) -> None:
        self.fail, self.error, self.calls = fail, error, []

    def set_trial_user_attr(self, trial_id, key, value) -> None:
        self.calls.append(value)
        if len(self.calls) in self.fail:
            raise self.error


def test_heartbeat_keeps_beating_through_transient_storage_errors(caplog):
    storage = _Flaky({2, 3}, optuna.exceptions.StorageInternalError("connection lost"))
    with caplog.at_level(logging.WARNING, "lfubench.studies.queue"):
        with Heartbeat(storage, 7, 0.02, "item x") as hb:
            time.sleep(0.5)
    assert len(storage.calls) >= 8  # the stamps went on after the two failures
    assert not hb.taken
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("item x: heartbeat not stored (StorageInternalError: connection lost)")
    assert "item x: heartbeat stored again" in messages and len(messages) == 2


def test_heartbeat_stops_when_the_trial_was_finished_elsewhere(caplog):
    storage = _Flaky({2}, optuna.exceptions.UpdateFinishedTrialError("finished"))
    with caplog.at_level(logging.DEBUG, "lfubench.studies.queue"):
        with Heartbeat(storage, 7, 0.02, "trial 3") as hb:
            time.sleep(0.3)
    assert len(storage.calls) == 2 and hb.taken
    assert "trial 3 was finished by another worker meanwhile" in caplog.text


# --- riding out a lost connection ------------------------------------------------------------------


def _lost() -> optuna.exceptions.StorageInternalError:
    """What Optuna raises when the server went away mid-call."""
    try:
        try:
            raise sqlalchemy.exc.OperationalError("UPDATE", {}, Exception("server closed the connection"))
        except sqlalchemy.exc.OperationalError as err:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from err
    except optuna.exceptions.StorageInternalError as err:
        return err


class _Down:
    """A storage method that fails ``n`` times with a lost connection, then answers 42."""

    def __init__(self, n: int, error: Exception | None = None) -> None:
        self.n, self.calls, self.error = n, 0, error

    def __call__(self, *args):
        self.calls += 1
        if self.calls <= self.n:
            raise self.error or _lost()
        return 42


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setattr(queue, "RETRY_FIRST_S", 0.01)
    monkeypatch.setattr(queue, "RETRY_CAP_S", 0.05)
    monkeypatch.setattr(queue, "RETRY_WAIT_S", 0.5)


def test_a_call_that_lost_its_connection_is_retried_until_it_answers(quick, caplog):
    call = _Down(3)
    with caplog.at_level(logging.WARNING, "lfubench.studies.queue"):
        assert queue.retry(call, 1, shown="postgresql://u:***@h/db") == 42
    assert call.calls == 4
    text = caplog.text
    assert "storage postgresql://u:***@h/db: connection lost (server closed the connection)" in text
    assert "reconnected after" in text


def test_other_errors_are_not_retried(quick):
    for error in (ValueError("bad value"), sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("dup")),
                  optuna.exceptions.UpdateFinishedTrialError("finished")):
        call = _Down(1, error)
        with pytest.raises(type(error)):
            queue.retry(call)
        assert call.calls == 1


def test_a_storage_down_longer_than_the_bound_is_one_line_with_the_password_hidden(quick):
    storage = queue.RetryingStorage(optuna.storages.InMemoryStorage(), queue.masked_url("postgresql://u:pw@h/db"))
    storage.inner = type("Down", (), {"get_all_studies": _Down(10 ** 6)})()
    t0 = time.monotonic()
    with pytest.raises(StorageUnavailable) as err:
        storage.get_all_studies()
    assert time.monotonic() - t0 < 1.5  # the bound holds
    message = str(err.value)
    assert message.startswith("storage postgresql://u:***@h/db: unreachable for 0 s "
                              "(server closed the connection)")
    assert "pw" not in message and len(message.splitlines()) == 1


# --- the worker loop that plan items and sweeps share ----------------------------------------------


class _Config:
    heartbeat_s, grace_s = 0.0, 7.0


class _Trial:
    def __init__(self, number: int) -> None:
        self.number = number


class _Worker(queue.Worker):
    """Trials 0..2 in turn; while trial 2 runs elsewhere, the first two claims find nothing."""

    def __init__(self) -> None:
        self.config, self.claims, self.synced, self.notes = _Config(), [[0], [1], [], [], [2]], 0, []
        self.queue = self  # wait_note below stands in for Queue.wait_note

    def sync(self) -> list:
        self.synced += 1
        return []

    def _claim(self):
        numbers = self.claims.pop(0) if self.claims else []
        return _Trial(numbers[0]) if numbers else None

    def _running_elsewhere(self) -> list:
        return [_Trial(2)] if self.claims else []

    def _waiting_label(self, trial) -> str:
        return f"slot {trial.number}"

    def _running_label(self, trial) -> str:
        return f"unit {trial.number}"

    def wait_note(self, running, what, grace_s) -> str:
        self.notes.append([what(t) for t in running])
        return "waiting"


def test_the_worker_loop_counts_outcomes_waits_for_trials_running_elsewhere_and_stops(caplog):
    worker = _Worker()
    outcomes = {0: "complete", 1: "lost", 2: "failed"}
    with caplog.at_level(logging.INFO, __name__):
        counts = worker._work(lambda t: outcomes[t.number], {"complete": 0, "failed": 0})
    assert counts == {"complete": 1, "failed": 1}  # "lost" is not a count of its own
    assert worker.synced == 2 and worker.notes == [["slot 2"]]  # two waits, logged once
    assert [r.name for r in caplog.records] == [__name__]  # under the worker's own module

    assert _Worker()._work(lambda t: "complete", {"complete": 0}, max_runs=1) == {"complete": 1}
    assert _Worker()._work(lambda t: "complete", {"complete": 0}, until=lambda: True) == {"complete": 0}


def test_a_worker_cut_off_from_its_storage_names_the_trial_it_leaves_running():
    def cut_off(trial):
        raise StorageUnavailable("storage x: unreachable for 30 s")

    with pytest.raises(StorageUnavailable) as info:
        _Worker()._work(cut_off, {})
    assert str(info.value) == ("storage x: unreachable for 30 s; unit 0 is left running: a later run "
                               "retries it once its heartbeat is 7 s old")
