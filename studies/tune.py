"""Equal tuning: a plan's ``[tune]`` search (:class:`studies.schema.TuneSpec`), the same for
every model.

Protocol (its sentence: :func:`bench.conventions.tuning`, stored with every tuned item):

- the grid over every list the section gives (``lr``, ``batch_size``, ``weight_decay``), in the
  order :attr:`TuneSpec.SEARCHED` and the lists give, is the same for every model of the plan;
- every trial trains a copy of the item's freshly initialised model (the same initial weights
  for every trial) on the item's training slices for the same budget: ``[tune].steps`` steps,
  or by default the ``[train]`` budget (with its ``minutes`` cap, if any); every other setting
  is ``[train]``'s;
- a trial scores its best validation Dice (:func:`bench.train.validation_dice` on the
  validation slices of the item's split: the first cross-validation fold of the non-test
  cases); the test cases are never given to a trial. The best score wins; a tie (early in
  training every trial may score 0) goes to the lower last training loss, then to the first in
  grid order; a trial whose loss diverges (:class:`bench.train.TrainingDiverged`) loses;
- the delivered model: with the default budget (or ``[tune].steps`` equal to ``[train].steps``)
  the winning trial is kept (its run was the training run the item would have made with those
  values); otherwise the item's model is trained afresh with the chosen values at the
  ``[train]`` budget. ``on_validation`` (a sweep's pruner) sees that final run only.

Each item records what its tuning chose and spent (:attr:`Tuned.record`, the item record's
``tuning``): ``tuned_lr``, ``tuned_batch_size``, ``tuned_weight_decay`` (those searched),
``trials`` (per trial: its values, ``val_dice``, ``best_epoch``, ``last_loss``, ``steps``,
``seconds``, ``diverged``), ``steps`` and ``seconds`` in all (every trial, a kept winner included), the
search, the trial budget, ``kept`` and the protocol sentence. Trial checkpoints lie in the item
folder under ``tune/trial-K/``.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn
from torch.utils.data import Dataset

from lfubench.bench import conventions
from lfubench.bench.errors import LfubenchError
from lfubench.bench.train import TrainConfig, TrainingDiverged, TrainResult, train

from .schema import TuneSpec

log = logging.getLogger(__name__)


@dataclass
class Tuned:
    """What training an item delivered: the trained ``model``, its training ``result`` and
    ``config`` (the chosen values in place), and the tuning figures (``record``; None without
    ``[tune]``)."""

    model: nn.Module
    result: TrainResult
    config: TrainConfig
    record: dict | None = None


def grid(spec: TuneSpec) -> list[dict]:
    """Every trial's values, in grid order (the first setting outermost)."""
    search = spec.search
    return [dict(zip(search, values, strict=True)) for values in itertools.product(*search.values())]


def keeps_winner(spec: TuneSpec, config: TrainConfig) -> bool:
    """Whether a trial's budget is the training budget, so the winning trial is delivered."""
    return spec.steps is None or spec.steps == config.steps


def trial_config(spec: TuneSpec, config: TrainConfig, values: dict) -> TrainConfig:
    """The training settings of the trial of ``values``: ``config`` with them, at the trial budget."""
    tried = dataclasses.replace(config, **values)
    return dataclasses.replace(tried, steps=spec.steps) if spec.steps else tried


def trial_budget(spec: TuneSpec, train_budget: str) -> str:
    """One trial's budget in words (``train_budget``: the ``[train]`` budget's)."""
    if spec.steps:
        return f"{spec.steps} step{'s' if spec.steps != 1 else ''}"
    return f"the training budget ({train_budget})"


def protocol(spec: TuneSpec, config: TrainConfig, train_budget: str) -> str:
    """The sentence stating the search (:func:`bench.conventions.tuning`)."""
    return conventions.tuning(spec.search, trial_budget(spec, train_budget), keeps_winner(spec, config))


def _values_text(values: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in values.items())


def last_loss(result: TrainResult) -> float:
    """The mean training loss of the trial's last logged epoch (``inf`` if none was logged)."""
    losses = [h["loss"] for h in result.history if h.get("loss") is not None]
    return float(losses[-1]) if losses else math.inf


def rank(result: TrainResult) -> tuple[float, float]:
    """A trial's rank, higher better: its best validation Dice, then the lower last training loss."""
    return (result.best_score, -last_loss(result))


def train_tuned(model: nn.Module, train_set: Dataset, val_set: Dataset | None, num_classes: int,
                config: TrainConfig, spec: TuneSpec | None, out_dir: str | Path, *, item: str = "",
                train_budget: str = "", on_validation: Callable[[int, float], None] | None = None) -> Tuned:
    """Train an item's ``model`` (freshly initialised, not yet trained) as :func:`bench.train.train`
    does, after the ``spec`` search when there is one (see the module docstring); ``item`` names
    the item in the log line and errors, ``train_budget`` is ``[train]``'s budget in words.

    Raises :class:`bench.errors.LfubenchError` when there are no validation slices to choose on,
    :class:`bench.train.TrainingDiverged` when every trial diverged."""
    out_dir = Path(out_dir)
    if spec is None:
        result = train(model, train_set, val_set, num_classes, config, out_dir, on_validation=on_validation)
        return Tuned(model, result, config)
    if val_set is None or not len(val_set):
        raise LfubenchError(f"{item}: [tune] chooses on validation Dice, and the item has no validation "
                            "slices")
    initial = copy.deepcopy(model)
    trials: list[dict] = []
    best: tuple[float, int, nn.Module, TrainResult, TrainConfig] | None = None
    for k, values in enumerate(grid(spec)):
        net, cfg = copy.deepcopy(initial), trial_config(spec, config, values)
        t0 = time.perf_counter()
        try:
            res = train(net, train_set, val_set, num_classes, cfg, out_dir / "tune" / f"trial-{k}")
        except TrainingDiverged as err:
            trials.append({**values, "val_dice": None, "best_epoch": None,
                           "steps": None if err.step is None else err.step + 1,
                           "seconds": time.perf_counter() - t0, "diverged": str(err)})
            continue
        trials.append({**values, "val_dice": res.best_score, "best_epoch": res.best_epoch,
                       "last_loss": last_loss(res), "steps": res.steps_run, "seconds": res.seconds,
                       "diverged": None})
        if best is None or rank(res) > rank(best[3]):
            best = (res.best_score, k, net, res, cfg)
        del net
    if best is None:
        raise TrainingDiverged(f"{item}: every tuning trial diverged ("
                               + "; ".join(f"{_values_text({k: t[k] for k in spec.search})}: {t['diverged']}"
                                           for t in trials) + ")")
    score, winner, net, res, cfg = best
    chosen = {k: trials[winner][k] for k in spec.search}
    kept = keeps_winner(spec, config)
    if kept:
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(res.checkpoint, out_dir / "best.pt")
        model, result, final = net, dataclasses.replace(res, checkpoint=str(out_dir / "best.pt")), cfg
    else:
        final = dataclasses.replace(config, **chosen)
        result = train(model, train_set, val_set, num_classes, final, out_dir, on_validation=on_validation)
    record = {**{f"tuned_{k}": v for k, v in chosen.items()}, "val_dice": score, "trial": winner,
              "trials": trials, "steps": sum(t["steps"] or 0 for t in trials),
              "seconds": sum(t["seconds"] for t in trials), "search": spec.search,
              "trial_steps": spec.steps, "trial_budget": trial_budget(spec, train_budget), "kept": kept,
              "protocol": protocol(spec, config, train_budget)}
    tried = "; ".join(f"{_values_text({k: t[k] for k in spec.search})}: "
                      + (f"{t['val_dice']:.4f}" if t["diverged"] is None else "diverged") for t in trials)
    delivered = ("the winning trial is kept" if kept
                 else f"trained afresh at {train_budget or 'the training budget'}")
    log.info("%s: tuning chose %s (validation Dice %.4f; %d trials: %s); tuning spent %d steps, %.1f s; %s",
             item, _values_text(chosen), score, len(trials), tried, record["steps"], record["seconds"],
             delivered)
    return Tuned(model, result, final, record)
