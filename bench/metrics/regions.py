"""Label maps to the binary masks the LiTS and BraTS challenges score.

- LiTS 2017: ``liver`` = label >= 1 (liver and tumor), ``tumor`` = label 2.
- BraTS: ``WT`` (whole tumor), ``TC`` (tumor core), ``ET`` (enhancing tumor), from one of the
  label schemes in :data:`BRATS_SCHEMES`.
"""

from __future__ import annotations

import numpy as np

from lfubench.bench.metrics._inputs import MetricInputError

__all__ = ["BRATS_REGIONS", "BRATS_SCHEMES", "LITS_CLASSES", "brats_regions", "iter_regions", "lits_classes",
           "split_labels"]

LITS_CLASSES = ("liver", "tumor")
BRATS_REGIONS = ("WT", "TC", "ET")

#: Label sets of each BraTS region per scheme.
#: ``brats``: BraTS 2018-2021 (1 necrotic/non-enhancing core, 2 edema, 4 enhancing).
#: ``brats2023``: BraTS 2023 (1 necrotic core, 2 edema, 3 enhancing).
#: ``msd``: Medical Segmentation Decathlon Task01 (1 edema, 2 non-enhancing, 3 enhancing).
BRATS_SCHEMES: dict[str, dict[str, tuple[int, ...]]] = {
    "brats": {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)},
    "brats2023": {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)},
    "msd": {"WT": (1, 2, 3), "TC": (2, 3), "ET": (3,)},
}


def _labels(name: str, labels) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim not in (2, 3):
        raise MetricInputError(f"{name} must be a 2D or 3D label map, got shape {arr.shape}")
    if arr.dtype == np.bool_ or arr.dtype.kind not in "ui":
        if arr.dtype.kind == "f" and np.array_equal(arr, np.round(arr)):
            return arr.astype(np.int64)
        raise MetricInputError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    return arr


_SLAB = 1 << 22  # voxels counted at once (32 MiB of int64)


def _check_values(name: str, arr: np.ndarray, allowed: tuple[int, ...]) -> set[int]:
    """The labels present in ``arr`` (O(N), no sort), refusing any outside ``allowed``."""
    if arr.size == 0:
        return set()
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi > max(allowed):
        raise MetricInputError(f"{name} has label {lo if lo < 0 else hi}, expected only labels {allowed}")
    counts = np.zeros(hi + 1, dtype=np.int64)
    flat = arr.reshape(-1)
    for start in range(0, flat.size, _SLAB):  # bincount copies to 8-byte ints: a slab at a time
        counts += np.bincount(flat[start:start + _SLAB], minlength=hi + 1)
    present = {int(v) for v in np.flatnonzero(counts)}
    bad = sorted(present - set(allowed))
    if bad:
        raise MetricInputError(f"{name} has label {bad[0]}, expected only labels {allowed}")
    return present


def lits_classes(labels) -> dict[str, np.ndarray]:
    """LiTS masks from a label map with 0 background, 1 liver, 2 tumor.

    Args:
        labels: integer label map, 2D or 3D, values in {0, 1, 2}.

    Returns:
        ``{"liver": labels >= 1, "tumor": labels == 2}`` (bool arrays).

    Raises:
        MetricInputError: non-integer labels or a label outside {0, 1, 2}.
    """
    return dict(_lits_masks(labels))


def _lits_masks(labels):
    arr = _labels("labels", labels)
    _check_values("labels", arr, (0, 1, 2))
    yield "liver", arr >= 1
    yield "tumor", arr == 2


def brats_regions(labels, scheme: str = "auto") -> dict[str, np.ndarray]:
    """BraTS evaluation regions WT, TC and ET from a label map.

    Args:
        labels: integer label map, 2D or 3D.
        scheme: a key of :data:`BRATS_SCHEMES`, or ``"auto"`` (default): ``brats`` (0/1/2/4) if
            label 4 occurs, else ``brats2023`` (0/1/2/3). Both give the same masks when neither
            3 nor 4 occurs. MSD Task01 data (1 = edema) needs ``scheme="msd"``: auto cannot tell.

    Returns:
        ``{"WT": ..., "TC": ..., "ET": ...}`` (bool arrays).

    Raises:
        MetricInputError: unknown scheme, non-integer labels, labels 3 and 4 together under
            ``auto``, or a label the scheme does not know.
    """
    return dict(_brats_masks(labels, scheme))


def _brats_masks(labels, scheme: str):
    if scheme != "auto" and scheme not in BRATS_SCHEMES:
        raise MetricInputError(
            f"unknown BraTS label scheme {scheme!r}; choose 'auto' or one of {tuple(BRATS_SCHEMES)}"
        )
    arr = _labels("labels", labels)
    if scheme == "auto":
        values = _check_values("labels", arr, (0, 1, 2, 3, 4))
        if 3 in values and 4 in values:
            raise MetricInputError("labels has both 3 and 4: cannot infer the BraTS scheme, pass scheme=")
        scheme = "brats" if 4 in values else "brats2023"
    else:
        _check_values(
            "labels", arr, (0, *sorted({v for labs in BRATS_SCHEMES[scheme].values() for v in labs}))
        )
    for region, labs in BRATS_SCHEMES[scheme].items():
        yield region, np.isin(arr, labs)


#: region set -> its masks, one region at a time, from ``(labels, scheme)``
REGION_SETS = {
    "lits": lambda labels, scheme: _lits_masks(labels),
    "brats": _brats_masks,
}


def split_labels(labels, regions: str, *, scheme: str = "auto") -> dict[str, np.ndarray]:
    """Masks for a region set: ``"lits"`` (:func:`lits_classes`) or ``"brats"`` (:func:`brats_regions`)."""
    return dict(iter_regions(labels, regions, scheme=scheme))


def iter_regions(labels, regions: str, *, scheme: str = "auto"):
    """The masks of :func:`split_labels` one region at a time, ``(name, mask)``: for large volumes,
    where holding every region's mask at once would multiply the memory. The labels are checked
    before the first mask is made."""
    if regions not in REGION_SETS:
        raise MetricInputError(f"unknown region set {regions!r}; choose 'lits' or 'brats'")
    return REGION_SETS[regions](labels, scheme)
