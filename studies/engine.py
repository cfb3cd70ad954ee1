"""The run engine: plan items as trials of an Optuna study in a shared storage.

Every plan item is enqueued once as a trial with the fixed parameter ``item`` (its id).
Workers -- processes on one machine or on several sharing a storage -- claim waiting
trials atomically through the storage, run them and store every figure on the trial. This gives
resumption, failure records and multi-machine work from Optuna's storages instead of a home-made
queue; the study is driven through the job queue (:mod:`studies.queue`).

- Storage: ``sqlite:///path`` (default, a file in the run folder), ``journal:path`` (a
  journal file for several local processes, over NFS too) or any SQLAlchemy URL Optuna
  accepts (``postgresql://...``) for several machines. A database outage of a few seconds is
  ridden out (reconnect and retry); a longer one stops the worker with one line, its trial left
  RUNNING to be retried.
- Heartbeat: a running worker stamps its trial's ``heartbeat`` user attribute every
  ``heartbeat_s`` seconds. A RUNNING trial whose last stamp is older than ``grace_s`` is taken
  as lost (the worker was killed): it is marked FAIL with that reason and its item enqueued
  again, so another run retries it. The same mechanism serves every storage kind. A worker whose
  trial was taken as lost meanwhile drops its result (the retry stores it) and goes on.
- Failure: an exception inside an item marks the trial FAIL with the reason in the
  ``fail_reason`` user attribute; the worker goes on with the next item. An item is
  retried on a later run while it has failed fewer than ``max_failures`` times.
- Re-running skips items with a COMPLETE trial, and waits for items running elsewhere until they
  finish or their heartbeat goes stale (then runs them itself).

Sweeps (:mod:`studies.sweep`) share the queue and the record stored on a trial
(:func:`store_record`), so a sweep trial and a plan item are alike in the storage.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from lfubench.reports.record import ItemRecord

from .queue import (
    FAIL_REASON,
    ITEM,
    Queue,
    StorageUnavailable,
    Worker,
    fail_reason,
    make_storage,
    state_name,
)

__all__ = ["Engine", "EngineConfig", "fail_reason", "make_storage", "store_record"]

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)

PARAM = ITEM  # the fixed parameter of a plan item's trial: its id


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


class Engine(Worker):
    """Runs the items of one study; ``run_item(item_id) -> dict`` does one item's work and
    returns its figures (JSON-able values), stored as the trial's user attributes; the
    ``value`` key, if present, becomes the trial's objective value."""

    def __init__(self, storage_url: str, study_name: str, item_ids: Sequence[str],
                 config: EngineConfig | None = None) -> None:
        self.queue = Queue(storage_url, study_name, directions=["maximize"])
        self.storage, self.study = self.queue.storage, self.queue.study
        self.item_ids = list(item_ids)
        self.config = config or EngineConfig()

    # -- queue --------------------------------------------------------------------------
    def _trials(self, states=None):
        return [t for t in self.queue.trials(states) if self._item_of(t) is not None]

    @staticmethod
    def _item_of(t) -> str | None:
        return t.params.get(PARAM) or t.user_attrs.get(PARAM)

    def reclaim_stale(self) -> list[str]:
        """Mark RUNNING trials without a recent heartbeat as FAIL; return their items."""
        lost = []
        for t, reason in self.queue.fail_lost(self._trials((TrialState.RUNNING,)), self.config.grace_s):
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
            self.queue.enqueue({PARAM: item}, {PARAM: item})
            added.append(item)
        return added

    def _claim(self) -> optuna.Trial | None:
        for t in self._trials((TrialState.WAITING,)):
            if not self.queue.claim(t):
                continue
            trial = self.queue.live(t.number)
            item = trial.suggest_categorical(PARAM, self.item_ids)
            done = [o for o in self._trials((TrialState.COMPLETE, TrialState.RUNNING))
                    if self._item_of(o) == item and o.number != trial.number]
            if any(o.state == TrialState.COMPLETE or o.number < trial.number for o in done):
                # enqueued twice by two workers starting together: the older trial does it
                self.queue.drop(t.number, "duplicate of an earlier trial")
                continue
            return trial
        return None

    def _running_elsewhere(self) -> list:
        items = set(self.item_ids)
        return [t for t in self._trials((TrialState.RUNNING,)) if self._item_of(t) in items]

    def _waiting_label(self, trial) -> str:
        return f"item {self._item_of(trial)}"

    def _running_label(self, trial: optuna.Trial) -> str:
        return f"item {trial.params[PARAM]} (trial {trial.number})"

    # -- work ---------------------------------------------------------------------------
    def run(self, run_item: Callable[[str], dict], max_items: int | None = None) -> dict:
        """Work until no item is left (or ``max_items`` were run); return counts by outcome.

        Items running in other workers are waited for until they finish, or until their
        heartbeat is stale, when they are run here. A storage unreachable for longer than the
        queue's retry bound stops the worker (:class:`StorageUnavailable`, one line); its item
        stays RUNNING and is retried by the next run once its heartbeat is stale."""
        self.sync()
        return self._work(lambda trial: self._run_one(trial, run_item), {"complete": 0, "failed": 0},
                          max_items)

    def _run_one(self, trial: optuna.Trial, run_item: Callable[[str], dict]) -> str:
        """Run one claimed item: ``complete``, ``failed``, or ``lost`` when another worker took
        the trial as lost meanwhile (its result is dropped: the retry stores it)."""
        item = trial.params[PARAM]
        tid = self.queue.trial_id(trial.number)
        started = time.perf_counter()
        try:
            with self.queue.heartbeat(trial.number, self.config.heartbeat_s, f"item {item}"):
                figures = run_item(item)
        except StorageUnavailable:
            raise
        except Exception as err:  # recorded, and the worker goes on
            reason = fail_reason(err)
            log.error("item %s failed: %s", item, reason)
            log.debug("%s", traceback.format_exc())
            if self.queue.finish(trial, state=TrialState.FAIL, reason=reason):
                return "failed"
            return self._taken(item, trial)
        try:
            if self.queue.get(trial.number).state.is_finished():
                return self._taken(item, trial)
            stored = store_record(self.storage, tid, figures, time.perf_counter() - started)
            if self.queue.finish(trial, float(stored.get("value", float("nan")))):
                return "complete"
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
        return self._taken(item, trial)

    @staticmethod
    def _taken(item: str, trial: optuna.Trial) -> str:
        log.warning("item %s: trial %d was taken as lost by another worker while it ran here; this "
                    "result is dropped (the retry stores its own)", item, trial.number)
        return "lost"

    def status(self) -> dict[str, str]:
        """The latest state of every plan item: complete, running, waiting, failed or pending."""
        latest: dict[str, optuna.trial.FrozenTrial] = {}
        for t in self._trials():
            item = self._item_of(t)
            if item not in latest or t.state == TrialState.COMPLETE or (
                latest[item].state != TrialState.COMPLETE and t.number > latest[item].number):
                latest[item] = t
        return {i: state_name(latest[i]) if i in latest else "pending" for i in self.item_ids}

    def fail_reason(self, item_id: str) -> str:
        """The recorded reason of the item's latest failed trial ("" if none)."""
        failed = [t for t in self._trials((TrialState.FAIL,)) if self._item_of(t) == item_id]
        return failed[-1].user_attrs.get(FAIL_REASON, "") if failed else ""

    def completed(self) -> list[optuna.trial.FrozenTrial]:
        """The COMPLETE trials of plan items, one per item."""
        return [t for t in self._trials((TrialState.COMPLETE,)) if self._item_of(t) in set(self.item_ids)]
