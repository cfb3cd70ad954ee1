"""Synthetic stand-ins for LiTS 2017 and BraTS, written as NIfTI files in the real layouts.

The phantoms are the embedded default data: they run on a fresh machine (the real data sets
cannot be downloaded at run time) and exercise exactly the readers used for the real data.

CT abdomen (LiTS): an elliptical body with subcutaneous fat, textured soft tissue with fat and
bowel-gas pockets, spine and spinal canal, paraspinal muscles, aorta and IVC, two kidneys, the
stomach, a spleen whose HU is close to the liver's (the hardest distractor), and a two-lobed
liver (HU 55-68, boundary perturbed by a smooth random field) crossed by contrast-filled vessels
(labelled liver) holding 0-5 hypodense tumors (HU 28-42, radii log-uniform over 5-35 mm, some with
an enhancing rim; about one case in seven is tumor-free; the tumor burden is a few % of the liver
volume in most cases, up to ~15 % in a few, as in LiTS). CT-like correlated noise and partial-volume
blur.
Spacing is anisotropic and varies per case (in-plane FOV 330-400 mm, slab 200-260 mm: about
2.6-3.1 x 2.6-3.1 x 4.2-5.4 mm at the default 128 x 128 x 48). Labels 0/1/2.

MRI brain (BraTS): a skull-stripped brain (zeros outside) with cortex, white matter, deep grey
matter, ventricles and sulcal CSF (about 130 x 160 x 125 mm, 1.3-1.5 l); one tumor per case in
one hemisphere, of BraTS 2018's sizes: tumor core (TC) about 10-90 cm^3, whole tumor (WT) 2-20 % of
the brain, ET 65-85 % of the TC of HGG cases. HGG cases: necrotic core inside an enhancing shell
inside edema; LGG cases (every fourth case): a non-enhancing core and less edema, one in three with
a small enhancing focus. The four modalities give each tissue its
own contrast (edema bright on FLAIR/T2, enhancing tumor bright on T1ce only, CSF dark on FLAIR),
with a smooth multiplicative bias field per modality, Rician noise and a per-modality gain.
The grid spans :data:`BRATS_FOV`, BraTS's 155 mm by its 240 x 240 mm slices cropped to 192 x 192 mm
(as preprocessing crops them): 1 mm voxels at 192 x 192 x 155, 1.5 x 1.5 x 3.2 mm at the default
128 x 128 x 48, 3 x 3 x 4.8 mm at 64 x 64 x 32. BraTS 2018 labels 0/1/2/4 (2023 naming: 0/1/2/3).

Every case is generated from ``numpy.random.default_rng([seed, index])``: deterministic for a seed,
and the first cases do not change when more are asked for; so cases can be written by several
processes (``jobs``) with the same files as one.

Memory is bounded at any size: everything random about a case (shapes, intensities, the coarse
grids of the smooth random fields, vessel and tumor positions, per-slice noise seeds) is drawn
first; then the volume is made a slab of slices at a time in ``float32``, each slab with the
neighbouring slices the blur needs, and written into the case's ``int16``/``uint8`` arrays. A slab
is the same whatever the slab size. Vessels and tumors are placed from the liver found on a grid
no finer than the default shape's. The LiTS fields (texture, boundary perturbations) are defined
relative to the body (their correlation lengths count voxels of the default 128 x 128 x 48 grid),
so a 512 x 512 x 987 volume samples the same anatomy more finely; BraTS counts in mm (fields at
least 1.5 voxels).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..errors import OptionError
from .parallel import map_cases, progress_bar, resolve_jobs

log = logging.getLogger(__name__)

#: default phantom shapes, (X, Y, Z) voxels: small enough for CPU training in minutes
DEFAULT_SHAPE = {"lits": (128, 128, 48), "brats": (128, 128, 48)}
LAYOUTS = {"lits": ("lits", "msd"), "brats": ("brats2018", "brats2020", "brats2023")}
_GZIP_DEFAULT = {"lits": False, "msd": True, "brats2018": True, "brats2020": False, "brats2023": True}
_BRATS_FILE_SUFFIX = {
    "brats2018": {"flair": "_flair", "t1": "_t1", "t1ce": "_t1ce", "t2": "_t2", "seg": "_seg"},
    "brats2020": {"flair": "_flair", "t1": "_t1", "t1ce": "_t1ce", "t2": "_t2", "seg": "_seg"},
    "brats2023": {"flair": "-t2f", "t1": "-t1n", "t1ce": "-t1c", "t2": "-t2w", "seg": "-seg"},
}


#: voxels generated at once (about 16 slices of 512 x 512): bounds the float32 work arrays
SLAB_VOXELS = 1 << 22
#: the grid the LiTS phantom's random fields are defined on (z, y, x): larger volumes sample the
#: same anatomy more finely instead of getting finer texture
_LITS_FIELD_GRID = tuple(reversed(DEFAULT_SHAPE["lits"]))


# ---------------------------------------------------------------------------------------------- helpers

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


def _coords(idx, n: int, spacing: float) -> np.ndarray:
    """Coordinates in mm, centred on the volume, of voxel indices ``idx`` along an axis of ``n``."""
    return ((np.asarray(idx, dtype=np.float32) - (n - 1) / 2) * spacing).astype(np.float32)


def _grid(zi, yi, xi, dims, spacing_zyx):
    """Coordinates in mm of a sub-grid as three broadcastable arrays (z, y, x)."""
    z, y, x = (_coords(i, n, s) for i, n, s in zip((zi, yi, xi), dims, spacing_zyx, strict=True))
    return z[:, None, None], y[None, :, None], x[None, None, :]


def _ellipsoid(z, y, x, center, radii):
    """Normalised squared radius (< 1 inside) of an axis-aligned ellipsoid; centre/radii in (z, y, x) mm."""
    return (((z - center[0]) / radii[0]) ** 2 + ((y - center[1]) / radii[1]) ** 2
            + ((x - center[2]) / radii[2]) ** 2)


def _segment_distance(z, y, x, p0, p1):
    """Distance (mm) from every voxel to the segment p0-p1 (points in (z, y, x) mm)."""
    p0, d = np.asarray(p0, np.float32), np.asarray(p1, np.float32) - np.asarray(p0, np.float32)
    t = ((z - p0[0]) * d[0] + (y - p0[1]) * d[1] + (x - p0[2]) * d[2]) / float(d @ d + 1e-6)
    t = np.clip(t, 0, 1)
    return np.sqrt((z - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2 + (x - p0[2] - t * d[2]) ** 2)


def _box(axes, lo, hi) -> tuple[slice, slice, slice]:
    """The index ranges of sorted 1D coordinate arrays ``axes`` (z, y, x) within ``[lo, hi]`` mm."""
    return tuple(slice(int(np.searchsorted(a, low, "left")), int(np.searchsorted(a, high, "right")))
                 for a, low, high in zip(axes, lo, hi, strict=True))


def _field_reach(field: SmoothField, weight: float) -> float:
    """How far (in radii) ``ellipsoid + weight * field < 1`` can reach: the ellipsoid grown by the
    field's most negative value."""
    return float(np.sqrt(max(1.0, 1.0 - weight * field.low)))


def _reflect(idx: np.ndarray, n: int) -> np.ndarray:
    """Indices outside ``[0, n)`` mirrored as ``scipy.ndimage``'s ``reflect`` mode does (-1 -> 0)."""
    idx = np.where(idx < 0, -idx - 1, idx)
    return np.where(idx >= n, 2 * n - idx - 1, idx)


def _gaussian_std(sigma: float, dims: int) -> float:
    """Std of unit white noise after ``scipy.ndimage.gaussian_filter`` with ``sigma`` on ``dims`` axes
    (away from the borders)."""
    radius = int(4.0 * sigma + 0.5)
    w = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    w /= w.sum()
    return float(np.sqrt((w ** 2).sum() ** dims))


def _slices(dims) -> int:
    """Slices per slab: about :data:`SLAB_VOXELS` voxels."""
    return max(1, SLAB_VOXELS // (dims[1] * dims[2]))


# ---------------------------------------------------------------------------------------------- CT abdomen

@dataclass
class _Lits:
    """Everything random about one CT abdomen, drawn before any voxel is made."""

    dims: tuple[int, int, int]
    spacing: tuple[float, float, float]
    zext: float
    a: float
    b: float
    wobble: tuple[float, float]
    fat: float
    ys: float
    liver_hu: float
    spleen_hu: float
    liver: tuple[float, float, float]
    fields: dict[str, SmoothField]
    vessels: list[tuple[np.ndarray, np.ndarray, float, float]] = field(default_factory=list)
    tumors: list[dict] = field(default_factory=list)
    noise: tuple[int, float] = (0, 0.0)


def _lits_plan(rng: np.random.Generator, shape) -> _Lits:
    nx, ny, nz = shape
    fov = rng.uniform(330, 400)
    spacing = (rng.uniform(200, 260) / nz, fov / ny, fov / nx)
    dims = (nz, ny, nx)
    a = rng.uniform(0.36, 0.42) * fov
    b = a * rng.uniform(0.62, 0.74)
    wobble = (rng.uniform(25, 45), rng.uniform(0, 6.3))
    fat = rng.uniform(8, 20)

    def smooth(scale):
        return SmoothField(rng, dims, scale, _LITS_FIELD_GRID)

    fields = {"texture": smooth(6), "fat": smooth(5), "gas": smooth(4)}
    liver_hu = rng.uniform(55, 68)
    spleen_hu = liver_hu + rng.uniform(-8, 6)
    fields["spleen"] = smooth(8)
    zext = nz * spacing[0]
    liver = (rng.uniform(0.02, 0.14) * zext, rng.uniform(0.32, 0.4) * zext, rng.uniform(0.42, 0.5) * a)
    fields["liver_edge"], fields["liver"] = smooth(10), smooth(5)
    plan = _Lits(dims, tuple(float(s) for s in spacing), zext, a, b, wobble, fat, -b * 0.55, liver_hu,
                 spleen_hu, liver, fields)

    # vessels and tumors need the liver: find it on a grid about as fine as the default shape
    step = [-(-n // g) for n, g in zip(dims, _LITS_FIELD_GRID, strict=True)]  # at most the default grid
    axes = [np.arange(0, n, s) for n, s in zip(dims, step, strict=True)]
    _, label = _lits_layers(plan, *axes, details=False)
    liver_mask = label == 1
    z, y, x = (_coords(i, n, sp) for i, n, sp in zip(axes, dims, spacing, strict=True))
    idx = np.nonzero(liver_mask)
    if len(idx[0]):
        hilum = np.array([z[idx[0]].mean(), y[idx[1]].mean(), x[idx[2]].mean() - 0.1 * a])
        for _ in range(rng.integers(3, 6)):
            direction = rng.normal(size=3) * np.array([0.5, 1, 1])
            end = hilum + direction / np.linalg.norm(direction) * rng.uniform(30, 70)
            plan.vessels.append((hilum, end, rng.uniform(2.5, 5), liver_hu + rng.uniform(70, 110)))

    # tumors strictly inside the liver: centres at least their radius + 2 mm from its surface. As in
    # LiTS: 0-5 lesions (about one case in seven without), radii log-uniform over 5-35 mm (lesions
    # of 1-7 cm), a tumor burden of a few % of the liver volume in most cases, more in a few
    n_tumors = rng.choice(6, p=[0.15, 0.3, 0.25, 0.15, 0.1, 0.05])
    depth = ndimage.distance_transform_edt(liver_mask, sampling=[s * k for s, k in zip(spacing, step,
                                                                                        strict=True)])
    for _ in range(n_tumors):
        r = float(np.exp(rng.uniform(np.log(5), np.log(35))))
        candidates = np.argwhere(depth > r + 2)
        if not len(candidates):
            candidates = np.argwhere(depth > max(depth.max() * 0.6, 1e-3))
            r = min(r, max(depth.max() * 0.6, 3.0))
        if not len(candidates):
            break
        cz, cy, cx = candidates[rng.integers(len(candidates))]
        tumor = {"center": (z[cz], y[cy], x[cx]), "radii": r * rng.uniform(0.75, 1.25, size=3),
                 "field": smooth(4), "hu": rng.uniform(28, 42), "rim": None}
        if rng.random() < 0.3:
            tumor["rim"] = liver_hu + rng.uniform(10, 25)
        plan.tumors.append(tumor)
    plan.noise = (int(rng.integers(2 ** 63)), float(rng.uniform(7, 11)))
    return plan


def _lits_layers(p: _Lits, zi, yi, xi, details: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """HU (``float32``, before blur and noise) and labels of the voxels ``zi x yi x xi``."""
    axes = [_coords(i, n, s) for i, n, s in zip((zi, yi, xi), p.dims, p.spacing, strict=True)]
    z, y, x = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    f = p.fields
    shape = (len(zi), len(yi), len(xi))
    hu = np.full(shape, -1000.0, dtype=np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    a, b, ys = p.a, p.b, p.ys

    # body outline, subcutaneous fat, soft tissue with fat and gas pockets
    wobble = 1 + 0.04 * np.sin(z / p.wobble[0] + p.wobble[1])
    body = (x / (a * wobble)) ** 2 + (y / (b * wobble)) ** 2 < 1
    inner = (x / (a * wobble - p.fat)) ** 2 + (y / (b * wobble - p.fat)) ** 2 < 1
    hu[body] = -100
    np.copyto(hu, 22 + 14 * f["texture"].sample(zi, yi, xi), where=inner)
    hu[inner & (f["fat"].sample(zi, yi, xi) > 0.7)] = -90
    hu[inner & (y > 0) & (f["gas"].sample(zi, yi, xi) > 1.7)] = -750

    # spine, paraspinal muscles, great vessels
    r_spine = np.sqrt(x ** 2 + (y - ys) ** 2)
    np.copyto(hu, 700, where=r_spine < 18)
    np.copyto(hu, 280, where=r_spine < 15)
    np.copyto(hu, 20, where=np.sqrt(x ** 2 + (y - ys + 24) ** 2) < 7)
    for side in (-1, 1):
        np.copyto(hu, 52, where=((x - side * 38) / 24) ** 2 + ((y - ys + 18) / 16) ** 2 < 1)

    def organ(center, radii, reach=1.0):
        """The box around an ellipsoid and its coordinates there."""
        grow = np.asarray(radii) * reach
        box = _box(axes, np.asarray(center) - grow, np.asarray(center) + grow)
        zb, yb, xb = (ax[s] for ax, s in zip(axes, box, strict=True))
        return box, (zb[:, None, None], yb[None, :, None], xb[None, None, :])

    # kidneys, stomach, spleen (HU close to the liver's)
    for side, dz in ((-1, 0.02), (1, -0.05)):
        center, radii = ((dz - 0.18) * p.zext, ys + 8, side * 62), (48, 20, 24)
        box, (zb, yb, xb) = organ(center, radii)
        e = _ellipsoid(zb, yb, xb, center, radii)
        hu[box][e < 1] = 150
        hu[box][e < 0.3] = 105
    center, radii = (0.12 * p.zext, 0.3 * b, -0.35 * a), (38, 0.3 * b, 0.25 * a)
    box, (zb, yb, xb) = organ(center, radii)
    stomach = _ellipsoid(zb, yb, xb, center, radii) < 1
    hu[box][stomach] = 15
    hu[box][stomach & (yb > 0.48 * b)] = -800
    center, radii = (0.08 * p.zext, ys + 0.35 * b, -0.68 * a), (45, 0.38 * b, 0.16 * a)
    box, (zb, yb, xb) = organ(center, radii, _field_reach(f["spleen"], 0.15))
    field_sub = f["spleen"].sample(*(i[s] for i, s in zip((zi, yi, xi), box, strict=True)))
    spleen = (_ellipsoid(zb, yb, xb, center, radii) + 0.15 * field_sub < 1) & inner[box]
    hu[box][spleen] = p.spleen_hu

    # liver: a large right lobe and a smaller left lobe, perturbed boundary, inside the body wall
    zl, rz, rx = p.liver
    lobes = [((zl, -0.05 * b, 0.42 * a), (rz, 0.72 * b, rx)),
             ((zl + 0.35 * rz, 0.35 * b, -0.12 * a), (0.5 * rz, 0.32 * b, 0.4 * a))]
    reach = _field_reach(f["liver_edge"], 0.2)
    lo = np.min([np.asarray(c) - np.asarray(r) * reach for c, r in lobes], axis=0)
    hi = np.max([np.asarray(c) + np.asarray(r) * reach for c, r in lobes], axis=0)
    box = _box(axes, lo, hi)
    sub = [i[s] for i, s in zip((zi, yi, xi), box, strict=True)]
    zb, yb, xb = (ax[s] for ax, s in zip(axes, box, strict=True))
    zb, yb, xb = zb[:, None, None], yb[None, :, None], xb[None, None, :]
    right = _ellipsoid(zb, yb, xb, *lobes[0])
    left = _ellipsoid(zb, yb, xb, *lobes[1])
    liver = (np.minimum(right, left) + 0.2 * f["liver_edge"].sample(*sub) < 1) & inner[box]
    liver &= ~(np.sqrt(xb ** 2 + (yb - ys) ** 2) < 24)
    np.copyto(hu[box], p.liver_hu + 4 * f["liver"].sample(*sub), where=liver)
    label[box][liver] = 1
    np.copyto(hu, 170, where=np.sqrt((x + 18) ** 2 + (y - ys - 26) ** 2) < 11)  # aorta
    ivc = np.sqrt((x - 22) ** 2 + (y - ys - 30) ** 2) < 10
    np.copyto(hu, 130, where=ivc)
    np.copyto(label, 0, where=ivc)
    if not details:
        return hu, label

    for p0, p1, radius, value in p.vessels:  # contrast-filled, labelled liver
        box = _box(axes, np.minimum(p0, p1) - radius, np.maximum(p0, p1) + radius)
        zb, yb, xb = (ax[s] for ax, s in zip(axes, box, strict=True))
        vessel = (_segment_distance(zb[:, None, None], yb[None, :, None], xb[None, None, :], p0, p1)
                  < radius) & (label[box] == 1)
        hu[box][vessel] = value
    for t in p.tumors:
        box, (zb, yb, xb) = organ(t["center"], t["radii"], _field_reach(t["field"], 0.15))
        e = _ellipsoid(zb, yb, xb, t["center"], t["radii"])
        e = e + 0.15 * t["field"].sample(*(i[s] for i, s in zip((zi, yi, xi), box, strict=True)))
        tumor = (e < 1) & (label[box] == 1)
        hu[box][tumor] = t["hu"]
        if t["rim"] is not None:
            hu[box][tumor & (e > 0.7)] = t["rim"]
        label[box][tumor] = 2
    return hu, label


#: std of the in-plane filtered CT noise before scaling
_CT_NOISE_STD = _gaussian_std(0.7, 2)


def _lits_slab(p: _Lits, z0: int, z1: int) -> tuple[np.ndarray, np.ndarray]:
    """Slices ``z0 ... z1 - 1``: ``int16`` HU (partial-volume blur, correlated noise) and labels."""
    nz, ny, nx = p.dims
    zi = _reflect(np.arange(z0 - 1, z1 + 1), nz)  # one slice more each side for the blur across slices
    hu, label = _lits_layers(p, zi, np.arange(ny), np.arange(nx))
    hu = ndimage.gaussian_filter1d(hu, 0.3, axis=0)[1:-1]
    for axis in (1, 2):
        ndimage.gaussian_filter1d(hu, 0.6, axis=axis, output=hu)
    seed, amplitude = p.noise
    for k, z in enumerate(range(z0, z1)):
        noise = np.random.default_rng([seed, z]).standard_normal((ny, nx), dtype=np.float32)
        hu[k] += ndimage.gaussian_filter(noise, 0.7) * np.float32(amplitude / _CT_NOISE_STD)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16), label[1:-1]


def lits_case(rng: np.random.Generator, shape=DEFAULT_SHAPE["lits"]):
    """One CT-like abdomen, made a slab of slices at a time.

    Args:
        rng: the case's random generator.
        shape: ``(X, Y, Z)`` voxels.

    Returns:
        ``(hu, label, spacing)``: ``int16`` HU and ``uint8`` labels (0/1/2) in canonical ``[z, y, x]``
        order, spacing ``(z, y, x)`` in mm.
    """
    plan = _lits_plan(rng, shape)
    hu = np.empty(plan.dims, dtype=np.int16)
    label = np.empty(plan.dims, dtype=np.uint8)
    step = _slices(plan.dims)
    for z0 in range(0, plan.dims[0], step):
        z1 = min(plan.dims[0], z0 + step)
        hu[z0:z1], label[z0:z1] = _lits_slab(plan, z0, z1)
    return hu, label, plan.spacing


# ---------------------------------------------------------------------------------------------- MRI brain

#: relative intensity per tissue and modality (flair, t1, t1ce, t2)
_TISSUE = {
    "csf": (0.12, 0.25, 0.25, 1.00),
    "gm": (0.62, 0.55, 0.58, 0.70),
    "wm": (0.50, 0.80, 0.82, 0.45),
    "edema": (0.92, 0.50, 0.52, 0.90),
    "necrosis": (0.55, 0.30, 0.32, 0.95),
    "core_lgg": (0.80, 0.45, 0.47, 0.85),
    "enhancing": (0.78, 0.55, 1.35, 0.65),
}
BRATS_MODALITIES = ("flair", "t1", "t1ce", "t2")
#: the field of view the BraTS phantom's grid spans, (z, y, x) mm: the 155 mm of a BraTS volume and
#: its 240 x 240 mm slices cropped to 192 x 192 mm around the brain (as preprocessing crops them), so
#: a 192 x 192 x 155 phantom has BraTS's 1 mm voxels and smaller shapes sample the same brain coarsely
BRATS_FOV = (155.0, 192.0, 192.0)


@dataclass
class _Brats:
    """Everything random about one brain, drawn before any voxel is made."""

    dims: tuple[int, int, int]
    spacing: tuple[float, float, float]
    radii: tuple[float, float, float]
    hgg: bool
    center: tuple[float, float, float]
    core: np.ndarray
    edema: np.ndarray
    necrosis: float
    focus: float | None
    fields: dict[str, SmoothField]
    modalities: list[dict] = field(default_factory=list)


def _brats_plan(rng: np.random.Generator, shape, hgg: bool) -> _Brats:
    nx, ny, nz = shape
    dims = (nz, ny, nx)
    spacing = tuple(fov / n for fov, n in zip(BRATS_FOV, dims, strict=True))

    def smooth(mm):  # correlation length in mm, at least 1.5 voxels
        return SmoothField(rng, dims, max(1.5, mm / min(spacing[1:])))

    # a brain of about 130 x 160 x 125 mm (1.3-1.5 l)
    ra, rb, rc = (BRATS_FOV[2] * rng.uniform(0.33, 0.37), BRATS_FOV[1] * rng.uniform(0.4, 0.44),
                  BRATS_FOV[0] * rng.uniform(0.38, 0.43))
    fields = {"brain": smooth(8), "gm": smooth(4)}
    side = rng.choice([-1, 1])
    center = (rng.uniform(-0.3, 0.3) * rc, rng.uniform(-0.45, 0.45) * rb, side * rng.uniform(0.2, 0.45) * ra)
    # tumor core (TC) about 10-90 cm^3, whole tumor (WT) about 3 times that: 2-20 % of the brain, as in
    # BraTS 2018; LGG with less edema
    radius = rng.uniform(13, 28) if hgg else rng.uniform(14, 28)
    core = radius * rng.uniform(0.8, 1.2, size=3)
    fields["core"] = smooth(5)
    edema = radius * (rng.uniform(1.3, 1.7, size=3) if hgg else rng.uniform(1.25, 1.5, size=3))
    fields["edema"] = smooth(7)
    necrosis, focus = 0.0, None
    if hgg:
        necrosis = rng.uniform(0.25, 0.5)
    elif rng.random() < 0.35:
        focus = rng.uniform(3, 6)
    plan = _Brats(dims, spacing, (rc, rb, ra), hgg, center, core, edema, necrosis, focus, fields)
    for _ in BRATS_MODALITIES:
        plan.modalities.append({"texture": smooth(3), "bias": smooth(40),
                                "sigma": rng.uniform(0.025, 0.045), "seed": int(rng.integers(2 ** 63)),
                                "gain": rng.uniform(300, 1200)})
    return plan


def _brats_layers(p: _Brats, zi, yi, xi) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brain mask, tissue (0 out, 1 csf, 2 gm, 3 wm) and internal labels of the voxels ``zi x yi x xi``."""
    z, y, x = _grid(zi, yi, xi, p.dims, p.spacing)
    f = p.fields
    rc, rb, ra = p.radii
    rr = _ellipsoid(z, y, x, (0.0, 0.0, 0.0), (rc, rb, ra)) + 0.05 * f["brain"].sample(zi, yi, xi)
    brain = rr < 1
    tissue = np.zeros(brain.shape, dtype=np.uint8)
    tissue[brain] = 3
    tissue[brain & (rr > 0.74 + 0.07 * f["gm"].sample(zi, yi, xi))] = 2
    tissue[brain & (rr > 0.95)] = 1
    for side in (-1, 1):
        thalamus = _ellipsoid(z, y, x, (0.1 * rc, -0.12 * rb, side * 0.18 * ra),
                              (0.3 * rc, 0.22 * rb, 0.1 * ra))
        tissue[thalamus < 1] = 2
        ventricle = _ellipsoid(z, y, x, (0.2 * rc, 0.05 * rb, side * 0.08 * ra),
                               (0.35 * rc, 0.35 * rb, 0.06 * ra))
        tissue[ventricle < 1] = 1
    tissue[~brain] = 0

    core_e = _ellipsoid(z, y, x, p.center, p.core) + 0.15 * f["core"].sample(zi, yi, xi)
    edema_e = _ellipsoid(z, y, x, p.center, p.edema) + 0.3 * f["edema"].sample(zi, yi, xi)
    label = np.zeros(brain.shape, dtype=np.uint8)
    label[(edema_e < 1) & brain & (tissue != 1)] = 2
    if p.hgg:
        label[(core_e < 1) & brain] = 3
        label[(core_e < p.necrosis) & brain] = 1
    else:
        label[(core_e < 1) & brain] = 1
        if p.focus is not None:
            label[(_ellipsoid(z, y, x, p.center, (p.focus,) * 3) < 1) & brain] = 3
    return brain, tissue, label


def _brats_slab(p: _Brats, z0: int, z1: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Slices ``z0 ... z1 - 1`` of the four ``int16`` modalities and the labels."""
    nz, ny, nx = p.dims
    halo = 2  # the blur (sigma 0.6) reaches two slices
    zi = _reflect(np.arange(z0 - halo, z1 + halo), nz)
    yi, xi = np.arange(ny), np.arange(nx)
    brain, tissue, label = _brats_layers(p, zi, yi, xi)
    inside = slice(halo, halo + z1 - z0)
    images = {}
    for m, (name, mod) in enumerate(zip(BRATS_MODALITIES, p.modalities, strict=True)):
        signal = np.zeros(brain.shape, dtype=np.float32)
        for value, key in {1: "csf", 2: "gm", 3: "wm"}.items():
            signal[tissue == value] = _TISSUE[key][m]
        signal[label == 2] = _TISSUE["edema"][m]
        signal[label == 1] = _TISSUE["necrosis" if p.hgg else "core_lgg"][m]
        signal[label == 3] = _TISSUE["enhancing"][m]
        signal *= 1 + 0.04 * mod["texture"].sample(zi, yi, xi)
        signal = ndimage.gaussian_filter1d(signal, 0.6, axis=0)[inside]
        for axis in (1, 2):
            ndimage.gaussian_filter1d(signal, 0.6, axis=axis, output=signal)
        signal *= np.exp(0.2 * mod["bias"].sample(zi[inside], yi, xi))
        for k, z in enumerate(range(z0, z1)):  # Rician magnitude noise
            g = np.random.default_rng([mod["seed"], z])
            real = g.standard_normal((ny, nx), dtype=np.float32) * np.float32(mod["sigma"])
            imag = g.standard_normal((ny, nx), dtype=np.float32) * np.float32(mod["sigma"])
            signal[k] = np.sqrt((signal[k] + real) ** 2 + imag ** 2)
        scaled = np.clip(np.rint(signal * np.float32(mod["gain"])), 1, 32767)
        scaled[~brain[inside]] = 0
        images[name] = scaled.astype(np.int16)
    return images, label[inside]


def brats_case(rng: np.random.Generator, shape=DEFAULT_SHAPE["brats"], hgg: bool = True):
    """One MRI-like brain with a glioma, made a slab of slices at a time.

    Args:
        rng: the case's random generator.
        shape: ``(X, Y, Z)`` voxels spanning :data:`BRATS_FOV`.
        hgg: high-grade (necrosis + enhancing shell) or low-grade (non-enhancing core) tumor.

    Returns:
        ``(images, label, spacing)``: ``images`` maps flair/t1/t1ce/t2 to ``int16`` arrays in
        canonical ``[z, y, x]`` order (zero outside the brain); ``label`` is ``uint8`` in the
        internal convention (1 necrotic/non-enhancing core, 2 edema, 3 enhancing); spacing ``(z, y, x)``
        in mm (:data:`BRATS_FOV` over the shape).
    """
    plan = _brats_plan(rng, shape, hgg)
    images = {name: np.empty(plan.dims, dtype=np.int16) for name in BRATS_MODALITIES}
    label = np.empty(plan.dims, dtype=np.uint8)
    step = _slices(plan.dims)
    for z0 in range(0, plan.dims[0], step):
        z1 = min(plan.dims[0], z0 + step)
        slab, label[z0:z1] = _brats_slab(plan, z0, z1)
        for name in BRATS_MODALITIES:
            images[name][z0:z1] = slab[name]
    return images, label, plan.spacing


# ---------------------------------------------------------------------------------------------- writing

def _save(path: Path, arr_zyx: np.ndarray, spacing_zyx, flip_xy: bool) -> None:
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


def brats_group(index: int) -> str:
    """``"LGG"`` for every fourth case (index 3, 7, ...), else ``"HGG"``."""
    return "LGG" if index % 4 == 3 else "HGG"


@dataclass(frozen=True)
class _Case:
    """One phantom case to generate and the files to write it to (images first, the label last)."""

    dataset: str
    index: int
    seed: int
    shape: tuple[int, int, int]
    layout: str
    paths: tuple[Path, ...]


def _write_case(task: _Case) -> None:
    """Generate case ``task.index`` from ``default_rng([seed, index])`` and write its files."""
    rng = np.random.default_rng([task.seed, task.index])
    if task.dataset == "lits":
        hu, label, spacing = lits_case(rng, task.shape)
        flip = task.index % 2 == 0
        _save(task.paths[0], hu, spacing, flip)
        del hu
        _save(task.paths[1], label, spacing, flip)
        return
    images, label, spacing = brats_case(rng, task.shape, brats_group(task.index) == "HGG")
    for m, path in zip(BRATS_MODALITIES, task.paths, strict=False):
        _save(path, images.pop(m), spacing, flip_xy=True)
    if task.layout != "brats2023":
        label[label == 3] = 4
    _save(task.paths[-1], label, spacing, flip_xy=True)


def case_memory(dataset: str, shape) -> int:
    """Estimated peak bytes of generating one case of ``shape`` (X, Y, Z): its ``int16`` image(s) and
    ``uint8`` labels, the work arrays of a slab and the interpreter."""
    voxels = int(np.prod(shape))
    per_voxel = 3 if dataset == "lits" else 4 * 2 + 1
    return voxels * per_voxel + 40 * SLAB_VOXELS * 4 + (256 << 20)


def write_phantom(dataset: str, out: Path | str, cases: int, shape=None, seed: int = 0,
                  layout: str | None = None, gzip: bool | None = None, progress: bool = False,
                  jobs: int | None = 1) -> list[Path]:
    """Write ``cases`` phantom cases under ``out`` in a real dataset layout.

    Args:
        dataset: ``"lits"`` or ``"brats"``.
        out: the dataset root to create (files are added; existing ones with the same names replaced).
        cases: number of cases (>= 1).
        shape: ``(X, Y, Z)`` voxels; default :data:`DEFAULT_SHAPE` (128 x 128 x 48).
        seed: the seed; case ``i`` uses ``default_rng([seed, i])``.
        layout: ``"lits"`` (default; ``Training Batch 1/2/volume-N.nii``, ``segmentation-N.nii``) or
            ``"msd"`` (``Task03_Liver/imagesTr``, ``labelsTr``, ``dataset.json``); for BraTS
            ``"brats2018"`` (default; ``HGG/``/``LGG/`` case folders, ``_flair`` ... ``_seg``,
            labels 0/1/2/4), ``"brats2020"`` (flat case folders, ``.nii``) or ``"brats2023"``
            (``-t2f`` ... ``-seg``, labels 0/1/2/3).
        gzip: write ``.nii.gz`` (default: as the real layout does: LiTS and BraTS 2020 ``.nii``,
            the others ``.nii.gz``).
        progress: show a per-case progress bar (in a terminal only).
        jobs: worker processes, one case each (default 1: in this process); ``None``: the
            machine's cores, capped by the available memory over :func:`case_memory`. The files
            are the same for any number of jobs.

    Returns:
        the paths written, images before labels, case by case.
    """
    if dataset not in LAYOUTS:
        raise OptionError(f"unknown dataset {dataset!r}; choose one of {', '.join(LAYOUTS)}")
    layout = layout or LAYOUTS[dataset][0]
    if layout not in LAYOUTS[dataset]:
        raise OptionError(f"unknown {dataset} layout {layout!r}; choose one of {', '.join(LAYOUTS[dataset])}")
    if cases < 1:
        raise OptionError(f"--cases must be at least 1, got {cases}")
    shape = tuple(int(n) for n in (shape or DEFAULT_SHAPE[dataset]))
    if len(shape) != 3 or min(shape) < 8:
        raise OptionError(f"--shape must be XxYxZ with every size >= 8, got {shape}")
    jobs = resolve_jobs(jobs, cases, case_memory(dataset, shape))
    out = Path(out)
    ext = ".nii.gz" if (_GZIP_DEFAULT[layout] if gzip is None else gzip) else ".nii"
    tasks = []
    training = []
    batch1 = max(1, round(cases * 28 / 131))  # the official download: cases 0-27 of 131 in batch 1
    for i in range(cases):
        if dataset == "lits":
            if layout == "lits":
                folder = out / ("Training Batch 1" if i < batch1 else "Training Batch 2")
                paths = [folder / f"volume-{i}{ext}", folder / f"segmentation-{i}{ext}"]
            else:
                task = out / "Task03_Liver"
                paths = [task / "imagesTr" / f"liver_{i}{ext}", task / "labelsTr" / f"liver_{i}{ext}"]
                training.append({"image": f"./imagesTr/liver_{i}{ext}",
                                 "label": f"./labelsTr/liver_{i}{ext}"})
        else:
            if layout == "brats2018":
                case_id = f"Brats18_PHANTOM_{i}_1"
                folder = out / brats_group(i) / case_id
            elif layout == "brats2020":
                case_id = f"BraTS20_Training_{i + 1:03d}"
                folder = out / case_id
            else:
                case_id = f"BraTS-GLI-{i:05d}-000"
                folder = out / case_id
            suffix = _BRATS_FILE_SUFFIX[layout]
            paths = [folder / f"{case_id}{suffix[m]}{ext}" for m in (*BRATS_MODALITIES, "seg")]
        tasks.append(_Case(dataset, i, seed, shape, layout, tuple(paths)))
    desc = f"phantom {dataset}" + (f" ({jobs} jobs)" if jobs > 1 else "")
    with progress_bar(cases, desc, progress, leave=False) as bar:
        map_cases(_write_case, tasks, jobs, bar)
    if dataset == "lits" and layout == "msd":
        meta = {
            "name": "Liver", "description": "lfubench phantom in the MSD Task03_Liver layout",
            "tensorImageSize": "3D", "modality": {"0": "CT"},
            "labels": {"0": "background", "1": "liver", "2": "cancer"},
            "numTraining": cases, "numTest": 0, "training": training, "test": [],
        }
        (out / "Task03_Liver" / "dataset.json").write_text(json.dumps(meta, indent=4))
    log.debug("wrote %d %s phantom case(s) (%s layout, shape %s, seed %d, %d jobs) to %s", cases, dataset,
              layout, "x".join(map(str, shape)), seed, jobs, out)
    return [path for task in tasks for path in task.paths]
