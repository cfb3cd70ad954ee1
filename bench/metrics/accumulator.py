"""A MONAI-style metric accumulator: call it once per case, then ``aggregate()``; ``reset()`` to reuse.

Per-case results are tidy rows (one per case x region x metric), ready for
``pandas.DataFrame(acc.rows())`` and JSON (``rows(nan_as_none=True)``), as nnU-Net's evaluation
writes them. Aggregates never drop a case silently: each summary row says how many cases had an
empty reference, an empty prediction, a missed object, or a NaN value left out of the mean.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import numpy as np

from lfubench.bench.metrics._inputs import (
    MetricInputError,
    as_binary_pair,
    check_connectivity,
    check_empty,
    check_spacing,
)
from lfubench.bench.metrics.binary import (
    OVERLAP_METRICS,
    Spacing,
    _evaluate,
    check_metrics,
    overlap_from_counts,
)
from lfubench.bench.metrics.regions import REGION_SETS, iter_regions

__all__ = ["MetricsAccumulator"]

logger = logging.getLogger(__name__)


class MetricsAccumulator:
    """Collect per-case segmentation metrics and summarise them.

    Example::

        acc = MetricsAccumulator(("dice", "hd95"), regions="lits", spacing=(0.7, 0.7, 2.5))
        for case, pred, ref in cases:
            acc(pred, ref, case=case)           # label maps 0/1/2 -> liver, tumor
        df = pandas.DataFrame(acc.rows())        # case, region, metric, value, pred_empty, ref_empty
        summary = pandas.DataFrame(acc.aggregate())

    Args:
        metrics: names from :data:`bench.metrics.ALL_METRICS`. Default ``("dice", "hd95")``.
        regions: ``None`` (default): inputs are binary masks, reported as region ``"foreground"``;
            ``"lits"``: label maps scored as ``liver`` (>= 1) and ``tumor`` (== 2);
            ``"brats"``: label maps scored as ``WT``, ``TC``, ``ET`` (see ``scheme``), and
            :meth:`aggregate` adds their ``mean``.
        spacing: default voxel size in mm per array axis (``None``: 1). Default ``None``.
        connectivity: surface structuring element of the distance metrics. Default 1.
        empty: empty-mask convention, ``"brats"``, ``"diagonal"`` (a missed or spurious region gets
            the diagonal of that case's array in mm, from its shape and spacing) or ``"nan"``
            (see :mod:`bench.metrics`). Default ``"brats"``.
        scheme: BraTS label scheme for ``regions="brats"`` (:func:`bench.metrics.brats_regions`).
            Default ``"auto"``.
    """

    def __init__(
        self,
        metrics: Iterable[str] = ("dice", "hd95"),
        regions: str | None = None,
        *,
        spacing: Spacing = None,
        connectivity: int = 1,
        empty: str = "brats",
        scheme: str = "auto",
    ) -> None:
        self.metrics = check_metrics(metrics)
        if regions is not None and regions not in REGION_SETS:
            raise MetricInputError(f"unknown region set {regions!r}; choose None, 'lits' or 'brats'")
        self.regions = regions
        self.spacing = spacing
        self.connectivity = connectivity
        self.empty = check_empty(empty)
        self.scheme = scheme
        self.reset()

    def reset(self) -> None:
        """Forget every case recorded so far."""
        self._rows: list[dict] = []
        self._counts: dict[str, list[tuple[int, int, int]]] = {}
        self._cases: list[str] = []

    def __len__(self) -> int:
        return len(self._cases)

    def __call__(self, pred, ref, case: str | None = None, spacing: Spacing = None) -> list[dict]:
        """Score one case and record it.

        Args:
            pred: prediction, a binary mask (``regions=None``) or a label map.
            ref: reference of the same shape and kind.
            case: case identifier; default ``"case_<n>"`` in call order. Must be unique.
            spacing: voxel size for this case, overriding the accumulator's. Default ``None``.

        Returns:
            The rows recorded for this case.
        """
        case = f"case_{len(self._cases):04d}" if case is None else str(case)
        if case in self._cases:
            raise MetricInputError(f"case {case!r} was already recorded; case ids must be unique")
        if self.regions is None:
            pairs = iter([("foreground", as_binary_pair(pred, ref))])
        else:  # one region's masks at a time: a LiTS-sized case holds two masks, not four
            pm = iter_regions(pred, self.regions, scheme=self.scheme)
            rm = iter_regions(ref, self.regions, scheme=self.scheme)
            pairs = ((name, as_binary_pair(p, r)) for (name, p), (_, r) in zip(pm, rm, strict=True))
        ndim = np.ndim(pred)
        sp = check_spacing(self.spacing if spacing is None else spacing, ndim)
        conn = check_connectivity(self.connectivity, ndim)
        rows = []
        for region, (p, r) in pairs:
            values, counts = _evaluate(p, r, sp, conn, self.metrics, self.empty)
            self._counts.setdefault(region, []).append(counts)
            _, n_pred, n_ref = counts
            rows += [
                {
                    "case": case,
                    "region": region,
                    "metric": metric,
                    "value": value,
                    "pred_empty": n_pred == 0,
                    "ref_empty": n_ref == 0,
                }
                for metric, value in values.items()
            ]
        self._cases.append(case)
        self._rows += rows
        return rows

    def rows(self, nan_as_none: bool = False) -> list[dict]:
        """All per-case rows (copies); ``nan_as_none=True`` makes them strict JSON (NaN -> None)."""
        out = [dict(row) for row in self._rows]
        if nan_as_none:
            for row in out:
                if math.isnan(row["value"]):
                    row["value"] = None
        return out

    def aggregate(self) -> list[dict]:
        """One summary row per region and metric.

        Each row holds ``mean``, ``median`` and ``std`` over the cases whose value is not NaN, and the
        counts ``n_cases``, ``n_valid``, ``n_nan`` (left out of the statistics), ``n_ref_empty``,
        ``n_pred_empty``, ``n_both_empty``, ``n_missed`` (reference not empty, prediction empty) and
        ``n_spurious`` (reference empty, prediction not). Overlap metrics also get ``pooled``: the
        metric of all voxels of all cases pooled (for ``dice``, the LiTS "Dice global"); ``None`` for
        distances. With ``regions="brats"`` a region ``mean`` averages the WT/TC/ET means (NaN if a
        region has no valid case).
        """
        summary = []
        for region, counts in self._counts.items():
            c = np.asarray(counts, dtype=np.int64).reshape(-1, 3)
            pred_empty, ref_empty = c[:, 1] == 0, c[:, 2] == 0
            flags = {
                "n_ref_empty": int(ref_empty.sum()),
                "n_pred_empty": int(pred_empty.sum()),
                "n_both_empty": int((pred_empty & ref_empty).sum()),
                "n_missed": int((pred_empty & ~ref_empty).sum()),
                "n_spurious": int((~pred_empty & ref_empty).sum()),
            }
            for metric in self.metrics:
                values = np.array(
                    [
                        row["value"]
                        for row in self._rows
                        if row["region"] == region and row["metric"] == metric
                    ]
                )
                valid = values[~np.isnan(values)]
                if len(valid) < len(values):
                    logger.info(
                        "%s %s: %d of %d cases are NaN (empty masks, convention %r) and left out of the mean",
                        region,
                        metric,
                        len(values) - len(valid),
                        len(values),
                        self.empty,
                    )
                pooled = None
                if metric in OVERLAP_METRICS:
                    tp, n_pred, n_ref = (int(x) for x in c.sum(axis=0))
                    pooled = overlap_from_counts(metric, tp, n_pred, n_ref, self.empty)
                summary.append(
                    {
                        "region": region,
                        "metric": metric,
                        "mean": float(valid.mean()) if len(valid) else math.nan,
                        "median": float(np.median(valid)) if len(valid) else math.nan,
                        "std": float(valid.std()) if len(valid) else math.nan,
                        "pooled": pooled,
                        "n_cases": len(values),
                        "n_valid": len(valid),
                        "n_nan": len(values) - len(valid),
                        **flags,
                    }
                )
        if self.regions == "brats" and summary:
            for metric in self.metrics:
                parts = [row for row in summary if row["metric"] == metric]
                summary.append(
                    {
                        "region": "mean",
                        "metric": metric,
                        "mean": float(np.mean([row["mean"] for row in parts])),
                        "median": math.nan,
                        "std": math.nan,
                        "pooled": None,
                        "n_cases": parts[0]["n_cases"],
                        **{
                            k: sum(row[k] for row in parts)
                            for k in parts[0]
                            if k.startswith("n_") and k != "n_cases"
                        },
                    }
                )
        return summary
