"""Which cached slices a training epoch draws from.

Every slice with foreground (any label > 0) of the training cases, plus a share
``background_fraction`` (default 0.2) of each case's background slices that still show anatomy
(body for CT, brain for MRI), drawn per case with the seed. Empty slices (air above the head,
below the scan) are never used. Validation and test use whole cases (3D metrics), not this set.

Lesion slices -- those showing the dataset's last class, the rarest (LiTS: tumor; BraTS:
enhancing tumor) -- are drawn ``lesion_repeat`` times per epoch (default :data:`LESION_REPEAT`):
a lesion covers a few % of the organ it sits in, and a 2D network sees too few of its pixels in a
short training otherwise (nnU-Net oversamples foreground for the same reason). 1 draws every
slice once.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..datasets import get_dataset
from .cache import SliceCache

#: how many times per epoch a slice showing the dataset's last class is drawn
LESION_REPEAT = 4
#: label slices read at once when looking for lesions (bounds the memory at any slice size)
_CHUNK = 256


def lesion_slices(cache: SliceCache, indices: np.ndarray) -> np.ndarray:
    """The slices among ``indices`` that show the dataset's last class (LiTS tumor, BraTS ET)."""
    lesion = get_dataset(cache.kind).num_classes - 1
    hit = np.zeros(len(indices), dtype=bool)
    for k in range(0, len(indices), _CHUNK):
        part = np.asarray(cache.labels[indices[k:k + _CHUNK]])
        hit[k:k + _CHUNK] = (part == lesion).reshape(len(part), -1).any(axis=1)
    return indices[hit]


def training_slices(cache: SliceCache, case_ids: Iterable[str], background_fraction: float = 0.2,
                    seed: int = 0, lesion_repeat: int = LESION_REPEAT) -> np.ndarray:
    """Sorted global slice indices for training on ``case_ids``, lesion slices repeated (see the
    module docstring)."""
    if not 0 <= background_fraction <= 1:
        raise ValueError(f"background fraction must be in [0, 1], got {background_fraction}")
    if lesion_repeat < 1:
        raise ValueError(f"lesion repeat must be at least 1, got {lesion_repeat}")
    rng = np.random.default_rng(seed)
    chosen = []
    fg, content = cache.foreground, cache.content
    for cid in sorted(set(case_ids)):
        idx = cache.case_indices(cid)
        foreground = idx[fg[idx]]
        chosen.append(foreground)
        if lesion_repeat > 1:
            chosen += [lesion_slices(cache, foreground)] * (lesion_repeat - 1)
        background = idx[~fg[idx] & content[idx]]
        n = int(round(len(background) * background_fraction))
        if n:
            chosen.append(rng.choice(background, size=n, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
