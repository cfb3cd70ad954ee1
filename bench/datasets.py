"""The one table of dataset facts: what each dataset feeds a model and how it is scored.

Every part of lfubench that needs a fact about a dataset -- the plan schema, the item
pipeline, evaluation, the data command line, the readers and preprocessing -- reads it here:

==========  ===========  =======  ===============  ======================  =====  =====================
dataset     in channels  classes  scored regions   internal labels         size   empty-mask rule
==========  ===========  =======  ===============  ======================  =====  =====================
``lits``    3 (2.5D)     3        liver, tumor     0 bg, 1 liver, 2 tumor  256    ``diagonal``
``brats``   4 (MRI)      4        WT, TC, ET       0, 1 NCR/NET, 2 ED,     192    ``brats``
                                                   3 ET
==========  ===========  =======  ===============  ======================  =====  =====================

``size`` is the default in-plane network input (LiTS: resize target; BraTS: crop/pad size).
The empty-mask rules are those of :mod:`bench.metrics`: ``brats`` is the BraTS challenge's
(one mask empty: HD95 373.13 mm, the diagonal of its 240 x 240 x 155 mm volume); ``diagonal``
penalises with the diagonal of the case's own volume in mm, the right scale for any other
dataset; ``nan`` leaves such cases undefined and counts them.

Plan dataset *kinds* map onto these datasets: ``lits`` and ``phantom-lits`` are LiTS,
``brats`` and ``phantom-brats`` are BraTS.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import LfubenchError


@dataclass(frozen=True)
class DatasetInfo:
    """The facts of one dataset.

    Attributes:
        name: ``"lits"`` or ``"brats"``.
        title: the name in reports (the challenge and year).
        in_channels: input channels of a model (LiTS: 3 adjacent slices; BraTS: 4 modalities).
        num_classes: output classes including background (internal labels ``0..num_classes-1``).
        labels: the internal label values and their meaning, as the cache holds them.
        regions: the scored classes/regions, in table order.
        region_set: the region set of :func:`bench.metrics.split_labels`.
        label_scheme: the label scheme of :func:`bench.metrics.split_labels` for internal labels.
        default_size: default in-plane input size (divisible by 16).
        empty: default empty-mask rule of the evaluation.
    """

    name: str
    title: str
    in_channels: int
    num_classes: int
    labels: tuple[str, ...]
    regions: tuple[str, ...]
    region_set: str
    label_scheme: str
    default_size: int
    empty: str


DATASETS: dict[str, DatasetInfo] = {
    "lits": DatasetInfo(
        name="lits", title="LiTS 2017", in_channels=3, num_classes=3,
        labels=("background", "liver", "tumor"), regions=("liver", "tumor"),
        region_set="lits", label_scheme="auto", default_size=256, empty="diagonal"),
    "brats": DatasetInfo(
        name="brats", title="BraTS 2018", in_channels=4, num_classes=4,
        labels=("background", "necrotic/non-enhancing core", "edema", "enhancing tumor"),
        regions=("WT", "TC", "ET"), region_set="brats", label_scheme="brats2023", default_size=192,
        empty="brats"),
}

#: plan dataset kinds -> dataset
KINDS: dict[str, str] = {"phantom-lits": "lits", "phantom-brats": "brats", "lits": "lits", "brats": "brats"}


def dataset_info(name: str) -> DatasetInfo:
    """The facts of dataset ``name`` (or of a plan kind such as ``phantom-lits``)."""
    key = KINDS.get(name, name)
    if key not in DATASETS:
        raise LfubenchError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[key]
