"""From stored trials to the tidy tables of :mod:`reports.schema`.

Each COMPLETE trial of a plan or a sweep holds the :class:`reports.record.ItemRecord` that
:func:`studies.pipeline.run_item` returned (stored as its user attributes). This module reads
trials; a record is read only through :meth:`ItemRecord.from_attrs`. Reports receive DataFrames
and records, and know nothing of Optuna.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from lfubench.reports.record import ItemRecord, per_model_peak
from lfubench.reports.schema import (
    CONVENTION_COLUMNS,
    EFFICIENCY_COLUMNS,
    ITEM_COLUMNS,
    RESULT_COLUMNS,
    TUNE_COLUMNS,
    frame,
    row,
)

from .queue import FAIL_REASON


def item_row(record: ItemRecord | dict, item_seconds: float | None = None) -> dict:
    """The :data:`reports.schema.ITEM_COLUMNS` row of one item's record (an
    :class:`ItemRecord` or its stored attributes); ``item_seconds`` defaults to the record's."""
    rec = record if isinstance(record, ItemRecord) else ItemRecord.from_attrs(record)
    train = rec.train
    conv = rec.conventions or {}
    pruning = rec.pruning or {}
    tuning = rec.tuning or {}
    tuned = {c: tuning.get(c) for c in TUNE_COLUMNS if c.startswith("tuned_")}
    return row(ITEM_COLUMNS, item=rec.item, model=rec.model, label=rec.label, dataset=rec.dataset,
               seed=rec.seed, empty=rec.empty, best_val_dice=train["best_val_dice"],
               best_epoch=train["best_epoch"], epochs=train["epochs"], steps=train["steps"],
               train_seconds=train["seconds"],
               item_seconds=item_seconds if item_seconds is not None else rec.item_seconds,
               prune_ratio=pruning.get("ratio", 0.0), prune_achieved=pruning.get("channel_ratio"),
               prune_importance=pruning.get("importance"), prune_scope=pruning.get("scope"),
               prune_mode=pruning.get("mode"), finetune_epochs=pruning.get("finetune_epochs"),
               prune_seconds=pruning.get("seconds"), overlays=rec.overlays,
               **{c: conv.get(c) for c in CONVENTION_COLUMNS}, **tuned,
               tune_trials=len(tuning["trials"]) if tuning else None, tune_steps=tuning.get("steps"),
               tune_seconds=tuning.get("seconds"), tune_protocol=tuning.get("protocol"))


def records(trials: Sequence) -> list[ItemRecord]:
    """The records of the COMPLETE trials among ``trials`` (those that hold one)."""
    from optuna.trial import TrialState

    out = []
    for t in trials:
        if t.state == TrialState.COMPLETE:
            rec = ItemRecord.from_attrs(t.user_attrs)
            if rec.metrics:
                out.append(rec)
    return out


def collect(trials: Sequence) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Results (the int8 models' rows beside the others), efficiency and item tables of COMPLETE
    trials (their records)."""
    results, efficiency, items = [], [], []
    for t in trials:
        rec = ItemRecord.from_attrs(t.user_attrs)
        results += rec.metrics + rec.int8_metrics
        efficiency += [per_model_peak(r) for r in rec.efficiency]  # older records: peak_mb was RSS
        if rec.metrics and rec.train is not None:
            items.append(item_row(rec))
    return frame(results, RESULT_COLUMNS), frame(efficiency, EFFICIENCY_COLUMNS), frame(items, ITEM_COLUMNS)


def trial_item(trial) -> str | None:
    """The plan item a trial ran (its fixed ``item`` parameter, also stored as a user attribute
    when the trial is enqueued: a waiting trial has it too)."""
    return trial.params.get("item") or trial.user_attrs.get("item")


def failures(trials: Sequence) -> pd.DataFrame:
    """Items without a COMPLETE trial, one row each: ``item``, ``state`` (``failed``,
    ``running`` or ``waiting``), ``attempts`` (FAIL trials) and ``reason`` (the latest
    failure's ``fail_reason``), in the order the items first appear."""
    from optuna.trial import TrialState

    by_item: dict[str, list] = {}
    for t in trials:
        item = trial_item(t)
        if item is not None:
            by_item.setdefault(item, []).append(t)
    rows = []
    for item, ts in by_item.items():
        states = [t.state for t in ts]
        if TrialState.COMPLETE in states:
            continue
        failed = sorted((t for t in ts if t.state == TrialState.FAIL), key=lambda t: t.number)
        state = ("running" if TrialState.RUNNING in states else "waiting" if TrialState.WAITING in states
                 else "failed")
        rows.append({"item": item, "state": state, "attempts": len(failed),
                     "reason": failed[-1].user_attrs.get(FAIL_REASON, "") if failed else ""})
    return pd.DataFrame(rows, columns=["item", "state", "attempts", "reason"])


def environments(trials: Sequence) -> pd.DataFrame:
    """The hardware and software record (``env``) of each COMPLETE trial, one row per item:
    ``item`` and the record's fields."""
    from optuna.trial import TrialState

    rows = []
    for t in trials:
        if t.state == TrialState.COMPLETE:
            env = ItemRecord.from_attrs(t.user_attrs).env
            if isinstance(env, dict):
                rows.append({"item": trial_item(t), **env})
    return pd.DataFrame(rows)


def splits(trials: Sequence) -> dict[str, dict[str, list[str]]]:
    """Per dataset, the case ids of its train, val and test splits, as the COMPLETE trials
    recorded them (the same for every item of a dataset)."""
    out: dict[str, dict[str, list[str]]] = {}
    for rec in records(trials):
        if rec.splits is not None:
            out.setdefault(rec.dataset, {k: list(v) for k, v in rec.splits.items()})
    return out


def load_trials(storage_url: str, study_name: str) -> list:
    """Every trial of study ``study_name`` in ``storage_url`` (read only; nothing enqueued)."""
    import optuna

    from lfubench.bench.errors import LfubenchError

    from .engine import make_storage
    from .run import masked_url

    storage = make_storage(storage_url)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise LfubenchError(f"storage {masked_url(storage_url)} has no study {study_name!r}"
                            + (f"; it has: {', '.join(names)}" if names else "; it has none")) from None
    return study.get_trials(deepcopy=False)
