"""One finished item's record: every figure the item pipeline (:func:`studies.pipeline.run_item`)
returns, typed, and the one mapping to and from the attributes it is stored as.

A record is written once (the pipeline builds it), stored as one attribute per field
(:meth:`ItemRecord.to_attrs`, on the item's Optuna trial) and read back once
(:meth:`ItemRecord.from_attrs`). Its tables (``metrics``, ``efficiency``) hold rows of
:mod:`reports.schema`. The item's identity (``item``, ``model``, ``label``, ``dataset``,
``seed``) is stored with it; records stored before it was are read with the identity of their
first metric row.

``overlays`` is the item's file of test slices, relative to ``run_dir``: the absolute folder
the item ran in (on the worker's machine), which :meth:`ItemRecord.overlays_file` resolves it
against.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar


@dataclass
class ItemRecord:
    """Every figure of one finished item.

    Args:
        item, model, label, dataset, seed: the item's identity (the plan item id, the model
            family, the model's label, the plan dataset's name, the seed).
        value: the item's score: the mean test Dice over the foreground regions of the
            delivered model at its top evaluated level (NaN when there is none).
        metrics: :data:`reports.schema.RESULT_COLUMNS` rows, every level and stage: the model as
            trained (PyTorch eager), the rows every score of the item is taken from.
        int8_metrics: the same rows of its int8 models (``quantize`` ``int8``, ``runtime`` the one
            that ran each) where the plan measures int8; kept apart from ``metrics`` so that no
            score of the item is an int8 one; the results table holds both.
        efficiency: :data:`reports.schema.EFFICIENCY_COLUMNS` rows.
        train: the training figures (``best_val_dice``, ``best_epoch``, ``epochs``, ``steps``,
            ``seconds``, ``config``, ``settings``, ``history``; ``finetune`` after pruning).
        checkpoint: the delivered model's state dict (a path on the worker's machine).
        model_config: ``models.create_model(**model_config)`` rebuilds the delivered model.
        env: the hardware and software record of the worker.
        empty: the dataset's empty-mask rule.
        overlays: the test-slice file, relative to ``run_dir``.
        run_dir: the absolute run folder the item ran in.
        conventions: the convention sentences of the item's figures
            (:data:`reports.schema.CONVENTION_COLUMNS`).
        splits: the dataset's case ids per split (``train``, ``val``, ``test``).
        pruning: the channel-pruning figures of a pruned item (None otherwise).
        tuning: the figures of a plan's ``[tune]`` search (:mod:`studies.tune`; None without
            one, and in records stored before it): the chosen values (``tuned_lr``,
            ``tuned_batch_size``, ``tuned_weight_decay``, those searched), ``val_dice`` (the
            winner's), ``trials`` (each trial's values, ``val_dice``, ``best_epoch``, ``steps``,
            ``seconds``, ``diverged``), ``steps`` and ``seconds`` in all, ``search``,
            ``trial_steps``, ``trial_budget``, ``kept`` (the winning trial delivered) and
            ``protocol`` (the sentence stating the search).
        item_seconds: the item's wall time, start to stored (set by the engine).
    """

    item: str | None = None
    model: str | None = None
    label: str | None = None
    dataset: str | None = None
    seed: int | None = None
    value: float = math.nan
    metrics: list[dict] = field(default_factory=list)
    int8_metrics: list[dict] = field(default_factory=list)
    efficiency: list[dict] = field(default_factory=list)
    train: dict | None = None
    checkpoint: str | None = None
    model_config: dict | None = None
    env: dict | None = None
    empty: str | None = None
    overlays: str | None = None
    run_dir: str | None = None
    conventions: dict = field(default_factory=dict)
    splits: dict | None = None
    pruning: dict | None = None
    tuning: dict | None = None
    item_seconds: float | None = None

    #: the fields that say which item a record is of (the key columns of its metric rows)
    IDENTITY: ClassVar[tuple[str, ...]] = ("item", "model", "label", "dataset", "seed")

    @classmethod
    def attr_names(cls) -> tuple[str, ...]:
        """The attribute names a record is stored under, one per field."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_attrs(self) -> dict:
        """The record as JSON-able attributes, one per field (tuples become lists)."""
        return {name: json.loads(json.dumps(getattr(self, name))) for name in self.attr_names()}

    @classmethod
    def from_attrs(cls, attrs: Mapping) -> ItemRecord:
        """The record stored as ``attrs`` (other attributes are ignored; a missing field takes
        its default). Records stored without their identity take it from their first metric row."""
        values = {name: attrs[name] for name in cls.attr_names() if name in attrs}
        first = (values.get("metrics") or [{}])[0]
        for name in cls.IDENTITY:
            if values.get(name) is None:
                values[name] = first.get(name)
        if values.get("value") is None:
            values["value"] = math.nan
        return cls(**values)

    def overlays_file(self, root: str | Path | None = None) -> Path | None:
        """The test-slice file (None without ``overlays``): ``overlays`` in the run folder the
        item ran in, else in ``root`` (a run folder moved, or read on another machine), else
        relative to the working folder; the first of these that exists, or the first candidate
        where none does (the caller says it is missing)."""
        if not self.overlays:
            return None
        bases = [b for b in (self.run_dir, root) if b] or [Path.cwd()]
        candidates = [Path(b) / self.overlays for b in bases]
        return next((c for c in candidates if c.is_file()), candidates[0])


def per_model_peak(row: dict) -> dict:
    """An efficiency row whose ``peak_mb`` is the model's own memory. Rows recorded before the
    ``peak_rss_mb`` column held the process's figure in ``peak_mb`` (the peak RSS on the CPU; on CUDA
    the allocator's peak over the timed loop, tensors of other owners included): it moves to
    ``peak_rss_mb`` on the CPU and is dropped on CUDA, and ``peak_mb`` becomes the row's
    ``model_peak_mb`` where it was recorded, else stays empty (never the process's figure). Rows with
    the column are returned as they are. :func:`studies.records.collect` reads every row through it."""
    if "peak_rss_mb" in row:
        return row
    cpu = str(row.get("device", "cpu")).startswith("cpu")
    return {**row, "peak_mb": row.get("model_peak_mb"), "peak_rss_mb": row.get("peak_mb") if cpu else None}
