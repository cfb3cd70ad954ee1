"""Segmentation metrics: exact, explicit about conventions, and fast.

Pure functions on one pair of binary masks (2D or 3D, bool or 0/1 numeric, any memory layout),
equal to ``medpy.metric.binary`` (0.5) to floating-point rounding wherever medpy defines a value:

- overlap: :func:`dice`, :func:`iou`, :func:`sensitivity`, :func:`precision`;
- surface distances in mm (``spacing`` per array axis, medpy's ``voxelspacing``; surfaces by
  erosion with connectivity 1, medpy's default): :func:`hd`, :func:`hd95` (medpy: 95th percentile
  of both directions pooled), :func:`assd`; plus :func:`hd95_max_directed` (MONAI's "larger of the
  directed 95th percentiles", a different number) and :func:`surface_distances`.

Empty masks, where medpy raises, follow ``empty="brats"`` (default, the BraTS challenge's rule:
both empty -> Dice 1 and distances 0; one empty -> Dice 0 and distances 373.13 mm, the diagonal of
the 240 x 240 x 155 mm BraTS volume), ``empty="diagonal"`` (as ``brats``, but one empty -> distances
equal to the diagonal of the case's own array in mm, ``sqrt(sum((shape_i * spacing_i)**2))``) or
``empty="nan"`` (nnU-Net: NaN where undefined, counted by the accumulator); see
:mod:`bench.metrics.binary`. :data:`EMPTY_CONVENTIONS` lists the names.

Multi-class: :func:`lits_classes` (liver >= 1, tumor == 2), :func:`brats_regions` (WT/TC/ET from
labels 0/1/2/4 or 0/1/2/3), :func:`split_labels` (either, by region set name: the one label ->
region implementation of lfubench), and :class:`MetricsAccumulator` (MONAI style: call per case,
``aggregate()``, ``reset()``; tidy rows for pandas; pooled "global" Dice as LiTS reports it).

Bad input raises :class:`MetricInputError`, a ``ValueError`` with a one-line message.
"""

from lfubench.bench.metrics._inputs import BRATS_MAX_DISTANCE_MM, EMPTY_CONVENTIONS, MetricInputError
from lfubench.bench.metrics.accumulator import MetricsAccumulator
from lfubench.bench.metrics.binary import (
    ALL_METRICS,
    DISTANCE_METRICS,
    OVERLAP_METRICS,
    assd,
    dice,
    evaluate_pair,
    hd,
    hd95,
    hd95_max_directed,
    iou,
    precision,
    sensitivity,
)
from lfubench.bench.metrics.regions import (
    BRATS_REGIONS,
    BRATS_SCHEMES,
    LITS_CLASSES,
    brats_regions,
    lits_classes,
    split_labels,
)
from lfubench.bench.metrics.surface import surface_distances

__all__ = [
    "ALL_METRICS",
    "BRATS_MAX_DISTANCE_MM",
    "BRATS_REGIONS",
    "BRATS_SCHEMES",
    "DISTANCE_METRICS",
    "EMPTY_CONVENTIONS",
    "LITS_CLASSES",
    "MetricInputError",
    "MetricsAccumulator",
    "OVERLAP_METRICS",
    "assd",
    "brats_regions",
    "dice",
    "evaluate_pair",
    "hd",
    "hd95",
    "hd95_max_directed",
    "iou",
    "lits_classes",
    "precision",
    "sensitivity",
    "split_labels",
    "surface_distances",
]
