"""The job queue: an Optuna study in a shared storage, used as a queue of trials (:class:`Queue`).

Plan items (:mod:`studies.engine`) and sweep trials (:mod:`studies.sweep`) go through this one
module to open a study, enqueue, claim a waiting trial, stamp a running trial's heartbeat, fail
lost trials, finish a trial and read trials back. It is the only module that reaches below
Optuna's public surface; what it still needs there is pinned against the installed Optuna by
``tests/studies/test_queue.py``.

- **Storage** (:func:`make_storage`): ``sqlite:///path``, ``journal:path`` or any SQLAlchemy URL
  Optuna accepts (``postgresql://...``). On a database server the pool checks a connection before
  use (``pool_pre_ping``), so a restarted server is reconnected to; a storage call that fails for a
  lost connection is retried with exponential back-off (``RETRY_FIRST_S`` doubling up to
  ``RETRY_CAP_S``) for up to ``RETRY_WAIT_S`` seconds, after which :class:`StorageUnavailable`
  (one line) stops the worker: its trial stays RUNNING and is retried once its heartbeat is stale.
- **Claim** (:meth:`Queue.claim`): a WAITING trial is set RUNNING by one claimant only (the
  storage's own check on PostgreSQL and in journal files, a file lock on SQLite: :func:`claim_lock`).
- **Heartbeat** (:class:`Heartbeat`): a running trial's worker stamps ``HEARTBEAT`` every few
  seconds, through transient storage errors; a RUNNING trial whose stamp is older than the grace
  period is lost (:meth:`Queue.fail_lost`): marked FAIL with ``LOST`` and a reason, to be retried.
- **Finish** (:meth:`Queue.finish`): a trial finished elsewhere meanwhile (marked lost) is left
  as it is and reported as such, never written twice.
- **Work** (:class:`Worker`): the one worker loop of plan items and sweeps: claim, run, and wait
  for trials running elsewhere until they finish or are lost.

Trials are named by their number; the storage's trial ids are looked up through its public API.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Container, Sequence
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from lfubench.bench.errors import LfubenchError

from .run import masked_url

log = logging.getLogger(__name__)

# --- user attributes the queue writes on a trial ---------------------------------------------
ITEM = "item"  # the item id a trial runs (a plan item's fixed parameter, too)
SLOT = "slot"  # a sweep's budget slot
HEARTBEAT = "heartbeat"  # time.time() of the running worker's latest stamp
WORKER = "worker"  # host:pid of the worker that claimed the trial
FAIL_REASON = "fail_reason"  # the one-line reason of a FAIL trial
LOST = "lost"  # True: failed because its worker stopped stamping (the trial is retried)
DUPLICATE = "duplicate"  # True: failed at its claim, another trial does its slot
RETRY_OF = "retry_of"  # the number of the lost trial whose parameters this one retries

# --- riding out a lost database connection ------------------------------------------------------
RETRY_FIRST_S = 0.25  # first pause after a failed storage call; doubled after each failure ...
RETRY_CAP_S = 2.0  # ... up to this pause ...
RETRY_WAIT_S = 30.0  # ... while the call has failed for at most this long
CONNECT_TIMEOUT_S = 10  # a PostgreSQL connection attempt that hangs gives up after this long

_STATE_NAMES = {TrialState.COMPLETE: "complete", TrialState.RUNNING: "running", TrialState.WAITING: "waiting",
                TrialState.FAIL: "failed", TrialState.PRUNED: "pruned"}


class StorageUnavailable(LfubenchError):
    """The storage could not be reached for ``RETRY_WAIT_S`` seconds."""


def state_name(trial: FrozenTrial) -> str:
    """``complete``, ``running``, ``waiting``, ``failed`` or ``pruned``."""
    return _STATE_NAMES.get(trial.state, "other")


def fail_reason(err: BaseException) -> str:
    """The one-line reason recorded on a failed trial."""
    return (f"{type(err).__name__}: {err}".splitlines() or [type(err).__name__])[0]


# --- storage -----------------------------------------------------------------------------------


def _lost_connection(err: BaseException) -> bool:
    """Whether ``err`` (or what it was raised from) says the database connection was lost or
    could not be made: worth a retry. Optuna wraps SQLAlchemy errors in ``StorageInternalError``."""
    if isinstance(err, StorageUnavailable):
        return False
    seen: BaseException | None = err
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, sqlalchemy.exc.IntegrityError):
            return False
        if isinstance(seen, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
                             sqlalchemy.exc.DisconnectionError)):
            return True
        if isinstance(seen, sqlalchemy.exc.DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _cause_line(err: BaseException) -> str:
    while err.__cause__ is not None:
        err = err.__cause__
    if isinstance(err, sqlalchemy.exc.DBAPIError) and err.orig is not None:
        err = err.orig
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def retry(call: Callable, *args: Any, shown: str = "storage", **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, retried while it fails for a lost connection (for up to
    ``RETRY_WAIT_S`` seconds, pausing ``RETRY_FIRST_S`` doubling up to ``RETRY_CAP_S``); then
    :class:`StorageUnavailable`. Other errors pass through at once."""
    t0, pause, failed = time.monotonic(), RETRY_FIRST_S, False
    while True:
        try:
            out = call(*args, **kwargs)
        except Exception as err:
            if not _lost_connection(err):
                raise
            waited = time.monotonic() - t0
            if not failed:
                log.warning("storage %s: connection lost (%s); retrying for up to %g s", shown,
                            _cause_line(err), RETRY_WAIT_S)
                failed = True
            if waited + pause > RETRY_WAIT_S:
                raise StorageUnavailable(f"storage {shown}: unreachable for {waited:.0f} s "
                                         f"({_cause_line(err)})") from None
            time.sleep(pause)
            pause = min(2 * pause, RETRY_CAP_S)
            continue
        if failed:
            log.warning("storage %s: reconnected after %.1f s", shown, time.monotonic() - t0)
        return out


class _Retrying(optuna.storages.BaseStorage):
    """A storage whose every call rides out a lost connection (:func:`retry`)."""

    def __init__(self, inner: optuna.storages.BaseStorage, shown: str) -> None:
        self.inner, self.shown = inner, shown

    def __repr__(self) -> str:
        return f"storage {self.shown}"


def _retried(name: str):
    def method(self, *args, **kwargs):
        return retry(getattr(self.inner, name), *args, shown=self.shown, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method


# every public method of Optuna's storage interface, so a new one in a later Optuna is covered too
STORAGE_METHODS = sorted(n for n, v in vars(optuna.storages.BaseStorage).items()
                         if callable(v) and not n.startswith("_"))
RetryingStorage = type("RetryingStorage", (_Retrying,), {n: _retried(n) for n in STORAGE_METHODS})


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage from ``sqlite:///file``, ``journal:file`` or any RDB URL; an RDB storage
    keeps Optuna's cache of finished trials and retries calls over a lost connection."""
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url[len("journal:"):]))
    engine_kwargs = None
    if url.startswith("postgres"):
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    shown = masked_url(url)  # never print a password
    # local workers starting together on a new SQLite file create Optuna's tables one at a time
    # (SQLite reports the race as "table ... already exists"); a missing folder is reported below
    sqlite = url.startswith("sqlite:///") and Path(url[len("sqlite:///"):]).parent.is_dir()
    lock = claim_lock(url) if sqlite else contextlib.nullcontext
    try:
        for attempt in range(5):
            try:
                with lock():
                    rdb = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
                break
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
    # get_storage wraps an RDB storage in Optuna's cache of finished trials, as create_study would
    return RetryingStorage(optuna.storages.get_storage(rdb), shown)


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


# --- heartbeat ---------------------------------------------------------------------------------


class Heartbeat:
    """While the ``with`` block runs, stamp the trial's ``HEARTBEAT`` user attribute every
    ``interval_s`` seconds (and once on entry), so other workers can tell it is alive.

    A failed stamp is logged and tried again at the next beat (a storage outage must not make a
    live trial look lost); beating stops only when the trial was finished elsewhere meanwhile
    (``taken`` is then True)."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int, interval_s: float,
                 label: str = "") -> None:
        self.storage, self.trial_id, self.interval_s = storage, trial_id, interval_s
        self.label = label or f"trial id {trial_id}"
        self.taken = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _stamp(self) -> None:
        self.storage.set_trial_user_attr(self.trial_id, HEARTBEAT, time.time())

    def _beat(self) -> None:
        failing = False
        while not self._stop.wait(self.interval_s):
            try:
                self._stamp()
            except optuna.exceptions.UpdateFinishedTrialError:
                self.taken = True
                log.debug("%s was finished by another worker meanwhile (taken as lost); its heartbeat "
                          "stops", self.label)
                return
            except Exception as err:  # an outage: keep beating
                if not failing:
                    log.warning("%s: heartbeat not stored (%s); trying again every %g s", self.label,
                                fail_reason(err), self.interval_s)
                failing = True
                continue
            if failing:
                log.warning("%s: heartbeat stored again", self.label)
                failing = False

    def __enter__(self) -> Heartbeat:
        self._stamp()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# --- the queue ---------------------------------------------------------------------------------


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Queue:
    """One study in one storage, as a queue of trials.

    Args:
        storage_url: where the study lives (:func:`make_storage`).
        study_name: the study; created (with ``directions``, default one maximised objective)
            when the storage does not hold it.
        sampler, pruner: the study's, for the trials this process draws.
    """

    def __init__(self, storage_url: str, study_name: str, directions: Sequence | None = None,
                 sampler: optuna.samplers.BaseSampler | None = None,
                 pruner: optuna.pruners.BasePruner | None = None) -> None:
        self.url, self.shown = storage_url, masked_url(storage_url)
        self.storage = make_storage(storage_url)
        self.lock = claim_lock(storage_url)
        try:
            self.study = optuna.load_study(study_name=study_name, storage=self.storage, sampler=sampler,
                                           pruner=pruner)
        except KeyError:
            self.study = optuna.create_study(storage=self.storage, study_name=study_name, sampler=sampler,
                                             pruner=pruner, directions=list(directions or ["maximize"]),
                                             load_if_exists=True)
        self.study_id = self.storage.get_study_id_from_name(study_name)
        self._ids: dict[int, int] = {}

    # -- reading ------------------------------------------------------------------------
    def trials(self, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        """The study's trials (read only), optionally of some states."""
        return self.study.get_trials(deepcopy=False, states=states)

    def trial_id(self, number: int) -> int:
        """The storage's id of trial ``number``."""
        if number not in self._ids:
            self._ids[number] = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        return self._ids[number]

    def get(self, number: int) -> FrozenTrial:
        """Trial ``number`` as stored now."""
        return self.storage.get_trial(self.trial_id(number))

    # -- the queue ------------------------------------------------------------------------
    def enqueue(self, params: dict, attrs: dict) -> None:
        """A WAITING trial with fixed ``params`` (drawn by nobody) and user attributes ``attrs``."""
        self.study.enqueue_trial(params, user_attrs=attrs)

    def claim(self, trial: FrozenTrial) -> bool:
        """Mark a WAITING trial RUNNING (stamping ``WORKER``); False when another worker took it first."""
        tid = self.trial_id(trial.number)
        try:
            with self.lock():
                if not self.storage.set_trial_state_values(tid, TrialState.RUNNING):
                    return False
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            return False
        self.storage.set_trial_user_attr(tid, WORKER, _worker())
        return True

    def new_trial(self) -> int:
        """A new RUNNING trial, claimed by this worker; its number."""
        tid = self.storage.create_new_trial(self.study_id)
        number = self.storage.get_trial_number_from_id(tid)
        self._ids[number] = tid
        self.storage.set_trial_user_attr(tid, WORKER, _worker())
        return number

    def live(self, number: int, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Trial:
        """The claimed trial ``number`` to suggest parameters on and report to: on a study object of
        its own (with ``sampler``, or the study's), so its draws see the trials stored now."""
        study = optuna.load_study(study_name=self.study.study_name, storage=self.storage,
                                  sampler=sampler or self.study.sampler, pruner=self.study.pruner)
        return optuna.Trial(study, self.trial_id(number))

    def heartbeat(self, number: int, interval_s: float, label: str) -> Heartbeat:
        """A :class:`Heartbeat` for the running trial ``number``."""
        return Heartbeat(self.storage, self.trial_id(number), interval_s, label)

    def set_attrs(self, number: int, attrs: dict) -> None:
        """Store user attributes on a running trial (``UpdateFinishedTrialError`` if it is finished)."""
        tid = self.trial_id(number)
        for key, value in attrs.items():
            self.storage.set_trial_user_attr(tid, key, value)

    def drop(self, number: int, reason: str, **flags: Any) -> bool:
        """Mark trial ``number`` FAIL with ``FAIL_REASON`` (and the ``flags`` as user attributes),
        without the sampler hearing of it; False when it was finished meanwhile."""
        tid = self.trial_id(number)
        try:
            self.storage.set_trial_user_attr(tid, FAIL_REASON, reason)
            for key, value in flags.items():
                self.storage.set_trial_user_attr(tid, key, value)
            self.storage.set_trial_state_values(tid, TrialState.FAIL)
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            return False
        return True

    def finish(self, trial: optuna.Trial, values: float | Sequence[float] | None = None,
               state: TrialState | None = None, reason: str | None = None) -> bool:
        """Tell the study a running trial's outcome (``values``, or ``state`` FAIL / PRUNED; ``reason``
        as its ``FAIL_REASON``). False, and nothing written, when another worker finished it
        meanwhile (it took the trial as lost): the outcome is then dropped, not stored twice."""
        try:
            if self.get(trial.number).state.is_finished():
                return False
            if reason is not None:
                self.storage.set_trial_user_attr(self.trial_id(trial.number), FAIL_REASON, reason)
            trial.study.tell(trial, values, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        return True

    def fail_lost(self, running: Sequence[FrozenTrial], grace_s: float) -> list[tuple[FrozenTrial, str]]:
        """Mark each of the ``running`` trials whose last heartbeat (or start) is older than
        ``grace_s`` as FAIL, with ``FAIL_REASON`` and ``LOST``; return ``(trial, reason)`` for those
        this call marked (a trial another worker marked first is left out)."""
        now, lost = time.time(), []
        for t in running:
            started = t.datetime_start.timestamp() if t.datetime_start else now
            stamp = t.user_attrs.get(HEARTBEAT) or started
            if now - stamp <= grace_s:
                continue
            reason = f"worker lost: no heartbeat for {now - stamp:.0f} s"
            if self.drop(t.number, reason, **{LOST: True}):
                lost.append((t, reason))
        return lost

    def wait_note(self, running: Sequence[FrozenTrial], what: Callable[[FrozenTrial], str],
                  grace_s: float) -> str:
        """One line on the trials this worker waits for: each with its worker and heartbeat age."""
        now = time.time()
        parts = []
        for t in running:
            stamp = t.user_attrs.get(HEARTBEAT) or (t.datetime_start.timestamp() if t.datetime_start else now)
            parts.append(f"{what(t)} on {t.user_attrs.get(WORKER, 'another worker')}, heartbeat "
                         f"{now - stamp:.0f} s ago")
        return (f"waiting for {len(running)} trial(s) running elsewhere ({'; '.join(parts)}); each is "
                f"retried here if its heartbeat stops for {grace_s:g} s")


# --- the worker loop ----------------------------------------------------------------------------


class Worker:
    """The loop plan items (:class:`studies.engine.Engine`) and sweep slots (:class:`studies.sweep.Sweep`)
    share: claim a waiting trial and run it, until none is left; while trials run elsewhere, wait
    for them one heartbeat at a time and take lost ones back into the queue.

    A subclass holds ``queue`` (a :class:`Queue`) and ``config`` (``heartbeat_s``, ``grace_s``) and
    says what its trials are: :meth:`sync`, :meth:`_claim`, :meth:`_running_elsewhere`, and the
    names of a trial in log lines (:meth:`_waiting_label`, :meth:`_running_label`).
    """

    queue: Queue
    config: Any  # heartbeat_s, grace_s: a studies.engine.EngineConfig
    _waiting_on: frozenset[int] = frozenset()  # the trials last logged as waited for

    def sync(self) -> list:
        """Fail lost trials and enqueue the work that has no trial done, waiting or running."""
        raise NotImplementedError

    def _claim(self) -> optuna.Trial | None:
        """A waiting trial claimed by this worker, or None when none is left."""
        raise NotImplementedError

    def _running_elsewhere(self) -> list[FrozenTrial]:
        """This worker's trials RUNNING in other workers."""
        raise NotImplementedError

    def _waiting_label(self, trial: FrozenTrial) -> str:
        """A trial running elsewhere, as named in the line on waiting for it."""
        raise NotImplementedError

    def _running_label(self, trial: optuna.Trial) -> str:
        """A trial this worker runs, as named when the storage stops it."""
        raise NotImplementedError

    def _wait(self, running: list[FrozenTrial]) -> None:
        """Wait one heartbeat for trials running elsewhere (logged when the set changes), then
        take lost ones back into the queue."""
        numbers = frozenset(t.number for t in running)
        if numbers != self._waiting_on:
            note = self.queue.wait_note(running, self._waiting_label, self.config.grace_s)
            logging.getLogger(type(self).__module__).info("%s", note)  # logged as the subclass's module
            self._waiting_on = numbers
        time.sleep(self.config.heartbeat_s)
        self.sync()

    def _work(self, run_one: Callable[[optuna.Trial], str], counts: dict[str, int],
              max_runs: int | None = None, until: Callable[[], bool] | None = None) -> dict[str, int]:
        """Claim and ``run_one`` trials until none is left (or ``max_runs`` were run here, or
        ``until()`` is true), adding each outcome to ``counts`` (outcomes it lacks are not counted);
        return ``counts``. A storage unreachable past the retry bound stops the worker with one
        line (:class:`StorageUnavailable`) that names the trial left running."""
        ran = 0
        while max_runs is None or ran < max_runs:
            if until is not None and until():
                break
            trial = self._claim()
            if trial is None:
                running = self._running_elsewhere()
                if not running:
                    break
                self._wait(running)
                continue
            ran += 1
            try:
                outcome = run_one(trial)
            except StorageUnavailable as err:
                raise StorageUnavailable(f"{err}; {self._running_label(trial)} is left running: a later run "
                                         f"retries it once its heartbeat is {self.config.grace_s:g} s old"
                                         ) from None
            if outcome in counts:
                counts[outcome] += 1
        return counts


def hypervolume(points, reference) -> float:
    """The exact hypervolume dominated by ``points`` (losses, one row per point) up to ``reference``
    (Optuna's WFG algorithm; Optuna has no public name for it)."""
    from optuna._hypervolume import compute_hypervolume

    return float(compute_hypervolume(points, reference))
