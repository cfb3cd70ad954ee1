"""The run engine: plan items as trials of an Optuna study in a shared storage.

Every plan item is enqueued once as a trial with the fixed parameter ``item`` (its id).
Workers -- processes on one machine or on several sharing a storage -- claim waiting
trials atomically through the storage (``set_trial_state_values(..., RUNNING)`` succeeds for
one claimant only), run them and store every figure on the trial. This gives resumption,
failure records and multi-machine work from Optuna's storages instead of a home-made queue.

- Storage: ``sqlite:///path`` (default, a file in the run folder), ``journal:path`` (a
  journal file for several local processes, over NFS too) or any SQLAlchemy URL Optuna
  accepts (``postgresql://...``) for several machines.
- Heartbeat: a running worker stamps its trial's ``heartbeat`` user attribute every
  ``heartbeat_s`` seconds. A RUNNING trial whose last stamp is older than ``grace_s`` is taken
  as lost (the worker was killed): it is marked FAIL with that reason and its item enqueued
  again, so another run retries it. The same mechanism serves every storage kind.
- Failure: an exception inside an item marks the trial FAIL with the reason in the
  ``fail_reason`` user attribute; the worker goes on with the next item. An item is
  retried on a later run while it has failed fewer than ``max_failures`` times.
- Re-running skips items with a COMPLETE trial.

Sweeps (:mod:`studies.sweep`) share the storage, the claim lock, the heartbeat
(:class:`Heartbeat`), the reclaiming of lost trials (:func:`fail_lost`) and the record stored on
a trial (:func:`store_record`), so a sweep trial and a plan item are alike in the storage.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
import sqlalchemy
from optuna.trial import TrialState

from lfubench.bench.errors import LfubenchError
from lfubench.reports.record import ItemRecord

from .run import masked_url

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)

PARAM = "item"


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage from ``sqlite:///file``, ``journal:file`` or any RDB URL."""
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url[len("journal:"):]))
    engine_kwargs = {"pool_pre_ping": True} if url.startswith("postgres") else None
    shown = masked_url(url)  # never print a password
    # local workers starting together on a new SQLite file create Optuna's tables one at a time
    # (SQLite reports the race as "table ... already exists"); a missing folder is reported below
    sqlite = url.startswith("sqlite:///") and Path(url[len("sqlite:///"):]).parent.is_dir()
    lock = claim_lock(url) if sqlite else contextlib.nullcontext
    try:
        for attempt in range(5):
            try:
                with lock():
                    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
                # workers (on several machines) starting together on an empty database race to
                # create Optuna's tables; the loser finds them made a moment later
                if attempt == 4:
                    raise
                time.sleep(0.5 * (attempt + 1))
    except ImportError as err:
        cause = err.__cause__ or err
        raise LfubenchError(f"storage {shown}: its database driver is not installed ({cause}); "
                            "for PostgreSQL: pip install 'lfubench[postgres]'") from None
    except sqlalchemy.exc.ArgumentError as err:
        raise LfubenchError(f"storage {shown}: not a database URL ({err})") from None
    except sqlalchemy.exc.OperationalError as err:
        first = str(err.orig if err.orig is not None else err).strip().splitlines()[0]
        raise LfubenchError(f"storage {shown}: cannot connect ({first})") from None


def claim_lock(url: str):
    """A lock around claiming a trial (and around creating the storage), for SQLite storages.

    Optuna's RDB storage checks "still WAITING?" and sets RUNNING in one transaction, which is
    atomic on PostgreSQL (``SELECT ... FOR UPDATE``) but not on SQLite, where two local workers
    can both read WAITING and both claim the trial. Workers on one SQLite file share a machine,
    so an exclusive lock on a file beside the database makes the claim atomic. Journal files
    serialise their operations themselves; other storages need no lock.
    """
    if not url.startswith("sqlite:///"):
        return contextlib.nullcontext
    path = Path(url[len("sqlite:///"):] + ".claim-lock")

    @contextlib.contextmanager
    def lock():
        with open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    return lock


def take_waiting(storage, trial_id: int, lock) -> bool:
    """Mark a WAITING trial RUNNING under ``lock`` (:func:`claim_lock`); False when another
    worker took it first."""
    try:
        with lock():
            return storage.set_trial_state_values(trial_id, TrialState.RUNNING)
    except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
        return False


def fail_reason(err: BaseException) -> str:
    """The one-line reason recorded on a failed trial."""
    return (f"{type(err).__name__}: {err}".splitlines() or [type(err).__name__])[0]


class Heartbeat:
    """While the ``with`` block runs, stamp the trial's ``heartbeat`` user attribute every
    ``interval_s`` seconds (and once on entry), so other workers can tell it is alive."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int, interval_s: float) -> None:
        self.storage, self.trial_id, self.interval_s = storage, trial_id, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())
            except Exception:  # the trial was finished or reclaimed meanwhile
                return

    def __enter__(self) -> Heartbeat:
        self.storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def fail_lost(storage: optuna.storages.BaseStorage, running: Sequence, grace_s: float) -> list:
    """Mark each of the ``running`` trials whose last heartbeat (or start) is older than
    ``grace_s`` as FAIL, with ``fail_reason`` and ``lost = True``; return ``(trial, reason)``
    for those this call marked (a trial another worker marked first is left out)."""
    now, lost = time.time(), []
    for t in running:
        started = t.datetime_start.timestamp() if t.datetime_start else now
        stamp = t.user_attrs.get("heartbeat") or started
        if now - stamp <= grace_s:
            continue
        reason = f"worker lost: no heartbeat for {now - stamp:.0f} s"
        try:
            storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
            storage.set_trial_user_attr(t._trial_id, "lost", True)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker got there first
        lost.append((t, reason))
    return lost


def store_record(storage: optuna.storages.BaseStorage, trial_id: int, record: ItemRecord | dict,
                 seconds: float) -> dict:
    """Store an item's record on its trial, one user attribute per field
    (:meth:`ItemRecord.to_attrs`, with ``item_seconds``; a plain dict: one per key), and return
    the attributes stored. Plan items and sweep trials store the same record."""
    if isinstance(record, ItemRecord):
        attrs = dataclasses.replace(record, item_seconds=seconds).to_attrs()
    else:
        attrs = {**record, "item_seconds": seconds}
    for key, value in attrs.items():
        storage.set_trial_user_attr(trial_id, key, json.loads(json.dumps(value)))
    return attrs


@dataclass
class EngineConfig:
    heartbeat_s: float = 10.0
    grace_s: float = 60.0
    max_failures: int = 2


class Engine:
    """Runs the items of one study; ``run_item(item_id) -> dict`` does one item's work and
    returns its figures (JSON-able values), stored as the trial's user attributes; the
    ``value`` key, if present, becomes the trial's objective value."""

    def __init__(self, storage_url: str, study_name: str, item_ids: Sequence[str],
                 config: EngineConfig | None = None) -> None:
        self.storage = make_storage(storage_url)
        self._claim_lock = claim_lock(storage_url)
        self.study = optuna.create_study(storage=self.storage, study_name=study_name,
                                         direction="maximize", load_if_exists=True)
        self.item_ids = list(item_ids)
        self.config = config or EngineConfig()

    # -- queue --------------------------------------------------------------------------
    def _trials(self, states=None):
        return [t for t in self.study.get_trials(deepcopy=False, states=states) if PARAM in t.params
                or "fixed_params" in t.system_attrs]

    @staticmethod
    def _item_of(t) -> str:
        return t.params.get(PARAM) or t.system_attrs.get("fixed_params", {}).get(PARAM)

    def reclaim_stale(self) -> list[str]:
        """Mark RUNNING trials without a recent heartbeat as FAIL; return their items."""
        lost = []
        for t, reason in fail_lost(self.storage, self._trials((TrialState.RUNNING,)), self.config.grace_s):
            log.warning("item %s: %s; it will be retried", self._item_of(t), reason)
            lost.append(self._item_of(t))
        return lost

    def sync(self) -> list[str]:
        """Enqueue every item that is not done, waiting or running; return those enqueued."""
        self.reclaim_stale()
        by_item: dict[str, list] = {}
        for t in self._trials():
            by_item.setdefault(self._item_of(t), []).append(t)
        added = []
        for item in self.item_ids:
            trials = by_item.get(item, [])
            states = [t.state for t in trials]
            if any(s in (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING) for s in states):
                continue
            if states.count(TrialState.FAIL) >= self.config.max_failures:
                log.warning("item %s failed %d times; not retried", item, states.count(TrialState.FAIL))
                continue
            self.study.enqueue_trial({PARAM: item}, user_attrs={PARAM: item})
            added.append(item)
        return added

    def _claim(self) -> optuna.Trial | None:
        for t in self._trials((TrialState.WAITING,)):
            if not take_waiting(self.storage, t._trial_id, self._claim_lock):
                continue
            trial = optuna.Trial(self.study, t._trial_id)
            item = trial.suggest_categorical(PARAM, self.item_ids)
            done = [o for o in self._trials((TrialState.COMPLETE, TrialState.RUNNING))
                    if self._item_of(o) == item and o.number != trial.number]
            if any(o.state == TrialState.COMPLETE or o.number < trial.number for o in done):
                # enqueued twice by two workers starting together: the older trial does it
                self.storage.set_trial_user_attr(t._trial_id, "fail_reason", "duplicate of an earlier trial")
                self.storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                continue
            return trial
        return None

    # -- work ---------------------------------------------------------------------------
    def run(self, run_item: Callable[[str], dict], max_items: int | None = None) -> dict:
        """Work until no item is left (or ``max_items`` were run); return counts by outcome."""
        self.sync()
        counts = {"complete": 0, "failed": 0}
        while max_items is None or counts["complete"] + counts["failed"] < max_items:
            trial = self._claim()
            if trial is None:
                break
            item = trial.params[PARAM]
            started = time.perf_counter()
            try:
                with Heartbeat(self.storage, trial._trial_id, self.config.heartbeat_s):
                    figures = run_item(item)
            except Exception as err:  # recorded, and the worker goes on
                reason = fail_reason(err)
                log.error("item %s failed: %s", item, reason)
                log.debug("%s", traceback.format_exc())
                self.storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
                self.study.tell(trial, state=TrialState.FAIL)
                counts["failed"] += 1
                continue
            stored = store_record(self.storage, trial._trial_id, figures, time.perf_counter() - started)
            self.study.tell(trial, float(stored.get("value", float("nan"))))
            counts["complete"] += 1
        return counts

    def status(self) -> dict[str, str]:
        """The latest state of every plan item: complete, running, waiting, failed or pending."""
        latest: dict[str, optuna.trial.FrozenTrial] = {}
        for t in self._trials():
            item = self._item_of(t)
            if item not in latest or t.state == TrialState.COMPLETE or (
                latest[item].state != TrialState.COMPLETE and t.number > latest[item].number):
                latest[item] = t
        names = {TrialState.COMPLETE: "complete", TrialState.RUNNING: "running",
                 TrialState.WAITING: "waiting", TrialState.FAIL: "failed"}
        return {i: names.get(latest[i].state, "other") if i in latest else "pending" for i in self.item_ids}

    def fail_reason(self, item_id: str) -> str:
        """The recorded reason of the item's latest failed trial ("" if none)."""
        failed = [t for t in self._trials((TrialState.FAIL,)) if self._item_of(t) == item_id]
        return failed[-1].user_attrs.get("fail_reason", "") if failed else ""

    def completed(self) -> list[optuna.trial.FrozenTrial]:
        """The COMPLETE trials of plan items, one per item."""
        return [t for t in self._trials((TrialState.COMPLETE,)) if self._item_of(t) in set(self.item_ids)]
