"""Exact surface distances between two binary masks, fast.

Definition (medpy 0.5, ``medpy.metric.binary.__surface_distances``): the *surface* of a mask is
the mask minus its binary erosion by ``generate_binary_structure(ndim, connectivity)`` with zero
outside the volume (scipy's ``border_value=0``, so an object touching the volume edge has its edge
voxels on the surface). The directed distances from A to B are, for every surface voxel of A,
the Euclidean distance in mm (``spacing``) to the nearest surface voxel of B.

How it is made fast without changing a single value:

1. **Crop to the union bounding box.** Every voxel outside it is 0 in both masks, so the erosion
   seen from inside the box is the same as on the full volume (a neighbour outside the box is
   0, just as a neighbour outside the volume is 0 under ``border_value=0``); both surfaces lie
   inside it. No margin is needed, and nothing outside the box is ever touched again.
2. **Surfaces by shifted ANDs** on the crop (one pass per structuring-element neighbour), which
   is bit-for-bit scipy's erosion and several times faster.
3. **Distances only where they are needed.** medpy computes a full-volume distance transform
   and then reads it at the surface voxels of the other mask. We compute those values directly:
   a narrow-band search visits lattice offsets in increasing physical length (a ball of radius
   ``R`` mm holding about 400 offsets; offsets of equal length are tested together) and stops
   at the first length at which a surface voxel of the other mask is hit; that length *is* the
   nearest distance, because every shorter offset was checked. The voxels with no hit within
   ``R`` (their nearest partner is farther than ``R``) go to an exact k-d tree query
   (``scipy.spatial.cKDTree``) over the partner surface. Both give
   ``sqrt(sum((delta_i * spacing_i)**2))`` in float64, the number scipy's transform stores.

On the LiTS-sized case of ``benchmarks/metrics_speed.py`` (2 shared CPUs) the crop alone
with scipy's transform was 11-14x faster than medpy, the crop with the float32 ``edt`` package
34-52x (1e-7 relative from scipy, so not adopted), the narrow band 97-134x; all give medpy's HD95.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy.ndimage import generate_binary_structure
from scipy.spatial import cKDTree

from lfubench.bench.metrics._inputs import MetricInputError, as_binary_pair, check_connectivity, check_spacing

__all__ = ["border", "directed_distances", "surface_distances", "union_box"]

logger = logging.getLogger(__name__)

#: Target number of lattice offsets in the narrow band (sets its radius from the spacing).
_BAND_OFFSETS = 400


def _extent(mask: np.ndarray) -> list[tuple[int, int]] | None:
    """Half-open index range of the True voxels along each axis, or ``None`` if the mask is empty."""
    proj = mask.any(axis=-1)  # one pass over the volume, along the fastest axis for C order
    if not proj.any():
        return None
    lead = []
    for ax in range(proj.ndim):
        others = tuple(i for i in range(proj.ndim) if i != ax)
        nz = np.flatnonzero(proj.any(axis=others) if others else proj)
        lead.append((int(nz[0]), int(nz[-1]) + 1))
    sub = mask[tuple(slice(lo, hi) for lo, hi in lead)]  # small: only the last axis is still full
    nz = np.flatnonzero(sub.any(axis=tuple(range(mask.ndim - 1))))
    return [*lead, (int(nz[0]), int(nz[-1]) + 1)]


def union_box(pred: np.ndarray, ref: np.ndarray) -> tuple[tuple[slice, ...] | None, bool, bool]:
    """Bounding box of ``pred | ref`` and whether each mask is empty.

    Returns:
        ``(box, pred_empty, ref_empty)``; ``box`` is a tuple of slices, or ``None`` when both
        masks are empty.
    """
    ep, er = _extent(pred), _extent(ref)
    if ep is None and er is None:
        return None, True, True
    ranges = [e for e in (ep, er) if e is not None]
    box = tuple(
        slice(min(r[ax][0] for r in ranges), max(r[ax][1] for r in ranges)) for ax in range(pred.ndim)
    )
    return box, ep is None, er is None


def border(mask: np.ndarray, connectivity: int = 1) -> np.ndarray:
    """Surface voxels: ``mask & ~binary_erosion(mask, generate_binary_structure(ndim, connectivity))``.

    Zero is assumed outside the array (scipy's default ``border_value=0``), so True voxels on the
    array edge are surface voxels.

    Args:
        mask: bool array.
        connectivity: 1 (faces, medpy's default) up to ``mask.ndim`` (all neighbours). Default 1.
    """
    padded = np.pad(mask, 1)
    eroded = mask.copy()
    structure = generate_binary_structure(mask.ndim, connectivity)
    for offset in np.argwhere(structure) - 1:
        if not offset.any():
            continue
        eroded &= padded[tuple(slice(1 + o, 1 + o + n) for o, n in zip(offset, mask.shape, strict=True))]
    return mask & ~eroded


def _band_offsets(spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Lattice offsets within radius ``R`` mm sorted by length, their lengths, and ``R``."""
    ndim = len(spacing)
    unit_ball = {2: np.pi, 3: 4.0 * np.pi / 3.0}[ndim]
    radius = float((_BAND_OFFSETS * np.prod(spacing) / unit_ball) ** (1.0 / ndim))
    half = np.floor(radius / spacing).astype(int)
    grids = np.meshgrid(*[np.arange(-h, h + 1) for h in half], indexing="ij")
    offs = np.stack([g.ravel() for g in grids], axis=1)
    length = np.sqrt(((offs * spacing) ** 2).sum(axis=1))
    keep = length <= radius
    offs, length = offs[keep], length[keep]
    order = np.argsort(length, kind="stable")
    return offs[order], length[order], radius


class _Surface:
    """The surface voxels of one mask as flat indices into a zero-padded copy of the crop."""

    def __init__(self, surface: np.ndarray, pad: list[tuple[int, int]]) -> None:
        self.padded = np.pad(surface, pad)
        self.flat = self.padded.ravel()
        self.index = np.flatnonzero(self.flat)
        self.offset = np.array([lo for lo, _ in pad])
        self._coords = None

    def coords(self, index: np.ndarray | None = None) -> np.ndarray:
        """Voxel coordinates in the crop of ``index`` (default: all surface voxels)."""
        if index is None:
            if self._coords is None:
                self._coords = self.coords(self.index)
            return self._coords
        return np.stack(np.unravel_index(index, self.padded.shape), axis=1) - self.offset


def _directed(query: _Surface, feature: _Surface, offsets, spacing: np.ndarray) -> np.ndarray:
    """Distances from each surface voxel of ``query`` to the nearest of ``feature`` (C order)."""
    offs, length, radius = offsets
    strides = np.array(query.padded.strides, dtype=np.int64) // query.padded.itemsize
    deltas = offs @ strides
    shells = np.split(np.arange(len(length)), np.flatnonzero(np.diff(length) > 0) + 1)  # equal lengths
    cur = query.index
    dist = np.empty(len(cur))
    todo = np.arange(len(cur))
    for shell in shells:  # shortest offsets first; the first hit is the nearest distance
        hit = feature.flat[cur + deltas[shell[0]]]
        for k in shell[1:]:
            hit |= feature.flat[cur + deltas[k]]
        if hit.any():
            dist[todo[hit]] = length[shell[0]]
            miss = ~hit
            todo, cur = todo[miss], cur[miss]
            if not len(todo):
                break
    if len(todo):
        logger.debug("%d of %d surface voxels beyond the %.2f mm band", len(todo), len(dist), radius)
        tree = cKDTree(feature.coords() * spacing, balanced_tree=False, compact_nodes=False)
        dist[todo] = tree.query(query.coords(cur) * spacing)[0]
    return dist


def directed_distances(query: np.ndarray, feature: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance (mm) from every True voxel of ``query`` to the nearest True voxel of ``feature``.

    Equals ``scipy.ndimage.distance_transform_edt(~feature, sampling=spacing)[query]`` (same
    order: C order of ``query``'s True voxels), computed without a distance transform.

    Args:
        query: bool array of the voxels to measure from.
        feature: bool array of the same shape, at least one True voxel.
        spacing: float64 vector, one voxel size per axis.
    """
    offsets = _band_offsets(spacing)
    pad = [(int(h), int(h)) for h in np.abs(offsets[0]).max(axis=0)]
    return _directed(_Surface(query, pad), _Surface(feature, pad), offsets, spacing)


def surface_distances(
    pred, ref, spacing: float | Sequence[float] | None = None, *, connectivity: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances both ways, exactly as medpy 0.5 defines them.

    Args:
        pred: predicted binary mask, 2D or 3D, bool or 0/1 numeric; must not be empty.
        ref: reference binary mask, same shape; must not be empty.
        spacing: voxel size in mm per array axis, a single number, or ``None`` for 1. Default ``None``.
        connectivity: surface structuring element, as scipy's ``generate_binary_structure``. Default 1.

    Returns:
        ``(pred_to_ref, ref_to_pred)``: float64 arrays with one distance per surface voxel of
        ``pred`` (resp. ``ref``). medpy's ``hd95`` is ``np.percentile(np.hstack(...), 95)`` of these.

    Raises:
        MetricInputError: bad input, or an empty mask (distances are undefined; the metric
            functions apply an empty-mask convention instead).
    """
    p, r = as_binary_pair(pred, ref)
    sp = check_spacing(spacing, p.ndim)
    conn = check_connectivity(connectivity, p.ndim)
    box, p_empty, r_empty = union_box(p, r)
    if p_empty or r_empty:
        which = "pred and ref are" if p_empty and r_empty else ("pred is" if p_empty else "ref is")
        raise MetricInputError(f"{which} empty: surface distances are undefined")
    return cropped_surface_distances(p[box], r[box], sp, conn)


def cropped_surface_distances(
    p: np.ndarray, r: np.ndarray, spacing: np.ndarray, connectivity: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`surface_distances` on masks already cropped to their union box (checked inputs)."""
    offsets = _band_offsets(spacing)
    pad = [(int(h), int(h)) for h in np.abs(offsets[0]).max(axis=0)]
    ps, rs = _Surface(border(p, connectivity), pad), _Surface(border(r, connectivity), pad)
    return _directed(ps, rs, offsets, spacing), _directed(rs, ps, offsets, spacing)
