"""Sweeps: a sampler-driven Optuna study whose trials are bench items, run by any number of
workers on one storage, and the tables its results give (the Pareto front, the hypervolume
by trial count, parameter importances) for :mod:`reports.sweeps`.

How a sweep runs (:class:`Sweep`):

- **Budget.** ``n_trials`` trials in all, across workers and restarts: the study holds one
  *slot* per trial (a WAITING trial with the user attribute ``slot``), created once; a worker
  claims a slot atomically (:meth:`studies.queue.Queue.claim`), the sampler draws its
  parameters, and the trial is run and told. A slot is done when its trial is COMPLETE, PRUNED
  or FAIL; a re-run resumes with the slots left, and waits for slots running elsewhere until
  they finish or their heartbeat goes stale.
  Two workers creating the same slot at once are resolved at the claim: the older trial runs,
  the other is marked FAIL as a duplicate. With only a ``timeout``, each worker asks for new
  trials until its time is up.
- **Lost workers.** A running trial stamps a heartbeat (:class:`studies.queue.Heartbeat`);
  a trial without one for ``grace_s`` is marked FAIL (lost) and its slot enqueued again with
  the same parameters -- the engine's mechanism for plan items. A worker whose trial was taken
  as lost meanwhile drops its result; a storage outage of a few seconds is ridden out
  (:mod:`studies.queue`).
- **Failures.** An exception in a trial (a NaN loss, CUDA out of memory, a model that cannot
  be built) or an objective without a finite value marks it FAIL with ``fail_reason``; the
  study goes on.
- **Records.** Every trial stores the record of :func:`studies.pipeline.run_item` exactly as a
  plan item does (:func:`studies.engine.store_record`), plus ``spec`` (its model),
  ``objectives`` (the figures of its objectives and constraints) and ``item`` (its item id);
  constraints go to Optuna with ``Trial.set_constraint``.
- **Pruning.** With a ``[pruner]`` (:class:`studies.sweepfile.PrunerSpec`, one objective only:
  Optuna's ``Trial.report`` and ``should_prune`` raise for several), each validation of a
  trial's main training run after epoch 0 is reported (``Trial.report(val_dice, epoch)``;
  fine-tuning after channel pruning is not), and a trial the pruner stops raises
  ``optuna.TrialPruned`` out of training: it is marked PRUNED with ``pruned_epoch`` and uses up
  its slot. The validation Dice is judged, whatever the study's one (maximized) objective.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from lfubench.bench.errors import LfubenchError

from .engine import EngineConfig, store_record
from .objectives import MAXIMIZE, FigureError, record_figures
from .plan import Item
from .queue import (
    DUPLICATE,
    FAIL_REASON,
    ITEM,
    LOST,
    RETRY_OF,
    SLOT,
    Queue,
    StorageUnavailable,
    Worker,
    fail_reason,
    hypervolume,
    make_storage,
    state_name,
)
from .schema import ModelSpec, section_dict
from .sweepfile import PrunerSpec, SamplerSpec, SweepStudy

log = logging.getLogger(__name__)


def make_sampler(spec: SamplerSpec, n_objectives: int,
                 trial: int | None = None) -> optuna.samplers.BaseSampler:
    """The named sampler with every setting lfubench relies on given explicitly.

    With ``trial`` (a trial number) its seed is derived from the study's seed and that number:
    every trial is drawn by a sampler seeded for it, so workers started with the same study
    seed do not draw the same points, and a trial's draw does not depend on which worker ran it.
    """
    seed = spec.seed
    if trial is not None:
        seed = int(np.random.SeedSequence([spec.seed, trial]).generate_state(1)[0])
    if spec.name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=spec.population_size, seed=seed)
    if spec.name == "tpe":
        # multivariate + group: joint density over each conditional sub-space; constant_liar:
        # running trials count as pending, so parallel workers do not draw the same point
        with warnings.catch_warnings():  # multivariate, group, constant_liar are marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(n_startup_trials=spec.n_startup_trials, seed=seed,
                                              multivariate=True, group=True, constant_liar=True)
    if spec.name == "gp":
        # needs torch and scipy (both lfubench dependencies); the settings a family lacks are drawn
        # at random (the GP models a fixed space), which is the space's design, not worth a warning
        return optuna.samplers.GPSampler(n_startup_trials=spec.n_startup_trials, seed=seed,
                                         warn_independent_sampling=False)
    raise LfubenchError(f"[sampler] name: unknown sampler {spec.name!r}")


def make_pruner(spec: PrunerSpec) -> optuna.pruners.BasePruner:
    """The named pruner with every setting given explicitly; ``none`` never prunes."""
    if spec.name == "none":
        return optuna.pruners.NopPruner()
    if spec.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.n_startup_trials,
                                           n_warmup_steps=spec.n_warmup_steps, interval_steps=1,
                                           n_min_trials=1)
    if spec.name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=spec.min_resource,
                                                      reduction_factor=spec.reduction_factor,
                                                      min_early_stopping_rate=0, bootstrap_count=0)
    raise LfubenchError(f"[pruner] name: unknown pruner {spec.name!r}")


def pruning_reporter(trial: optuna.Trial) -> Callable[[int, float], None]:
    """The ``on_validation`` of a trial's training: report each validation Dice at its epoch
    (not epoch 0: the starting weights say nothing of the model) and raise
    ``optuna.TrialPruned`` when the study's pruner says so."""

    def on_validation(epoch: int, val_dice: float) -> None:
        if epoch == 0:
            return
        trial.report(val_dice, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} (validation Dice {val_dice:.4g})")

    return on_validation


def _slot(t) -> int | None:
    return t.user_attrs.get(SLOT)


def _finished(t) -> bool:
    """A trial that used up its slot: complete, pruned or failed by itself (not lost, not a duplicate)."""
    if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return t.state == TrialState.FAIL and not t.user_attrs.get(LOST) and not t.user_attrs.get(DUPLICATE)


Evaluate = Callable[[ModelSpec, optuna.Trial], dict]


class Sweep(Worker):
    """The Optuna study of one sweep study file on one storage."""

    def __init__(self, study: SweepStudy, storage_url: str, config: EngineConfig | None = None) -> None:
        self.spec = study
        self.config = config or EngineConfig()
        self.objectives = study.objectives
        directions = [optuna.study.StudyDirection.MAXIMIZE if d == MAXIMIZE else
                      optuna.study.StudyDirection.MINIMIZE for d in self.objectives.directions]
        self.sampler = make_sampler(study.sampler, len(directions))
        self.queue = Queue(storage_url, study.name, directions=directions, sampler=self.sampler,
                           pruner=make_pruner(study.pruner))
        self.storage, self.study = self.queue.storage, self.queue.study
        if list(self.study.directions) != directions or (
                self.study.metric_names not in (None, self.objectives.names)):
            raise LfubenchError(
                f"study {study.name!r} in this storage optimises "
                f"{self.study.metric_names or 'other objectives'} "
                f"({', '.join(d.name.lower() for d in self.study.directions)}), not {self.objectives.names}; "
                "give it another name or storage")
        if self.study.metric_names is None:
            with warnings.catch_warnings():  # experimental since Optuna 3.2
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.study.set_metric_names(self.objectives.names)  # shown by optuna-dashboard

    # -- the queue of slots ---------------------------------------------------------------
    def _trials(self, states=None) -> list:
        return self.queue.trials(states)

    def sync(self) -> list[int]:
        """Fail lost trials, and enqueue every slot that has no trial done, waiting or running
        (a lost trial's slot with its parameters); return the slots enqueued."""
        lost = self.queue.fail_lost(self._trials((TrialState.RUNNING,)), self.config.grace_s)
        for t, reason in lost:
            log.warning("trial %d: %s; its parameters will be retried", t.number, reason)
        by_slot: dict[int | None, list] = {}
        for t in self._trials():
            by_slot.setdefault(_slot(t), []).append(t)
        added = []
        for k in self._slots(by_slot):
            trials = by_slot.get(k, [])
            if any(_finished(t) or t.state in (TrialState.WAITING, TrialState.RUNNING) for t in trials):
                continue
            lost_ones = [t for t in trials if t.user_attrs.get(LOST)]
            if len(lost_ones) >= self.config.max_failures:
                log.warning("slot %d: lost %d times; not retried", k, len(lost_ones))
                continue
            attrs = {SLOT: k}
            params = {}
            if lost_ones:
                params = dict(lost_ones[-1].params)
                attrs[RETRY_OF] = lost_ones[-1].number
            self.queue.enqueue(params, attrs)
            added.append(k)
        return added

    def _slots(self, by_slot: dict) -> Iterable[int]:
        """The budget's slots: ``n_trials`` of them, or (a timeout alone) those that have trials."""
        n = self.spec.settings.n_trials
        return range(n) if n is not None else sorted(k for k in by_slot if k is not None)

    def _claim(self) -> optuna.Trial | None:
        for t in sorted(self._trials((TrialState.WAITING,)), key=lambda t: t.number):
            if not self.queue.claim(t):
                continue
            slot = _slot(t)
            if slot is not None:
                others = [o for o in self._trials() if _slot(o) == slot and o.number != t.number]
                pending = (TrialState.RUNNING, TrialState.WAITING)
                if any(_finished(o) or (o.state in pending and o.number < t.number) for o in others):
                    self.queue.drop(t.number, f"duplicate of slot {slot}", **{DUPLICATE: True})
                    continue
            return self._trial(t.number)
        if self.spec.settings.n_trials is None:  # a timeout alone: a new trial, its number its slot
            number = self.queue.new_trial()
            self.queue.set_attrs(number, {SLOT: number})
            return self._trial(number)
        return None

    def _trial(self, number: int) -> optuna.Trial:
        """A claimed trial, drawn by a sampler seeded for its number (:func:`make_sampler`)."""
        sampler = make_sampler(self.spec.sampler, len(self.objectives.names), trial=number)
        return self.queue.live(number, sampler)

    def _running_elsewhere(self) -> list:
        slots = set(self._slots({_slot(t): None for t in self._trials()}))
        return [t for t in self._trials((TrialState.RUNNING,)) if _slot(t) in slots]

    def _waiting_label(self, trial) -> str:
        return f"trial {trial.number} (slot {_slot(trial)})"

    def _running_label(self, trial: optuna.Trial) -> str:
        return f"trial {trial.number}"

    # -- work -----------------------------------------------------------------------------
    def run(self, evaluate: Evaluate, max_trials: int | None = None, timeout: float | None = None,
            on_start: Callable[[optuna.Trial, ModelSpec], None] | None = None,
            on_end: Callable[[optuna.Trial, dict | None, str | None], None] | None = None) -> dict:
        """Run trials until the budget is used (or ``max_trials`` were run here, or ``timeout``
        seconds -- default the study's -- have passed); return counts by outcome.

        Trials running in other workers are waited for until they finish, or until their
        heartbeat is stale, when they are retried here. A storage unreachable for longer than the
        queue's retry bound stops the worker (:class:`StorageUnavailable`, one line); its trial
        stays RUNNING and is retried by the next run once its heartbeat is stale."""
        self.sync()
        timeout = timeout if timeout is not None else self.spec.settings.timeout
        started = time.monotonic()
        return self._work(lambda trial: self._run_one(trial, evaluate, on_start, on_end),
                          {"complete": 0, "failed": 0, "pruned": 0}, max_trials,
                          until=lambda: timeout is not None and time.monotonic() - started > timeout)

    def _run_one(self, trial: optuna.Trial, evaluate: Evaluate, on_start, on_end) -> str:
        """Run one claimed trial; return its outcome: ``complete``, ``failed``, ``pruned``, or
        ``lost`` when another worker took it as lost meanwhile (its result is dropped)."""
        t0 = time.perf_counter()
        tid = self.queue.trial_id(trial.number)
        record = None
        try:
            with self.queue.heartbeat(trial.number, self.config.heartbeat_s, f"trial {trial.number}"):
                spec = self.spec.space.suggest(trial)
                item = Item(spec, self.spec.dataset, self.spec.settings.seed)
                self.storage.set_trial_user_attr(tid, "item", item.id)
                self.storage.set_trial_user_attr(tid, "spec", section_dict(spec))
                if on_start:
                    on_start(trial, spec)
                record = evaluate(spec, trial)
                stored = store_record(self.storage, tid, record, time.perf_counter() - t0)
                figures = record_figures(stored, self.objectives.figures_needed, self.spec.measure)
        except optuna.TrialPruned as err:  # stopped by the pruner: its slot is used
            log.info("trial %d %s", trial.number, err)
            _free_cuda_memory()
            try:
                self.storage.set_trial_user_attr(tid, "pruned_epoch", self.queue.get(trial.number).last_step)
                if not self.queue.finish(trial, state=TrialState.PRUNED):
                    return self._taken(trial)
            except optuna.exceptions.UpdateFinishedTrialError:
                return self._taken(trial)
            if on_end:
                on_end(trial, None, str(err))
            return "pruned"
        except StorageUnavailable:
            raise
        except optuna.exceptions.UpdateFinishedTrialError:  # taken as lost while it ran: nothing to store
            return self._taken(trial)
        except Exception as err:  # recorded, and the study goes on
            reason = fail_reason(err)
            if isinstance(err, FigureError):
                reason = f"objective {reason.split(': ', 1)[1]}"
            log.error("trial %d failed: %s", trial.number, reason)
            log.debug("%s", traceback.format_exc())
            _free_cuda_memory()
            if not self.queue.finish(trial, state=TrialState.FAIL, reason=reason):
                return self._taken(trial)
            if on_end:
                on_end(trial, record, reason)
            return "failed"
        try:
            self.storage.set_trial_user_attr(tid, "objectives", figures)
            for c in self.objectives.constraints:
                trial.set_constraint(c.text, c.value(figures[c.figure]))
            if not self.queue.finish(trial, [figures[n] for n in self.objectives.names]):
                return self._taken(trial)
        except optuna.exceptions.UpdateFinishedTrialError:
            return self._taken(trial)
        if on_end:
            on_end(trial, record, None)
        return "complete"

    @staticmethod
    def _taken(trial: optuna.Trial) -> str:
        log.warning("trial %d was taken as lost by another worker while it ran here; this result is dropped "
                    "(the retry stores its own)", trial.number)
        return "lost"

    # -- state ----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Slots done (complete / failed / pruned), running and waiting."""
        out = {"complete": 0, "failed": 0, "pruned": 0, "running": 0, "waiting": 0}
        for t in self._trials():
            name = state_name(t)
            if name in ("complete", "pruned", "running", "waiting"):
                out[name] += 1
            elif _finished(t):
                out["failed"] += 1
        return out

    def completed(self) -> list:
        return self._trials((TrialState.COMPLETE,))


def _free_cuda_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def item_evaluator(study: SweepStudy, run_dir: str | Path, progress: bool = True) -> Evaluate:
    """Each trial as a bench item: :func:`studies.pipeline.run_item` on the study's dataset and
    seed; with a pruner, its training reports to it (:func:`pruning_reporter`)."""
    from . import pipeline

    plan = study.plan()

    def evaluate(spec: ModelSpec, trial: optuna.Trial) -> dict:
        report = pruning_reporter(trial) if study.pruner.name != "none" else None
        return pipeline.run_item(Item(spec, study.dataset, study.settings.seed), plan, run_dir,
                                 progress=progress, on_validation=report)

    return evaluate


# --- results ----------------------------------------------------------------------------------


def open_sweep(study: SweepStudy, storage_url: str) -> optuna.Study:
    """The stored study of a sweep, for reading; a storage without it is one clear line."""
    storage = make_storage(storage_url)
    try:
        return optuna.load_study(study_name=study.name, storage=storage)
    except KeyError:
        names = ", ".join(s.study_name for s in optuna.get_all_study_summaries(storage)) or "none"
        raise LfubenchError(f"no study {study.name!r} in the storage (it holds: {names}); run the sweep "
                            "first, or give --storage") from None


def trials_frame(study: optuna.Study, sweep: SweepStudy) -> pd.DataFrame:
    """One row per finished or running trial: number, state, slot, family, label, its searched
    parameters (``p:NAME``), objective and constraint figures, ``feasible``, ``pareto`` (on the
    front of the feasible complete trials), ``fail_reason``, ``pruned_epoch`` (the epoch a
    pruned trial stopped at) and ``seconds``."""
    names = sweep.objectives.names
    front = pareto_numbers(study)
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING:
            continue
        if t.user_attrs.get(DUPLICATE):
            continue
        figures = t.user_attrs.get("objectives", {})
        spec = t.user_attrs.get("spec", {})
        row = {"number": t.number, "state": t.state.name.lower(), "slot": _slot(t),
               "family": spec.get("name"), "label": spec.get("label"), "item": t.user_attrs.get(ITEM)}
        row.update({f"p:{k}": v for k, v in t.params.items()})
        for name in names:
            row[name] = figures.get(name, math.nan)
        for c in sweep.objectives.constraints:
            row[c.text] = figures.get(c.figure, math.nan)
        cons = t.constraints if t.state == TrialState.COMPLETE else {}
        row["feasible"] = bool(t.state == TrialState.COMPLETE and all(v <= 0 for v in cons.values()))
        row["pareto"] = t.number in front
        row["fail_reason"] = t.user_attrs.get(FAIL_REASON, "")
        row["pruned_epoch"] = t.user_attrs.get("pruned_epoch", math.nan)
        row["seconds"] = t.user_attrs.get("item_seconds", math.nan)
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    params = sorted(c for c in df.columns if c.startswith("p:"))
    first = ["number", "state", "slot", "family", "label", "item"]
    rest = [c for c in df.columns if c not in first and c not in params]
    return df[first + params + rest].sort_values("number").reset_index(drop=True)


def pareto_numbers(study: optuna.Study) -> set[int]:
    """Numbers of the trials on the Pareto front (``best_trials``: feasible, non-dominated);
    for one objective, the best trial."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return set()
    try:
        best = study.best_trials
    except ValueError:
        return set()
    return {t.number for t in best}


def _losses(values: np.ndarray, directions: list[str]) -> np.ndarray:
    sign = np.array([-1.0 if d == MAXIMIZE else 1.0 for d in directions])
    return values * sign


def hypervolume_history(trials: pd.DataFrame, sweep: SweepStudy) -> pd.DataFrame:
    """The hypervolume of the feasible complete trials among the first k, for every k (trials
    counted in number order, failed ones included); the reference point is the worst feasible
    value of each objective, widened by a tenth of its range. With one objective, ``best``
    (the best value so far) instead. Columns ``trials``, ``hypervolume`` (or ``best``) and
    ``reference`` (the point, as text)."""
    names, directions = sweep.objectives.names, sweep.objectives.directions
    if trials.empty:
        return pd.DataFrame(columns=["trials", "hypervolume" if len(names) > 1 else "best"])
    done = trials[trials["state"].isin(["complete", "fail", "pruned"])].sort_values("number")
    ok = done["feasible"].to_numpy()
    losses = _losses(done[names].to_numpy(dtype=float), directions)
    if len(names) == 1:
        best, out = math.inf, []
        for k, (feasible, loss) in enumerate(zip(ok, losses[:, 0], strict=True), start=1):
            if feasible:
                best = min(best, loss)
            out.append({"trials": k, "best": (-best if directions[0] == MAXIMIZE else best)
                        if math.isfinite(best) else math.nan})
        return pd.DataFrame(out)
    feasible = losses[ok]
    if len(feasible) == 0:
        return pd.DataFrame({"trials": range(1, len(done) + 1), "hypervolume": 0.0, "reference": ""})
    lo, hi = feasible.min(axis=0), feasible.max(axis=0)
    reference = hi + 0.1 * np.where(hi > lo, hi - lo, np.maximum(np.abs(hi), 1.0))
    out = []
    for k in range(1, len(done) + 1):
        pts = losses[:k][ok[:k]]
        hv = hypervolume(pts, reference) if len(pts) else 0.0
        out.append({"trials": k, "hypervolume": hv})
    df = pd.DataFrame(out)
    df["reference"] = ", ".join(f"{n}={(-r if d == MAXIMIZE else r):.4g}"
                                for n, d, r in zip(names, directions, reference, strict=True))
    return df


def importances(study: optuna.Study, sweep: SweepStudy) -> pd.DataFrame:
    """fANOVA importance of each parameter for each objective (complete trials; parameters
    every complete trial has). Columns ``objective``, ``parameter``, ``importance``; empty
    (and logged) where fewer than two complete trials or no varied parameter allow it."""
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    rows = []
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        log.info("parameter importances need at least 2 complete trials, the study has %d", len(complete))
        return pd.DataFrame(columns=["objective", "parameter", "importance"])
    for k, name in enumerate(sweep.objectives.names):
        try:
            found = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=sweep.sampler.seed),
                                          target=lambda t, k=k: t.values[k], normalize=True)
        except (RuntimeError, ValueError) as err:
            log.info("no parameter importances for %s: %s", name, err)
            continue
        rows += [{"objective": name, "parameter": p, "importance": float(v)} for p, v in found.items()]
    return pd.DataFrame(rows, columns=["objective", "parameter", "importance"])
