"""The tidy tables every run yields, defined once: their columns, in order, and the one
function that builds a row of each.

- **results** (``results.csv``/``.parquet``): one row per item x pruning level x model as scored
  x case x class/region x metric; ``ref_empty`` / ``pred_empty`` say whether the reference / the
  prediction has no voxel of the region in that case; ``runtime`` and ``quantize`` say which model
  was scored: ``torch``/``none`` for the model as trained (every table, statistic, figure and
  objective is of these rows), ``onnxruntime`` or ``openvino``/``int8`` for its int8 model run in
  that runtime (a plan measuring int8: scored through the same evaluation, for the int8 gate of
  the deployment table, :mod:`reports.gate`);
- **efficiency** (``efficiency.csv``): one row per item x pruning level x measured
  configuration (device, batch, precision, runtime, quantization);
- **items** (``items.csv``): one row per item: training figures, channel-pruning settings and
  figures (``prune_ratio`` the requested fraction of channels to remove, 0 for an unpruned
  item; ``prune_achieved`` the fraction of prunable channels removed; ``prune_seconds`` the
  time ``models.prune_channels`` took), ``overlays`` (the item's ``overlays.npz`` of test
  slices, relative to the run folder), the conventions the run used (the sentences of
  :mod:`bench.conventions` as stored with the item) and, for a plan with ``[tune]``, the
  values its search chose and what it spent (:data:`TUNE_COLUMNS`).

The item pipeline (:mod:`studies.pipeline`) writes rows with :func:`row`; reports read the
DataFrames made by :func:`frame`. ``level`` is the pruning level evaluated, 0 for a model
without levels. ``stage`` is ``"final"`` for the model an item delivers, and
``"before-pruning"`` for the trained full-width model of a channel-pruned item in ``finetune``
mode (evaluated and measured before it was pruned, so one item shows what pruning cost).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

#: what identifies the model evaluated: one item at one pruning level
KEY_COLUMNS = ["item", "model", "label", "dataset", "seed", "level", "stage"]

#: the stages of :data:`KEY_COLUMNS`
STAGES = ("final", "before-pruning")

RESULT_COLUMNS = [*KEY_COLUMNS, "runtime", "quantize", "case", "region", "metric", "value", "ref_empty",
                  "pred_empty"]

#: the model as trained, in PyTorch eager: the ``runtime`` and ``quantize`` of a results row that
#: does not give them (every row recorded before int8 models were scored)
RESULT_DEFAULTS = {"runtime": "torch", "quantize": "none"}


def _defaults(columns: Sequence[str]) -> dict:
    """The defaults of a table's columns: :data:`RESULT_DEFAULTS` for the results, none elsewhere."""
    return RESULT_DEFAULTS if list(columns) == RESULT_COLUMNS else {}


#: the efficiency columns every run has recorded; ``peak_mb`` is the model's own peak tensor memory
#: (bench.memory's ``model_peak_mb``, the figure tables, Pareto plots and sweeps use; empty for int8
#: rows), never the process's (``peak_rss_mb``; records made before were read by
#: :func:`reports.record.per_model_peak`)
BASE_EFFICIENCY_COLUMNS = [*KEY_COLUMNS, "params", "gmacs", "input", "device", "batch", "precision",
                           "latency_ms", "p90_ms", "peak_mb", "status"]

#: the efficiency columns of the runtime a row was measured in (bench.latency's row keys of the same
#: names; empty in tables recorded before them, read as PyTorch eager, unquantized): the runtime and
#: quantization, what it ran, where its int8 calibration inputs came from (``calibration``), its
#: agreement with PyTorch fp32, the model file and the seconds to export and quantize it, the
#: model's own peak memory, the process's peak RSS over the timed loop (``peak_rss_mb``, CPU rows only:
#: interpreter and libraries included, never a model's figure), the row's share of the device's peak,
#: the model's MACs per byte moved (``arithmetic_intensity``) and its energy; ``error`` says why a
#: row is not ``ok``
DEPLOYMENT_COLUMNS = ["runtime", "quantize", "precision_used", "calibration", "max_abs_diff",
                      "argmax_agreement", "model_file_mb", "prepare_s", "model_peak_mb", "peak_rss_mb",
                      "pct_of_peak", "arithmetic_intensity", "joules_per_image", "error"]

EFFICIENCY_COLUMNS = [*BASE_EFFICIENCY_COLUMNS, *DEPLOYMENT_COLUMNS]

#: the conventions stored with each item, one column per sentence (``conv_deployment``: the
#: runtimes' and int8's, only where the plan measures more than PyTorch eager unquantized)
CONVENTION_COLUMNS = ["conv_scores", "conv_empty", "conv_params", "conv_macs", "conv_latency",
                      "conv_deployment"]

#: an item's tuning figures (a plan's ``[tune]``: studies.tune; empty for an item without one): the
#: values chosen (a column empty where that setting was not searched), the trials run, the steps and
#: seconds they spent in all (a kept winning trial included), and the sentence stating the search
TUNE_COLUMNS = ["tuned_lr", "tuned_batch_size", "tuned_weight_decay", "tune_trials", "tune_steps",
                "tune_seconds", "tune_protocol"]

ITEM_COLUMNS = ["item", "model", "label", "dataset", "seed", "empty", "best_val_dice", "best_epoch",
                "epochs", "steps", "train_seconds", "item_seconds", "prune_ratio", "prune_achieved",
                "prune_importance", "prune_scope", "prune_mode", "finetune_epochs", "prune_seconds",
                "overlays", *CONVENTION_COLUMNS, *TUNE_COLUMNS]


def row(columns: Sequence[str], **values) -> dict:
    """A row with exactly ``columns`` (in order); a missing or unknown column raises ``KeyError``
    (a results row may leave out :data:`RESULT_DEFAULTS`' columns)."""
    values = {**_defaults(columns), **values}
    missing = [c for c in columns if c not in values]
    extra = [c for c in values if c not in columns]
    if missing or extra:
        raise KeyError(f"row does not match its schema: missing {missing}, unknown {extra}")
    return {c: values[c] for c in columns}


def frame(rows: Iterable[dict], columns: Sequence[str]) -> pd.DataFrame:
    """A DataFrame of ``rows`` with exactly ``columns`` (empty when there are no rows); results
    rows without :data:`RESULT_DEFAULTS`' columns read as the model as trained."""
    df = pd.DataFrame(list(rows), columns=list(columns))
    for column, default in _defaults(columns).items():
        df[column] = df[column].astype(object).where(df[column].notna(), default)
    if "value" in df:
        df["value"] = pd.to_numeric(df["value"], errors="coerce")  # None (NaN in JSON) -> NaN
    return df


class ReportInputError(ValueError):
    """Input that a report cannot use (a missing column, an unknown reference, an unreadable
    overlays file), with the file or key named; the command line reports it as one line. An
    overlays file is optional: the report leaves out one it cannot read, and says so."""


def require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise :class:`ReportInputError` naming ``what`` and the columns it lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ReportInputError(f"{what} lacks the column(s) {', '.join(missing)}")


# -- the aggregate (long form) -------------------------------------------------------------------

#: what identifies one evaluated model of the aggregate (one row of the wide results table)
ROW_KEYS = ["dataset", "label", "model", "level", "stage"]

#: the aggregate of :func:`reports.aggregate.aggregate`, long form: one row per evaluated model x
#: measure x region x statistic. ``family`` is the model's family; ``reference`` marks the model
#: row the significance tests of its dataset compare against. A measure is a metric of the
#: results (``dice``, ``hd95``, ...) with a ``region`` and one of :data:`STATISTICS`, or one of
#: :data:`ROW_MEASURES` (a figure of the whole model row: ``region`` ``""``, statistic ``"value"``).
AGGREGATE_COLUMNS = ["family", *ROW_KEYS, "reference", "measure", "region", "statistic", "value"]

#: measures of a whole model row: the seeds averaged, the cost figures of the dataset's measured
#: configuration, training time and channel-pruning figures (means over seeds)
ROW_MEASURES = ["seeds", "params", "gmacs", "latency_ms", "peak_mb", "train_s", "prune_ratio",
                "prune_achieved", "prune_seconds"]

#: the statistic of a row measure
ROW_STATISTIC = "value"

#: the statistics of each metric and region (see :mod:`reports.aggregate`)
STATISTICS = ["mean", "sd", "sd_seed", "ci_lo", "ci_hi", "n", "nan", "zero", "empty", "missed", "p",
              "p_holm"]

#: statistics that count (cases or cases x seeds) and the row measures that are whole numbers
COUNTS = ("n", "nan", "zero", "empty", "missed")
WHOLE_MEASURES = ("seeds", "params")

#: statistics present only where defined (several seeds; Dice; the run recorded empty flags):
#: the aggregate leaves them out elsewhere, and the wide table has no column for one never defined
OPTIONAL_STATISTICS = ("sd_seed", "zero", "empty", "missed")
