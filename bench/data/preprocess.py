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
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

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


def preprocess_case(data: CaseData, config: PreprocessConfig) -> Prepared:
    """Turn one read case into ``size`` x ``size`` slices (see the module docstring)."""
    if data.dataset == "lits":
        return _preprocess_lits(data, config)
    return _preprocess_brats(data, config)


def window(ct: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Clip HU to ``[lo, hi]`` and scale to ``[0, 1]`` (``float32``)."""
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


def _preprocess_lits(data: CaseData, cfg: PreprocessConfig) -> Prepared:
    lo, hi = cfg.hu_window
    ct = data.image[0]
    _, ny, nx = ct.shape
    image = np.clip(resize_slices(window(ct, lo, hi), cfg.size), 0, 1)
    label = resize_slices(data.label, cfg.size, labels=True)
    content = (ct > -500).mean(axis=(1, 2)) > 0.01
    sz, sy, sx = data.spacing
    info = {"orig_shape": list(ct.shape), "spacing": [sz, sy, sx],
            "slice_spacing": [sz, sy * ny / cfg.size, sx * nx / cfg.size]}
    return Prepared(image[:, None].astype(np.float16), label.astype(np.uint8), content, info)


def zscore_brain(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel z-score over the brain mask (non-zero in any channel); zero outside. Returns
    ``(normalised image, mask)``."""
    mask = np.any(image != 0, axis=0)
    out = np.zeros_like(image, dtype=np.float32)
    if not mask.any():
        return out, mask
    for c in range(image.shape[0]):
        values = image[c][mask]
        out[c][mask] = (values - values.mean()) / max(float(values.std()), 1e-6)
    return out, mask


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


def _preprocess_brats(data: CaseData, cfg: PreprocessConfig) -> Prepared:
    image, mask = zscore_brain(data.image)
    ys, xs = np.nonzero(mask.any(axis=0))
    center = ((ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2) if len(ys) else (
        image.shape[2] / 2, image.shape[3] / 2)
    extent = (int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)) if len(ys) else (0, 0)
    if max(extent) > cfg.size:
        log.warning("case %s: brain extent %dx%d exceeds the crop size %d; the edges are cut",
                    data.case_id, *extent, cfg.size)
    cropped, offset = crop_or_pad(image, cfg.size, center)
    label, _ = crop_or_pad(data.label, cfg.size, center)
    info = {"orig_shape": list(data.label.shape), "spacing": list(data.spacing), "crop_offset": offset,
            "slice_spacing": list(data.spacing)}
    content = mask.any(axis=(1, 2))
    return Prepared(np.transpose(cropped, (1, 0, 2, 3)).astype(np.float16), label.astype(np.uint8),
                    content, info)
