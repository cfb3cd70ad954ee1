"""Input checks shared by every metric: binary masks, voxel spacing, the empty-mask convention.

Every check raises :class:`MetricInputError` (a ``ValueError``) with a one-line message that names
the argument at fault, so a bad call fails before any work is done.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lfubench.bench.errors import LfubenchError

__all__ = [
    "BRATS_MAX_DISTANCE_MM",
    "EMPTY_CONVENTIONS",
    "MetricInputError",
    "as_binary_pair",
    "check_connectivity",
    "check_empty",
    "check_spacing",
    "volume_diagonal",
]

#: Names of the selectable empty-mask conventions (see :mod:`bench.metrics`).
EMPTY_CONVENTIONS = ("brats", "diagonal", "nan")

#: Distance penalty of the ``brats`` convention when exactly one mask is empty: the diagonal of a
#: 240 x 240 x 155 mm volume, sqrt(240**2 + 240**2 + 155**2) = 373.1287 mm.
BRATS_MAX_DISTANCE_MM = math.sqrt(240.0**2 + 240.0**2 + 155.0**2)


class MetricInputError(LfubenchError, ValueError):
    """A metric was called with masks, spacing or options it cannot honour (one-line message)."""


def check_empty(empty: str) -> str:
    """Return ``empty`` if it names a known convention, else raise :class:`MetricInputError`."""
    if empty not in EMPTY_CONVENTIONS:
        raise MetricInputError(f"unknown empty-mask convention {empty!r}; choose one of {EMPTY_CONVENTIONS}")
    return empty


def _as_binary(name: str, mask) -> np.ndarray:
    """View or convert one mask to a bool array, refusing anything that is not 0/1 valued."""
    arr = np.asarray(mask)
    if arr.ndim not in (2, 3):
        raise MetricInputError(f"{name} must be a 2D or 3D binary mask, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr
    kind = arr.dtype.kind
    if kind not in "uif":
        raise MetricInputError(f"{name} must be a bool or numeric binary mask, got dtype {arr.dtype}")
    if arr.size == 0:
        return arr.astype(bool)
    if kind == "u":
        bad = arr.max() > 1
    elif kind == "i":
        bad = arr.min() < 0 or arr.max() > 1
    else:
        bad = not bool(((arr == 0) | (arr == 1)).all())
    if bad:
        values = np.unique(arr)
        odd = values[(values != 0) & (values != 1)]
        raise MetricInputError(
            f"{name} must be binary (0/1 or bool), found value {odd[0]!r} (dtype {arr.dtype}); "
            f"pass e.g. labels == k for one class"
        )
    if arr.dtype.itemsize == 1 and kind in "ui" and arr.flags.c_contiguous:
        return arr.view(np.bool_)  # 0/1 bytes are valid bools: no copy
    return arr != 0


def as_binary_pair(pred, ref) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert a prediction/reference pair to bool arrays of one shape.

    Args:
        pred: predicted mask, 2D or 3D, bool or numeric with values in {0, 1}.
        ref: reference mask, same shape as ``pred``.

    Returns:
        ``(pred, ref)`` as bool arrays (views where no conversion is needed; possibly
        non-contiguous).

    Raises:
        MetricInputError: on non-binary values, a dtype that is not bool/numeric, a rank other
            than 2 or 3, or differing shapes.
    """
    p = _as_binary("pred", pred)
    r = _as_binary("ref", ref)
    if p.shape != r.shape:
        raise MetricInputError(f"pred and ref shapes differ: {p.shape} vs {r.shape}")
    return p, r


def check_spacing(spacing: float | Sequence[float] | None, ndim: int) -> np.ndarray:
    """Return the voxel spacing as a float64 vector of length ``ndim``.

    Args:
        spacing: voxel size in mm per axis (in array axis order), one number for isotropic
            voxels, or ``None`` for 1 mm (distances then count voxels). Default ``None``.
        ndim: rank of the masks.

    Raises:
        MetricInputError: wrong length, or a value that is not a finite positive number.
    """
    if spacing is None:
        return np.ones(ndim)
    try:
        sp = np.asarray(spacing, dtype=np.float64)
    except (TypeError, ValueError):
        raise MetricInputError(f"spacing must be numbers, got {spacing!r}") from None
    if sp.ndim == 0:
        sp = np.full(ndim, float(sp))
    if sp.shape != (ndim,):
        raise MetricInputError(f"spacing must have {ndim} values for {ndim}D masks, got {list(np.ravel(sp))}")
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise MetricInputError(f"spacing values must be finite and positive, got {sp.tolist()}")
    return sp


def volume_diagonal(shape: Sequence[int], spacing: np.ndarray) -> float:
    """Diagonal in mm of an array of ``shape`` with voxel size ``spacing`` (the ``diagonal`` penalty).

    ``sqrt(sum((shape_i * spacing_i)**2))``: the extent of the whole array, voxel edges included,
    so a 240 x 240 x 155 array at 1 mm gives :data:`BRATS_MAX_DISTANCE_MM`.
    """
    extent = np.asarray(shape, dtype=np.float64) * np.asarray(spacing, dtype=np.float64)
    return float(math.sqrt(float(np.sum(extent * extent))))


def check_connectivity(connectivity: int, ndim: int) -> int:
    """Return ``connectivity`` if it is an int in 1..ndim (scipy's ``generate_binary_structure``)."""
    if isinstance(connectivity, bool) or not isinstance(connectivity, int | np.integer):
        raise MetricInputError(f"connectivity must be an int in 1..{ndim}, got {connectivity!r}")
    if not 1 <= connectivity <= ndim:
        raise MetricInputError(f"connectivity must be in 1..{ndim} for {ndim}D masks, got {connectivity}")
    return int(connectivity)
