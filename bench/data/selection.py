"""Which cached slices a training epoch draws from.

Every slice with foreground (any label > 0) of the training cases, plus a share
``background_fraction`` (default 0.2) of each case's background slices that still show anatomy
(body for CT, brain for MRI), drawn per case with the seed. Empty slices (air above the head,
below the scan) are never used. Validation and test use whole cases (3D metrics), not this set.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .cache import SliceCache


def training_slices(cache: SliceCache, case_ids: Iterable[str], background_fraction: float = 0.2,
                    seed: int = 0) -> np.ndarray:
    """Sorted global slice indices for training on ``case_ids`` (see the module docstring)."""
    if not 0 <= background_fraction <= 1:
        raise ValueError(f"background fraction must be in [0, 1], got {background_fraction}")
    rng = np.random.default_rng(seed)
    chosen = []
    fg, content = cache.foreground, cache.content
    for cid in sorted(set(case_ids)):
        idx = cache.case_indices(cid)
        chosen.append(idx[fg[idx]])
        background = idx[~fg[idx] & content[idx]]
        n = int(round(len(background) * background_fraction))
        if n:
            chosen.append(rng.choice(background, size=n, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
