"""Segmentation metrics on one pair of binary masks, equal to ``medpy.metric.binary`` where it is defined.

Overlap metrics (``dice``, ``iou``, ``sensitivity``, ``precision``) are exact ratios of voxel
counts. Distance metrics (``hd``, ``hd95``, ``assd``) use the surface distances of
:mod:`bench.metrics.surface` (medpy 0.5's definition, connectivity 1 by default) in mm:

- ``hd``: the largest distance in either direction.
- ``hd95``: ``numpy.percentile`` (linear interpolation) at 95 of the distances of *both*
  directions pooled into one list: medpy's definition.
- ``hd95_max_directed``: the larger of the two directed 95th percentiles, the definition of
  MONAI's ``compute_hausdorff_distance(percentile=95)`` (on medpy's surface voxels; DeepMind's
  ``surface_distance`` further weights by surfel area). Not comparable with ``hd95``.
- ``assd``: the mean of both directions pooled (medpy 0.5; medpy 0.4 averaged the two means).

Empty masks, where medpy raises, follow a named convention (``empty=``):

============  ======================================  =====================================
convention    both masks empty                        exactly one mask empty
============  ======================================  =====================================
``brats``     overlap metrics 1, distances 0          overlap metrics 0, distances 373.13 mm
``diagonal``  overlap metrics 1, distances 0          overlap metrics 0, distances = the
                                                      diagonal of the mask array in mm
``nan``       NaN for every metric (nnU-Net)          Dice/IoU 0, others NaN where undefined
============  ======================================  =====================================

Under ``nan`` a value is NaN exactly when its formula is undefined: Dice and IoU when both masks
are empty, sensitivity when ``ref`` is empty, precision when ``pred`` is empty, distances when
either is empty. 373.13 mm is the diagonal of a 240 x 240 x 155 mm volume (BraTS, the
challenge's rule); ``diagonal`` uses the case's own extent instead,
``sqrt(sum((shape_i * spacing_i)**2))`` (``spacing`` ``None``: 1 per axis), the right scale for a
volume of any other size (LiTS).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from lfubench.bench.metrics._inputs import (
    BRATS_MAX_DISTANCE_MM,
    MetricInputError,
    as_binary_pair,
    check_connectivity,
    check_empty,
    check_spacing,
    volume_diagonal,
)
from lfubench.bench.metrics.surface import cropped_surface_distances, union_box

__all__ = [
    "ALL_METRICS",
    "DISTANCE_METRICS",
    "OVERLAP_METRICS",
    "assd",
    "check_metrics",
    "dice",
    "evaluate_pair",
    "hd",
    "hd95",
    "hd95_max_directed",
    "iou",
    "overlap_from_counts",
    "precision",
    "sensitivity",
]

OVERLAP_METRICS = ("dice", "iou", "sensitivity", "precision")
DISTANCE_METRICS = ("hd", "hd95", "hd95_max_directed", "assd")
ALL_METRICS = OVERLAP_METRICS + DISTANCE_METRICS

Spacing = float | Sequence[float] | None


def overlap_from_counts(metric: str, tp: int, n_pred: int, n_ref: int, empty: str = "brats") -> float:
    """An overlap metric from voxel counts, with the empty-mask convention applied.

    Args:
        metric: one of ``dice``, ``iou``, ``sensitivity``, ``precision``.
        tp: voxels in both masks.
        n_pred: voxels in the prediction.
        n_ref: voxels in the reference.
        empty: ``"brats"``, ``"diagonal"`` (the same for overlap metrics) or ``"nan"``.
            Default ``"brats"``.
    """
    if metric == "dice":
        num, den = 2 * tp, n_pred + n_ref
    elif metric == "iou":
        num, den = tp, n_pred + n_ref - tp
    elif metric == "sensitivity":
        num, den = tp, n_ref
    elif metric == "precision":
        num, den = tp, n_pred
    else:
        raise MetricInputError(f"unknown overlap metric {metric!r}; choose one of {OVERLAP_METRICS}")
    if den:
        return num / float(den)
    if empty == "nan":
        return math.nan
    return 1.0 if n_pred == 0 and n_ref == 0 else 0.0


def _distance_from_surfaces(metric: str, d_pr: np.ndarray, d_rp: np.ndarray) -> float:
    if metric == "hd":
        return float(max(d_pr.max(), d_rp.max()))
    if metric == "hd95":
        return float(np.percentile(np.concatenate((d_pr, d_rp)), 95))
    if metric == "hd95_max_directed":
        return float(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)))
    if metric == "assd":
        return float(np.concatenate((d_pr, d_rp)).mean())
    raise MetricInputError(f"unknown distance metric {metric!r}; choose one of {DISTANCE_METRICS}")


def _empty_distance(
    pred_empty: bool, ref_empty: bool, empty: str, shape: Sequence[int], sp: np.ndarray
) -> float:
    """A distance metric's value when at least one mask is empty (module docstring's table)."""
    if empty == "nan":
        return math.nan
    if pred_empty and ref_empty:
        return 0.0
    return volume_diagonal(shape, sp) if empty == "diagonal" else BRATS_MAX_DISTANCE_MM


def evaluate_pair(
    pred,
    ref,
    spacing: Spacing = None,
    metrics: Iterable[str] = ALL_METRICS,
    *,
    connectivity: int = 1,
    empty: str = "brats",
) -> dict[str, float]:
    """Several metrics of one mask pair in one pass (surface distances computed once).

    Args:
        pred: predicted binary mask, 2D or 3D, bool or numeric 0/1 (any memory layout).
        ref: reference binary mask of the same shape.
        spacing: voxel size in mm per array axis, one number, or ``None`` for 1. Default ``None``.
        metrics: names from :data:`ALL_METRICS`. Default all.
        connectivity: surface structuring element (medpy's default 1). Default 1.
        empty: empty-mask convention, ``"brats"``, ``"diagonal"`` or ``"nan"`` (module docstring).
            Default ``"brats"``.

    Returns:
        ``{metric: value}`` as Python floats, in the order asked.

    Raises:
        MetricInputError (a ``ValueError``): non-binary masks, shape mismatch, wrong spacing
            length, bad connectivity, unknown metric or convention.
    """
    metrics = check_metrics(metrics)
    check_empty(empty)
    p, r = as_binary_pair(pred, ref)
    sp = check_spacing(spacing, p.ndim)
    conn = check_connectivity(connectivity, p.ndim)
    return _evaluate(p, r, sp, conn, metrics, empty)[0]


def check_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    """Return ``metrics`` as a tuple if every name is in :data:`ALL_METRICS`, else raise."""
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in ALL_METRICS]
    if unknown or not metrics:
        raise MetricInputError(
            f"unknown metric {unknown[0] if unknown else None!r}; choose from {ALL_METRICS}"
        )
    return metrics


def _evaluate(
    p: np.ndarray, r: np.ndarray, sp: np.ndarray, conn: int, metrics: tuple[str, ...], empty: str
) -> tuple[dict[str, float], tuple[int, int, int]]:
    """Metrics and the counts ``(tp, n_pred, n_ref)`` of checked bool masks."""
    box, p_empty, r_empty = union_box(p, r)
    if box is None:
        tp = n_pred = n_ref = 0
    else:  # every True voxel lies inside the box: count there
        pc, rc = p[box], r[box]
        tp, n_pred, n_ref = (int(np.count_nonzero(x)) for x in (pc & rc, pc, rc))
    out: dict[str, float] = {}
    surfaces = None
    for m in metrics:
        if m in OVERLAP_METRICS:
            out[m] = overlap_from_counts(m, tp, n_pred, n_ref, empty)
        elif p_empty or r_empty:
            out[m] = _empty_distance(p_empty, r_empty, empty, p.shape, sp)
        else:
            if surfaces is None:
                surfaces = cropped_surface_distances(pc, rc, sp, conn)
            out[m] = _distance_from_surfaces(m, *surfaces)
    return out, (tp, n_pred, n_ref)


def dice(pred, ref, *, empty: str = "brats") -> float:
    """Dice coefficient ``2|P & R| / (|P| + |R|)`` (medpy ``dc``).

    Args:
        pred: predicted binary mask, 2D or 3D, bool or numeric 0/1.
        ref: reference binary mask of the same shape.
        empty: both masks empty gives 1 under ``"brats"`` and ``"diagonal"``, NaN under ``"nan"``
            (medpy 0.5.2 returns NaN with a RuntimeWarning). Default ``"brats"``.
    """
    return evaluate_pair(pred, ref, None, ("dice",), empty=empty)["dice"]


def iou(pred, ref, *, empty: str = "brats") -> float:
    """Intersection over union (Jaccard) ``|P & R| / |P | R|`` (medpy ``jc``); empty rule as :func:`dice`."""
    return evaluate_pair(pred, ref, None, ("iou",), empty=empty)["iou"]


def sensitivity(pred, ref, *, empty: str = "brats") -> float:
    """Sensitivity (recall) ``|P & R| / |R|`` (medpy ``sensitivity``).

    Args:
        pred: predicted binary mask.
        ref: reference binary mask of the same shape.
        empty: for an empty ``ref``: 1 if ``pred`` is empty too, else 0 under ``"brats"`` and
            ``"diagonal"``; NaN under ``"nan"``. Default ``"brats"``.
    """
    return evaluate_pair(pred, ref, None, ("sensitivity",), empty=empty)["sensitivity"]


def precision(pred, ref, *, empty: str = "brats") -> float:
    """Precision ``|P & R| / |P|`` (medpy ``precision``).

    Args:
        pred: predicted binary mask.
        ref: reference binary mask of the same shape.
        empty: for an empty ``pred``: 1 if ``ref`` is empty too, else 0 under ``"brats"`` and
            ``"diagonal"``; NaN under ``"nan"``. Default ``"brats"``.
    """
    return evaluate_pair(pred, ref, None, ("precision",), empty=empty)["precision"]


def hd(pred, ref, spacing: Spacing = None, *, connectivity: int = 1, empty: str = "brats") -> float:
    """Hausdorff distance in mm: the largest surface distance either way (medpy ``hd``).

    Args:
        pred: predicted binary mask, 2D or 3D.
        ref: reference binary mask of the same shape.
        spacing: voxel size in mm per array axis, one number, or ``None`` for 1. Default ``None``.
        connectivity: surface structuring element, medpy's default. Default 1.
        empty: ``"brats"`` (0 if both empty, 373.13 mm if one is), ``"diagonal"`` (0 if both
            empty, the diagonal of the array in mm if one is) or ``"nan"``. Default ``"brats"``.
    """
    return evaluate_pair(pred, ref, spacing, ("hd",), connectivity=connectivity, empty=empty)["hd"]


def hd95(pred, ref, spacing: Spacing = None, *, connectivity: int = 1, empty: str = "brats") -> float:
    """95th-percentile Hausdorff distance in mm, medpy's definition (medpy ``hd95``).

    The surface distances of both directions are pooled into one list and its 95th percentile is
    taken with numpy's linear interpolation. For the "larger of the directed percentiles" used by
    MONAI and DeepMind see :func:`hd95_max_directed`.

    Args:
        pred: predicted binary mask, 2D or 3D.
        ref: reference binary mask of the same shape.
        spacing: voxel size in mm per array axis, one number, or ``None`` for 1. Default ``None``.
        connectivity: surface structuring element, medpy's default. Default 1.
        empty: ``"brats"`` (0 if both empty, 373.13 mm if one is), ``"diagonal"`` (0 if both
            empty, the diagonal of the array in mm if one is) or ``"nan"``. Default ``"brats"``.
    """
    return evaluate_pair(pred, ref, spacing, ("hd95",), connectivity=connectivity, empty=empty)["hd95"]


def hd95_max_directed(
    pred, ref, spacing: Spacing = None, *, connectivity: int = 1, empty: str = "brats"
) -> float:
    """The larger of the two directed 95th-percentile surface distances, in mm.

    MONAI's ``compute_hausdorff_distance(percentile=95)`` definition, on medpy's surface voxels.
    It is usually larger than the pooled :func:`hd95` (never smaller, up to percentile
    interpolation): never mix the two in one table. Args as :func:`hd95`.
    """
    return evaluate_pair(pred, ref, spacing, ("hd95_max_directed",), connectivity=connectivity, empty=empty)[
        "hd95_max_directed"
    ]


def assd(pred, ref, spacing: Spacing = None, *, connectivity: int = 1, empty: str = "brats") -> float:
    """Average symmetric surface distance in mm: the mean of both directions pooled (medpy 0.5 ``assd``).

    Args as :func:`hd95`.
    """
    return evaluate_pair(pred, ref, spacing, ("assd",), connectivity=connectivity, empty=empty)["assd"]
