"""From stored trials to the tidy tables of :mod:`reports.schema`.

Each COMPLETE trial of a plan holds the record :func:`studies.pipeline.run_item` returned
(its user attributes). This module is the one place that reads those attributes; reports
receive DataFrames and know nothing of Optuna.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from reports.schema import CONVENTION_COLUMNS, EFFICIENCY_COLUMNS, ITEM_COLUMNS, RESULT_COLUMNS, frame, row


def item_row(record: dict, item_seconds: float | None = None) -> dict:
    """The :data:`reports.schema.ITEM_COLUMNS` row of one item's record."""
    first = (record.get("metrics") or [{}])[0]
    train = record["train"]
    conv = record.get("conventions", {})
    return row(ITEM_COLUMNS, item=first.get("item"), model=first.get("model"), label=first.get("label"),
               dataset=first.get("dataset"), seed=first.get("seed"), empty=record.get("empty"),
               best_val_dice=train["best_val_dice"], best_epoch=train["best_epoch"], epochs=train["epochs"],
               steps=train["steps"], train_seconds=train["seconds"], item_seconds=item_seconds,
               **{c: conv.get(c) for c in CONVENTION_COLUMNS})


def collect(trials: Sequence) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Results, efficiency and item tables of COMPLETE trials (their user attributes)."""
    results, efficiency, items = [], [], []
    for t in trials:
        attrs = t.user_attrs
        results += attrs.get("metrics", [])
        efficiency += attrs.get("efficiency", [])
        if attrs.get("metrics") and "train" in attrs:
            items.append(item_row(attrs, attrs.get("item_seconds")))
    return frame(results, RESULT_COLUMNS), frame(efficiency, EFFICIENCY_COLUMNS), frame(items, ITEM_COLUMNS)
