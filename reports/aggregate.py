"""The aggregate: the tidy per-case results summarised per evaluated model (dataset, label,
model, pruning level, stage), in the long form of :data:`reports.schema.AGGREGATE_COLUMNS`, and
the few readers every table, figure and sentence of a report takes its numbers from.

Per model row and metric/region the statistics are

- ``mean``: the mean over test cases of each case's value (averaged over seeds first), ``sd``
  the sd over cases and, with several seeds, ``sd_seed`` the sd over seeds of each seed's mean
  over cases;
- ``ci_lo``, ``ci_hi``: the seeded 95% percentile-bootstrap interval of that mean over cases;
- ``n`` cases with a value, ``nan`` values left undefined by the empty-mask rule, for Dice
  ``zero`` values of exactly 0 (the region missed, predicted where the reference has none, or
  no overlap), ``empty`` cases whose reference has no voxel of the region and ``missed`` cases
  whose reference has some and the prediction none (from the results' ``ref_empty`` /
  ``pred_empty`` flags, where the run recorded them) -- counted over cases x seeds, never
  averaged away;
- ``p``: the paired Wilcoxon signed-rank p-value against the dataset's reference row over the
  cases, and ``p_holm`` its Holm-adjusted value, the family being every row of the dataset for
  that metric and region.

Only the results rows of the models as trained enter (PyTorch eager, unquantized:
:func:`primary_rows`); the int8 models' scores are the deployment table's gate (:mod:`reports.gate`).

The row measures (:data:`reports.schema.ROW_MEASURES`) are the number of seeds, the efficiency
figures of each dataset's measured configuration (the first of its measurements with a figure:
device, batch, precision; in PyTorch eager, unquantized; the same one the captions name; other
runtimes and int8 are the deployment table's, :mod:`reports.tables`), training time and the pruning
figures (means over seeds).

:func:`wide` pivots the aggregate into the results table (``table.csv``) in one place; every
other reader selects by the values of ``measure``, ``region`` and ``statistic``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .schema import (
    AGGREGATE_COLUMNS,
    COUNTS,
    OPTIONAL_STATISTICS,
    ROW_KEYS,
    ROW_MEASURES,
    ROW_STATISTIC,
    STATISTICS,
    WHOLE_MEASURES,
)
from .stats import bootstrap_ci, holm, wilcoxon_p

#: metrics in the order tables show them (others after these)
METRIC_ORDER = ["dice", "hd95", "hd", "assd", "iou", "sensitivity", "precision"]

#: the identity columns of a model row
ROW_COLUMNS = ["family", *ROW_KEYS, "reference"]

_LONG_KEYS = [*ROW_KEYS, "measure", "region", "statistic", "value"]


def family(model: str) -> str:
    """The model family of a registered name (``unet_zhou2018`` -> ``unet``); a user's
    ``module:callable`` reference is its own family."""
    model = str(model)
    return model if ":" in model else model.split("_")[0]


def with_stage(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a ``stage`` column, ``"final"`` where it has none."""
    if "stage" not in df:
        df = df.assign(stage="final")
    return df.assign(stage=df["stage"].fillna("final"))


def _metric_key(metric: str) -> int:
    return METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER)


#: the runtime and quantization the results table and figures show (others: the deployment table)
PRIMARY_RUNTIME = {"runtime": "torch", "quantize": "none"}


def primary_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of an efficiency or results ``table`` of the model as trained, in PyTorch eager,
    unquantized: every table, statistic and figure but the deployment table's (every row of a
    table recorded before runtimes or int8 scores were: one without the columns, or with them
    empty)."""
    keep = pd.Series(True, index=table.index)
    for column, value in PRIMARY_RUNTIME.items():
        if column in table:
            keep &= table[column].isna() | (table[column] == value)
    return table[keep]


def primary_config(efficiency: pd.DataFrame) -> dict | None:
    """The measured configuration shown for ``efficiency`` (give one dataset's rows): the first
    (device, batch, precision) with a figure among the rows of :func:`primary_rows`."""
    efficiency = primary_rows(efficiency)
    ok = efficiency[efficiency["status"] == "ok"] if "status" in efficiency else efficiency
    if ok.empty:
        return None
    first = ok.iloc[0]
    return {"device": first["device"], "batch": int(first["batch"]), "precision": first["precision"]}


# -- building -----------------------------------------------------------------------------------


def _model_rows(res: pd.DataFrame) -> pd.DataFrame:
    """One row per evaluated model: datasets as they come, then families, labels, the model
    before pruning first, levels ascending."""
    keys = res[ROW_KEYS + ["family"]].drop_duplicates()
    order = {c: list(dict.fromkeys(res[c])) for c in ("dataset", "family", "label")}
    sort = pd.DataFrame({
        "_d": keys["dataset"].map(order["dataset"].index),
        "_f": keys["family"].map(order["family"].index),
        "_l": keys["label"].map(order["label"].index),
        "_s": (keys["stage"] != "before-pruning").astype(int),
        "level": keys["level"],
    })
    keys = keys.loc[sort.sort_values(["_d", "_f", "_l", "_s", "level"]).index]
    return keys[["family", *ROW_KEYS]].reset_index(drop=True)


def _reference_flags(rows: pd.DataFrame, reference: str | None) -> list[bool]:
    """Per dataset, the reference row: ``reference`` (a label; default the dataset's first
    label) at its highest level, final stage."""
    refs = set()
    for _, grp in rows.groupby("dataset", sort=False):
        label = reference if reference is not None else grp["label"].iloc[0]
        cand = grp[(grp["label"] == label) & (grp["stage"] == "final")]
        if len(cand):
            refs.add(int(cand["level"].idxmax()))
    return [k in refs for k in range(len(rows))]


def _long(frame: pd.DataFrame, measures, region: str = "", statistic: str = ROW_STATISTIC) -> pd.DataFrame:
    """Row measures of a frame keyed by :data:`ROW_KEYS`, in long form."""
    present = [m for m in measures if m in frame]
    out = frame[ROW_KEYS + present].melt(id_vars=ROW_KEYS, var_name="measure", value_name="value")
    return out.assign(region=region, statistic=statistic)[_LONG_KEYS]


def _costs(rows: pd.DataFrame, efficiency: pd.DataFrame | None) -> pd.DataFrame:
    """Params, GMACs, latency and peak memory of each dataset's own measured configuration."""
    if efficiency is None or efficiency.empty:
        return pd.DataFrame(columns=_LONG_KEYS)
    parts = []
    for _, eff in primary_rows(with_stage(efficiency)).groupby("dataset", sort=False):
        cfg = primary_config(eff)
        if cfg is None:
            continue
        sel = eff[(eff["device"] == cfg["device"]) & (eff["batch"] == cfg["batch"])
                  & (eff["precision"] == cfg["precision"])]
        ok = sel["status"] == "ok"
        sel = sel.assign(latency_ms=sel["latency_ms"].where(ok), peak_mb=sel["peak_mb"].where(ok))
        parts.append(sel.groupby(ROW_KEYS, sort=False).agg(
            params=("params", "first"), gmacs=("gmacs", "first"),
            latency_ms=("latency_ms", "mean"), peak_mb=("peak_mb", "mean")).reset_index())
    if not parts:
        return pd.DataFrame(columns=_LONG_KEYS)
    costs = rows[ROW_KEYS].merge(pd.concat(parts, ignore_index=True), on=ROW_KEYS, how="inner")
    return _long(costs, ["params", "gmacs", "latency_ms", "peak_mb"])


def _item_figures(rows: pd.DataFrame, items: pd.DataFrame | None) -> pd.DataFrame:
    """Training time and the pruning figures of each row's items (means over seeds); a row
    before pruning has the full width (ratios 0)."""
    if items is None or items.empty:
        return pd.DataFrame(columns=_LONG_KEYS)
    grouped = items.groupby(["dataset", "label"], sort=False)
    extra = pd.DataFrame({"train_s": grouped["train_seconds"].mean()})
    for column in ("prune_ratio", "prune_achieved", "prune_seconds"):
        if column in items and items[column].notna().any():
            extra[column] = grouped[column].mean()
    figures = rows[ROW_KEYS].merge(extra.reset_index(), on=["dataset", "label"], how="inner")
    before = figures["stage"] == "before-pruning"
    for column in ("prune_ratio", "prune_achieved"):
        if column in figures:
            figures.loc[before, column] = 0.0
    return _long(figures, ["train_s", "prune_ratio", "prune_achieved", "prune_seconds"])


def case_statistics(sub: pd.DataFrame, metric: str, seed: int) -> dict[str, float]:
    """The statistics of one model row's values of one metric and region (``sub``: its results
    rows, every case x seed); the optional ones only where defined."""
    per_case = sub.groupby("case", sort=False)["value"].mean()  # each case averaged over seeds
    per_seed = sub.groupby("seed", sort=False)["value"].mean()  # each seed averaged over cases
    vals = per_case.dropna()
    lo, hi = bootstrap_ci(vals.to_numpy(), seed=seed)
    out = {
        "mean": float(vals.mean()) if len(vals) else np.nan,
        "sd": float(vals.std(ddof=1)) if len(vals) > 1 else np.nan,
        "ci_lo": lo,
        "ci_hi": hi,
        "n": len(vals),
        "nan": int(sub["value"].isna().sum()),
    }
    if per_seed.notna().sum() > 1:
        out["sd_seed"] = float(per_seed.dropna().std(ddof=1))
    if metric == "dice":
        out["zero"] = int((sub["value"] == 0).sum())
    flags = sub[["ref_empty", "pred_empty"]].dropna() if {"ref_empty", "pred_empty"} <= set(sub) else None
    if flags is not None and len(flags):
        ref_empty, pred_empty = flags["ref_empty"].astype(bool), flags["pred_empty"].astype(bool)
        out["empty"] = int(ref_empty.sum())
        out["missed"] = int((~ref_empty & pred_empty).sum())
    return out


def _tests(rows: pd.DataFrame, cases: list[pd.Series | None]) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the Wilcoxon p-value against its dataset's reference row over the paired cases
    (NaN for the reference itself and rows without values), and Holm's adjustment per dataset."""
    p = np.full(len(rows), np.nan)
    for _, grp in rows.groupby("dataset", sort=False):
        ref = next((k for k in grp.index if rows.at[k, "reference"]), None)
        for k in grp.index:
            if ref is None or k == ref or cases[k] is None or cases[ref] is None:
                continue
            a, b = cases[k].align(cases[ref], join="inner")
            p[k] = wilcoxon_p(a.to_numpy(), b.to_numpy())
    p_holm = np.full(len(rows), np.nan)
    for _, grp in rows.groupby("dataset", sort=False):
        p_holm[grp.index] = holm(p[grp.index])
    return p, p_holm


def _metric_statistics(rows: pd.DataFrame, res: pd.DataFrame, seed: int) -> list[pd.DataFrame]:
    """The statistics of every metric and region (metrics in :data:`METRIC_ORDER`, regions as
    they come), in long form."""
    groups = dict(iter(res.groupby(ROW_KEYS + ["metric", "region"], sort=False, dropna=False)))
    pairs = list(dict.fromkeys(zip(res["metric"], res["region"], strict=True)))
    out = []
    for metric, region in sorted(pairs, key=lambda p: _metric_key(p[0])):
        subs = [groups.get((*r, metric, region)) for r in rows[ROW_KEYS].itertuples(index=False)]
        cases = [None if s is None else s.groupby("case", sort=False)["value"].mean() for s in subs]
        p, p_holm = _tests(rows, cases)
        records = []
        for k, sub in enumerate(subs):
            if sub is None:
                continue
            stats = case_statistics(sub, metric, seed) | {"p": p[k], "p_holm": p_holm[k]}
            key = dict(zip(ROW_KEYS, rows.loc[k, ROW_KEYS], strict=True))
            records += [{**key, "measure": metric, "region": region, "statistic": s, "value": stats[s]}
                        for s in STATISTICS if s in stats]
        out.append(pd.DataFrame(records, columns=_LONG_KEYS))
    return out


def aggregate(
    results: pd.DataFrame,
    efficiency: pd.DataFrame | None = None,
    items: pd.DataFrame | None = None,
    reference: str | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The aggregate of ``results`` (with the row measures of ``efficiency`` and ``items``) in
    the long form of :data:`reports.schema.AGGREGATE_COLUMNS`, model rows in table order (rows
    of one family together). ``reference`` (a label) is the model the Wilcoxon tests compare
    against (default: each dataset's first label); ``seed`` the bootstrap's. Only the results of
    the models as trained count (:func:`primary_rows`; int8 scores are the deployment table's)."""
    results = primary_rows(results)
    if results.empty:
        return pd.DataFrame(columns=AGGREGATE_COLUMNS)
    res = with_stage(results)
    res = res.assign(family=res["model"].map(family))
    rows = _model_rows(res)
    rows["reference"] = _reference_flags(rows, reference)
    seeds = res.groupby(ROW_KEYS, sort=False)["seed"].nunique().rename("seeds").reset_index()
    parts = [
        _long(rows[ROW_KEYS].merge(seeds, on=ROW_KEYS, how="left"), ["seeds"]),
        _costs(rows, efficiency),
        _item_figures(rows, items),
        *_metric_statistics(rows, res, seed),
    ]
    long = pd.concat([p for p in parts if len(p)], ignore_index=True)
    long["value"] = long["value"].astype(float)
    out = long.merge(rows, on=ROW_KEYS, how="left")
    return out[AGGREGATE_COLUMNS]


# -- reading ------------------------------------------------------------------------------------


def _numbered(agg: pd.DataFrame) -> pd.DataFrame:
    return agg.assign(_row=agg.groupby(ROW_KEYS, sort=False).ngroup())


def model_rows(agg: pd.DataFrame) -> pd.DataFrame:
    """The model rows of ``agg`` (family, dataset, label, model, level, stage, reference) in
    table order, indexed 0, 1, ...: the index every reader below aligns to."""
    return agg.drop_duplicates(ROW_KEYS)[ROW_COLUMNS].reset_index(drop=True)


def _typed(values: pd.Series | pd.DataFrame, measure: str, statistic: str):
    return values.astype("Int64") if measure in WHOLE_MEASURES or statistic in COUNTS else values


def series(agg: pd.DataFrame, measure: str, region: str = "", statistic: str | None = None) -> pd.Series:
    """One measure per model row of ``agg`` (aligned to :func:`model_rows`; NaN where absent):
    a row measure, or the ``statistic`` (default ``mean``) of a metric in ``region``. Counts
    and whole numbers come as ``Int64``."""
    statistic = statistic or (ROW_STATISTIC if measure in ROW_MEASURES else "mean")
    num = _numbered(agg)
    sel = num[(num["measure"] == measure) & (num["region"] == region) & (num["statistic"] == statistic)]
    values = sel.set_index("_row")["value"].reindex(range(num["_row"].max() + 1 if len(num) else 0))
    return _typed(values.rename(None).reset_index(drop=True), measure, statistic)


def regions(agg: pd.DataFrame, metric: str) -> list[str]:
    """The regions ``metric`` was computed for in ``agg``, as they come."""
    sel = agg[(agg["measure"] == metric) & (agg["statistic"] == "mean")]
    return list(dict.fromkeys(sel["region"]))


def metric_regions(agg: pd.DataFrame) -> list[tuple[str, str]]:
    """The (metric, region) pairs of ``agg`` with at least one mean value, metrics in order."""
    sel = agg[(agg["statistic"] == "mean") & ~agg["measure"].isin(ROW_MEASURES) & agg["value"].notna()]
    pairs = list(dict.fromkeys(zip(sel["measure"], sel["region"], strict=True)))
    return sorted(pairs, key=lambda p: _metric_key(p[0]))


def metrics(agg: pd.DataFrame) -> list[str]:
    """The metrics of ``agg`` with a value, in order."""
    return list(dict.fromkeys(m for m, _ in metric_regions(agg)))


def mean_score(agg: pd.DataFrame, metric: str = "dice") -> pd.Series:
    """Per model row (aligned to :func:`model_rows`): the mean of ``metric`` over every region
    of its dataset; NaN where a region has no value (a model missing a region is never best)."""
    rows = model_rows(agg)
    out = pd.Series(np.nan, index=rows.index)
    for dataset, part in agg.groupby("dataset", sort=False):
        index = rows.index[rows["dataset"] == dataset]
        means = [series(part, metric, r).to_numpy(dtype=float) for r in regions(part, metric)]
        if means:
            out[index] = np.mean(np.vstack(means), axis=0)  # NaN wherever one region is
    return out


def no_values(agg: pd.DataFrame, metric: str = "dice") -> list[tuple[int, str]]:
    """(model row, region) pairs of ``agg`` without a mean of ``metric``: no case had a value."""
    out = []
    for region in regions(agg, metric):
        mean = series(agg, metric, region)
        out += [(int(k), region) for k in mean.index[mean.isna()]]
    return sorted(out)


def wide(agg: pd.DataFrame) -> pd.DataFrame:
    """The aggregate as the results table (``table.csv``): one row per model row, its identity
    and row measures, ``reference``, then per ``<metric> <region>`` the mean (named so) and
    each statistic (``<metric> <region> <statistic>``); an optional statistic never defined has
    no column."""
    rows = model_rows(agg)
    columns = {c: rows[c] for c in ("family", *ROW_KEYS)}
    present = set(agg["measure"])
    for measure in ROW_MEASURES:
        if measure in present:
            columns[measure] = series(agg, measure)
    columns["reference"] = rows["reference"].astype(bool)
    pairs = list(dict.fromkeys(
        (m, r) for m, r in zip(agg["measure"], agg["region"], strict=True) if m not in ROW_MEASURES))
    for metric, region in sorted(pairs, key=lambda p: _metric_key(p[0])):
        for statistic in STATISTICS:
            values = series(agg, metric, region, statistic)
            if statistic in OPTIONAL_STATISTICS and values.isna().all():
                continue
            name = f"{metric} {region}" + ("" if statistic == "mean" else f" {statistic}")
            columns[name] = values
    return pd.DataFrame(columns)
