"""Preprocessing of one case into fixed-size 2D slices, by its dataset's rules.

What a dataset does to a case (LiTS: HU window and resize; BraTS: per-modality z-score over the
brain and a crop around it) is its module's :meth:`~bench.datasets.Dataset.preprocess`; here are
what every dataset shares: the settings the cache depends on (:class:`PreprocessConfig`) and the
slab loop.

Cases are processed a slab of :data:`SLAB_VOXELS` input voxels at a time
(:func:`preprocess_slabs`): the ``float32`` work arrays are a few slices, whatever the case's
length, and the result does not depend on the slab size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..datasets import DATASETS, FOLDERS, get_dataset
from ..datasets.base import Slab
from ..errors import OptionError
from .reader import CaseData

__all__ = ["SLAB_VOXELS", "PreprocessConfig", "Prepared", "Slab", "preprocess_case", "preprocess_slabs"]


@dataclass(frozen=True)
class PreprocessConfig:
    """What the cache depends on (besides the data): one cache per dataset and config.

    Args:
        kind: the dataset's kind (``"lits"``, ``"brats"``).
        size: in-plane output size, divisible by 16; default the dataset's
            (:attr:`~bench.datasets.Dataset.default_size`; LiTS: resize target, 256; BraTS:
            crop/pad size, 192). Phantoms use 128.
        hu_window: LiTS HU window mapped to [0, 1] (default (-200, 250)).
        context: adjacent slices given as channels (odd, default 3), for datasets whose
            :attr:`~bench.datasets.Dataset.slice_context` is set; else always 1.
    """

    kind: str
    size: int | None = None
    hu_window: tuple[float, float] = (-200.0, 250.0)
    context: int = 3

    def __post_init__(self) -> None:
        if self.kind not in DATASETS and self.kind not in FOLDERS:  # a folder's own dataset (nnunet)
            raise OptionError(f"unknown dataset {self.kind!r}; choose one of {', '.join(DATASETS)}")
        dataset = get_dataset(self.kind)
        if self.size is None:
            object.__setattr__(self, "size", dataset.default_size)
        if self.size < 16 or self.size % 16:
            raise OptionError(f"--size must be a positive multiple of 16, got {self.size}")
        if not dataset.slice_context:
            object.__setattr__(self, "context", 1)
        if self.context < 1 or self.context % 2 == 0:
            raise OptionError(f"context must be odd and >= 1, got {self.context}")
        object.__setattr__(self, "hu_window", tuple(float(v) for v in self.hu_window))

    def to_dict(self) -> dict:
        """The settings as the cache's key and ``meta.json`` hold them (the kind as ``dataset``)."""
        return {"dataset": self.kind, "size": self.size, "hu_window": self.hu_window, "context": self.context}


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
    return get_dataset(data.kind).preprocess(data, config, slab)
