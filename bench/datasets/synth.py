"""Building blocks of the phantoms: smooth random fields, geometry in mm, slabs, NIfTI writing.

Every phantom is generated from ``numpy.random.default_rng([seed, index])``: deterministic for a
seed, and the first cases do not change when more are asked for; so cases can be written by
several processes (``jobs``) with the same files as one.

Memory is bounded at any size: everything random about a case (shapes, intensities, the coarse
grids of the smooth random fields, positions, per-slice noise seeds) is drawn first; then the
volume is made a slab of about :data:`SLAB_VOXELS` voxels at a time in ``float32`` (a slab with
the neighbouring slices its blur needs) and written into the case's ``int16``/``uint8`` arrays. A
slab is the same whatever the slab size. A :class:`SmoothField` stores only its coarse grid and
evaluates any sub-grid.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

#: voxels generated at once (about 16 slices of 512 x 512): bounds the float32 work arrays
SLAB_VOXELS = 1 << 22


class SmoothField:
    """A smooth random field of zero mean and unit std with correlation length ``scale`` voxels.

    White noise on a coarse grid, two points per ``scale``, blurred there (Gaussian, sigma one
    coarse cell) and interpolated trilinearly (corner-aligned) to the voxel grid ``dims``. Only
    the coarse grid is stored: :meth:`sample` evaluates any sub-grid (a slab of slices), the same
    values whatever the slab. The mean and std used to normalise are those of the whole
    interpolated field, computed exactly from the coarse grid (the interpolation is linear).

    Args:
        rng: the generator the coarse noise is drawn from.
        dims: ``(Z, Y, X)`` voxels.
        scale: correlation length in voxels of ``grid``.
        grid: the grid ``scale`` counts in, per axis at most ``dims`` (default ``dims``).
    """

    def __init__(self, rng: np.random.Generator, dims, scale: float, grid=None) -> None:
        grid = dims if grid is None else tuple(min(n, g) for n, g in zip(dims, grid, strict=True))
        low = tuple(max(3, int(np.ceil(2 * n / scale)) + 2) for n in grid)
        self.coarse = ndimage.gaussian_filter(rng.standard_normal(low).astype(np.float32), 1.0, mode="wrap")
        self.dims = tuple(int(n) for n in dims)
        self.mean, self.std = self._moments()
        #: the field's smallest value anywhere (interpolation stays within the coarse values)
        self.low = float((self.coarse.min() - self.mean) / self.std)

    def _weights(self, axis: int, idx) -> tuple[np.ndarray, np.ndarray]:
        n, m = self.dims[axis], self.coarse.shape[axis]
        pos = np.asarray(idx, dtype=np.float64) * ((m - 1) / max(n - 1, 1))
        lo = np.clip(np.floor(pos).astype(np.intp), 0, m - 2)
        return lo, pos - lo

    def _moments(self) -> tuple[float, float]:
        coarse = self.coarse.astype(np.float64)
        mats = []
        for axis, n in enumerate(self.dims):
            lo, frac = self._weights(axis, np.arange(n))
            w = np.zeros((n, self.coarse.shape[axis]))
            w[np.arange(n), lo] = 1 - frac
            w[np.arange(n), lo + 1] += frac
            mats.append(w)
        total = float(np.prod(self.dims))
        mean = float(np.einsum("a,b,c,abc->", *(w.sum(axis=0) for w in mats), coarse)) / total
        gz, gy, gx = (w.T @ w for w in mats)  # symmetric
        t = np.tensordot(gz, coarse, axes=1)  # (z, y, x)
        t = np.tensordot(t, gy, axes=([1], [0]))  # (z, x, y)
        t = np.tensordot(t, gx, axes=([1], [0]))  # (z, y, x)
        second = float((t * coarse).sum()) / total
        return mean, float(np.sqrt(max(second - mean * mean, 0.0))) + 1e-6

    def sample(self, zi, yi, xi) -> np.ndarray:
        """The field at voxel indices ``zi x yi x xi`` (1D each): ``float32``, one value per voxel."""
        (lz, fz), (ly, fy), (lx, fx) = (self._weights(k, i) for k, i in enumerate((zi, yi, xi)))
        fz, fy, fx = (f.astype(np.float32) for f in (fz, fy, fx))
        c = self.coarse
        planes = c[lz] * (1 - fz)[:, None, None]
        planes += c[lz + 1] * fz[:, None, None]
        rows = planes[:, ly] * (1 - fy)[:, None]
        rows += planes[:, ly + 1] * fy[:, None]
        out = np.take(rows, lx, axis=2)
        out *= 1 - fx
        upper = np.take(rows, lx + 1, axis=2)
        upper *= fx
        out += upper
        out -= np.float32(self.mean)
        out *= np.float32(1 / self.std)
        return out


def mm_coords(idx, n: int, spacing: float) -> np.ndarray:
    """Coordinates in mm, centred on the volume, of voxel indices ``idx`` along an axis of ``n``."""
    return ((np.asarray(idx, dtype=np.float32) - (n - 1) / 2) * spacing).astype(np.float32)


def mm_grid(zi, yi, xi, dims, spacing_zyx):
    """Coordinates in mm of a sub-grid as three broadcastable arrays (z, y, x)."""
    z, y, x = (mm_coords(i, n, s) for i, n, s in zip((zi, yi, xi), dims, spacing_zyx, strict=True))
    return z[:, None, None], y[None, :, None], x[None, None, :]


def ellipsoid(z, y, x, center, radii):
    """Normalised squared radius (< 1 inside) of an axis-aligned ellipsoid; centre/radii in (z, y, x) mm."""
    return (((z - center[0]) / radii[0]) ** 2 + ((y - center[1]) / radii[1]) ** 2
            + ((x - center[2]) / radii[2]) ** 2)


def segment_distance(z, y, x, p0, p1):
    """Distance (mm) from every voxel to the segment p0-p1 (points in (z, y, x) mm)."""
    p0, d = np.asarray(p0, np.float32), np.asarray(p1, np.float32) - np.asarray(p0, np.float32)
    t = ((z - p0[0]) * d[0] + (y - p0[1]) * d[1] + (x - p0[2]) * d[2]) / float(d @ d + 1e-6)
    t = np.clip(t, 0, 1)
    return np.sqrt((z - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2 + (x - p0[2] - t * d[2]) ** 2)


def index_box(axes, lo, hi) -> tuple[slice, slice, slice]:
    """The index ranges of sorted 1D coordinate arrays ``axes`` (z, y, x) within ``[lo, hi]`` mm."""
    return tuple(slice(int(np.searchsorted(a, low, "left")), int(np.searchsorted(a, high, "right")))
                 for a, low, high in zip(axes, lo, hi, strict=True))


def field_reach(field: SmoothField, weight: float) -> float:
    """How far (in radii) ``ellipsoid + weight * field < 1`` can reach: the ellipsoid grown by the
    field's most negative value."""
    return float(np.sqrt(max(1.0, 1.0 - weight * field.low)))


def reflect(idx: np.ndarray, n: int) -> np.ndarray:
    """Indices outside ``[0, n)`` mirrored as ``scipy.ndimage``'s ``reflect`` mode does (-1 -> 0)."""
    idx = np.where(idx < 0, -idx - 1, idx)
    return np.where(idx >= n, 2 * n - idx - 1, idx)


def gaussian_std(sigma: float, dims: int) -> float:
    """Std of unit white noise after ``scipy.ndimage.gaussian_filter`` with ``sigma`` on ``dims`` axes
    (away from the borders)."""
    radius = int(4.0 * sigma + 0.5)
    w = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    w /= w.sum()
    return float(np.sqrt((w ** 2).sum() ** dims))


def slab_slices(dims) -> int:
    """Slices per slab: about :data:`SLAB_VOXELS` voxels (``dims`` is ``(Z, Y, X)``)."""
    return max(1, SLAB_VOXELS // (dims[1] * dims[2]))


def save_nifti(path: Path, arr_zyx: np.ndarray, spacing_zyx, flip_xy: bool) -> None:
    """Write a canonical ``[z, y, x]`` array; ``flip_xy`` stores it LPS-like (as DICOM-derived files are)."""
    data = np.transpose(arr_zyx, (2, 1, 0))
    nx, ny, nz = data.shape
    sz, sy, sx = spacing_zyx
    affine = np.diag([sx, sy, sz, 1.0])
    affine[:3, 3] = [-(nx - 1) * sx / 2, -(ny - 1) * sy / 2, -(nz - 1) * sz / 2]
    if flip_xy:
        data = data[::-1, ::-1, :]
        affine[0, 0], affine[1, 1] = -sx, -sy
        affine[0, 3], affine[1, 3] = (nx - 1) * sx / 2, (ny - 1) * sy / 2
    img = nib.Nifti1Image(data, affine)  # a view: nibabel writes it slice by slice, no copy
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))

