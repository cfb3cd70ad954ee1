"""Preprocessing of one case into fixed-size 2D slices.

LiTS (CT): HU clipped to the window [-200, 250] and scaled to [0, 1]; every axial slice resized
in-plane to ``size`` x ``size`` (bilinear with antialiasing for the image, nearest for labels). The
2.5D input (``context`` = 3 adjacent slices as channels, edges repeated) is assembled when reading
the cache, so each slice is stored once.

BraTS (MRI): the four modalities as channels; each modality z-scored over the brain mask (voxels
non-zero in any modality), zero outside it; every slice cropped or zero-padded in-plane to ``size``
x ``size`` (default 192, divisible by 16) around the centre of the brain's bounding box. 192 holds
every brain of the 240 x 240 BraTS grid at 1 mm (brains span at most ~140 x 175 mm) with less
than two thirds of the pixels of 240 -> 256 padding; the crop offset is kept per case so
predictions can be pasted back onto the original grid.

Cases are processed a slab of :data:`SLAB_VOXELS` input voxels at a time
(:func:`preprocess_slabs`): the ``float32`` work arrays are a few slices, whatever the case's
length. BraTS needs the per-modality mean and standard deviation over the whole brain first: a
first pass accumulates them in ``float64`` (Chan et al.'s pairwise update), the second normalises
and crops slab by slab. LiTS slices are independent, so slab-wise output equals whole-volume output.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

from ..datasets import DATASETS
from ..errors import OptionError
from .reader import CaseData

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreprocessConfig:
    """What the cache depends on (besides the data): one cache per dataset and config.

    Args:
        dataset: ``"lits"`` or ``"brats"``.
        size: in-plane output size, divisible by 16 (LiTS: resize target, default 256;
            BraTS: crop/pad size, default 192). Phantoms use 128.
        hu_window: LiTS HU window mapped to [0, 1] (default (-200, 250)).
        context: LiTS adjacent slices given as channels (odd, default 3); BraTS always 1.
    """

    dataset: str
    size: int | None = None
    hu_window: tuple[float, float] = (-200.0, 250.0)
    context: int = 3

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise OptionError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        if self.size is None:
            object.__setattr__(self, "size", DATASETS[self.dataset].default_size)
        if self.size < 16 or self.size % 16:
            raise OptionError(f"--size must be a positive multiple of 16, got {self.size}")
        if self.dataset == "brats":
            object.__setattr__(self, "context", 1)
        if self.context < 1 or self.context % 2 == 0:
            raise OptionError(f"context must be odd and >= 1, got {self.context}")
        object.__setattr__(self, "hu_window", tuple(float(v) for v in self.hu_window))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Prepared:
    """One preprocessed case: ``image`` ``float16`` ``(Z, C, S, S)``, ``label`` ``uint8`` ``(Z, S, S)``,
    ``content`` bool ``(Z,)`` (slice holds body/brain), and the geometry ``info`` (JSON-able)."""

    image: np.ndarray
    label: np.ndarray
    content: np.ndarray
    info: dict


#: input voxels per slab (about 16 slices of 512 x 512): bounds the float32 work arrays
SLAB_VOXELS = 1 << 22


class Slab(NamedTuple):
    """Preprocessed slices ``start ... start + len(label) - 1`` of a case (see :class:`Prepared`)."""

    start: int
    image: np.ndarray
    label: np.ndarray
    content: np.ndarray


def preprocess_case(data: CaseData, config: PreprocessConfig) -> Prepared:
    """Turn one read case into ``size`` x ``size`` slices (see the module docstring), all in memory."""
    info, slabs = preprocess_slabs(data, config)
    parts = list(slabs)
    return Prepared(np.concatenate([p.image for p in parts]), np.concatenate([p.label for p in parts]),
                    np.concatenate([p.content for p in parts]), info)


def preprocess_slabs(data: CaseData, config: PreprocessConfig,
                     slab: int | None = None) -> tuple[dict, Iterator[Slab]]:
    """Preprocess one case a slab at a time.

    Args:
        data: the case as read (image in its stored dtype).
        config: the preprocessing.
        slab: slices per slab; default: about :data:`SLAB_VOXELS` input voxels.

    Returns:
        ``(info, slabs)``: the case's geometry (JSON-able, as :class:`Prepared`) and an iterator of
        :class:`Slab` in z order, each ``float16`` ``(n, C, S, S)`` image, ``uint8`` ``(n, S, S)``
        labels and ``bool`` ``(n,)`` content. The result does not depend on ``slab``.
    """
    _, nz, ny, nx = data.image.shape
    slab = slab or max(1, SLAB_VOXELS // (data.image.shape[0] * ny * nx))
    if data.dataset == "lits":
        return _lits_info(data, config), _lits_slabs(data, config, slab)
    stats = brain_statistics(data.image, slab)
    return _brats_info(data, config, stats), _brats_slabs(data, config, stats, slab)


def window(ct: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Clip HU to ``[lo, hi]`` and scale to ``[0, 1]`` (``float32``, computed in ``float32``)."""
    ct = np.asarray(ct, dtype=np.float32)
    return ((np.clip(ct, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def resize_slices(volume: np.ndarray, size: int, labels: bool = False) -> np.ndarray:
    """Resize ``(Z, Y, X)`` to ``(Z, size, size)``: bilinear with antialiasing, or nearest for labels."""
    import torch
    import torch.nn.functional as F

    if volume.shape[1:] == (size, size):
        return volume.copy()
    t = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[:, None]
    if labels:
        out = F.interpolate(t, size=(size, size), mode="nearest-exact")
        return out[:, 0].numpy().astype(volume.dtype)
    out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out[:, 0].numpy()


def _lits_info(data: CaseData, cfg: PreprocessConfig) -> dict:
    _, nz, ny, nx = data.image.shape
    sz, sy, sx = data.spacing
    return {"orig_shape": [nz, ny, nx], "spacing": [sz, sy, sx],
            "slice_spacing": [sz, sy * ny / cfg.size, sx * nx / cfg.size]}


def _lits_slabs(data: CaseData, cfg: PreprocessConfig, slab: int) -> Iterator[Slab]:
    lo, hi = cfg.hu_window
    ct = data.image[0]
    for z0 in range(0, len(ct), slab):
        part = ct[z0:z0 + slab]
        image = np.clip(resize_slices(window(part, lo, hi), cfg.size), 0, 1)
        label = resize_slices(data.label[z0:z0 + slab], cfg.size, labels=True)
        content = np.count_nonzero(part > -500, axis=(1, 2)) / (part.shape[1] * part.shape[2]) > 0.01
        yield Slab(z0, image[:, None].astype(np.float16), label.astype(np.uint8), content)


@dataclass
class BrainStatistics:
    """What BraTS normalisation and cropping need from the whole case (:func:`brain_statistics`).

    ``mean``/``std``: per channel over the brain mask (voxels non-zero in any channel);
    ``rows``/``cols``: in-plane bounding box of the mask, ``(first, last)`` or ``None`` when empty;
    ``content``: ``bool`` ``(Z,)``, slices holding brain.
    """

    mean: np.ndarray
    std: np.ndarray
    rows: tuple[int, int] | None
    cols: tuple[int, int] | None
    content: np.ndarray


def brain_statistics(image: np.ndarray, slab: int) -> BrainStatistics:
    """One pass over ``(C, Z, Y, X)`` in slabs: per-channel count, mean and sum of squared deviations
    in ``float64``, merged slab by slab (Chan, Golub and LeVeque's pairwise update)."""
    channels, nz = image.shape[:2]
    count, mean, m2 = 0, np.zeros(channels), np.zeros(channels)
    rows, cols = np.zeros(image.shape[2], bool), np.zeros(image.shape[3], bool)
    content = np.zeros(nz, dtype=bool)
    for z0 in range(0, nz, slab):
        part = image[:, z0:z0 + slab]
        mask = np.any(part != 0, axis=0)
        n = int(mask.sum())
        content[z0:z0 + slab] = mask.any(axis=(1, 2))
        if not n:
            continue
        rows |= mask.any(axis=(0, 2))
        cols |= mask.any(axis=(0, 1))
        for c in range(channels):
            values = part[c][mask].astype(np.float64)
            m = values.mean()
            s = float(((values - m) ** 2).sum())
            delta, total = m - mean[c], count + n
            mean[c] += delta * n / total
            m2[c] += s + delta * delta * count * n / total
        count += n
    std = np.sqrt(m2 / count) if count else np.zeros(channels)

    def span(hit: np.ndarray) -> tuple[int, int] | None:
        idx = np.flatnonzero(hit)
        return (int(idx[0]), int(idx[-1])) if len(idx) else None

    return BrainStatistics(mean, std, span(rows), span(cols), content)


def zscore_brain(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel z-score over the brain mask (non-zero in any channel); zero outside. Returns
    ``(normalised image, mask)`` (``float32``; the whole volume: for small inputs and tests)."""
    stats = brain_statistics(image, max(1, image.shape[1]))
    return _zscore(image, stats), np.any(image != 0, axis=0)


def _zscore(part: np.ndarray, stats: BrainStatistics) -> np.ndarray:
    mask = np.any(part != 0, axis=0)
    out = np.zeros(part.shape, dtype=np.float32)
    for c in range(part.shape[0]):
        values = part[c][mask].astype(np.float32)
        out[c][mask] = (values - np.float32(stats.mean[c])) / np.float32(max(float(stats.std[c]), 1e-6))
    return out


def crop_or_pad(volume: np.ndarray, size: int, center: tuple[int, int]) -> tuple[np.ndarray, list[int]]:
    """Cut a ``size`` x ``size`` window of the last two axes centred on ``center`` (zero padding where
    it leaves the array). Returns the window and its ``[y0, x0]`` offset in the input (may be negative)."""
    ny, nx = volume.shape[-2:]
    offsets = []
    for n, c in zip((ny, nx), center, strict=True):
        start = int(round(c - size / 2))
        if n >= size:
            start = min(max(start, 0), n - size)
        else:
            start = -((size - n) // 2)
        offsets.append(start)
    out = np.zeros(volume.shape[:-2] + (size, size), dtype=volume.dtype)
    (y0, x0) = offsets
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + size, ny), min(x0 + size, nx)
    out[..., ys - y0:ye - y0, xs - x0:xe - x0] = volume[..., ys:ye, xs:xe]
    return out, offsets


def _brats_center(data: CaseData, stats: BrainStatistics) -> tuple[float, float]:
    if stats.rows is None:
        return data.image.shape[2] / 2, data.image.shape[3] / 2
    return (stats.rows[0] + stats.rows[1]) / 2, (stats.cols[0] + stats.cols[1]) / 2


def _brats_info(data: CaseData, cfg: PreprocessConfig, stats: BrainStatistics) -> dict:
    center = _brats_center(data, stats)
    if stats.rows is not None:
        extent = (stats.rows[1] - stats.rows[0] + 1, stats.cols[1] - stats.cols[0] + 1)
        if max(extent) > cfg.size:
            log.warning("case %s: brain extent %dx%d exceeds the crop size %d; the edges are cut",
                        data.case_id, *extent, cfg.size)
    _, offset = crop_or_pad(data.label[:1], cfg.size, center)
    return {"orig_shape": list(data.label.shape), "spacing": list(data.spacing), "crop_offset": offset,
            "slice_spacing": list(data.spacing)}


def _brats_slabs(data: CaseData, cfg: PreprocessConfig, stats: BrainStatistics, slab: int) -> Iterator[Slab]:
    center = _brats_center(data, stats)
    for z0 in range(0, data.image.shape[1], slab):
        image, _ = crop_or_pad(_zscore(data.image[:, z0:z0 + slab], stats), cfg.size, center)
        label, _ = crop_or_pad(data.label[z0:z0 + slab], cfg.size, center)
        yield Slab(z0, np.transpose(image, (1, 0, 2, 3)).astype(np.float16), label.astype(np.uint8),
                   stats.content[z0:z0 + slab].copy())
