"""Label conventions of each dataset and the evaluation regions built from them.

Every reader maps labels to one *internal* convention per dataset:

- LiTS / MSD Task03_Liver: 0 background, 1 liver, 2 tumor (stored as is).
- BraTS: 0 background, 1 necrotic / non-enhancing tumor core (NCR/NET), 2 peritumoral edema (ED),
  3 enhancing tumor (ET). BraTS 2018-2021 files store ET as 4, BraTS 2023+ files as 3.

Regions (BraTS challenge definitions): WT = {1, 2, 4}, TC = {1, 4}, ET = {4} in 2018-2021 labels,
3 in place of 4 from 2023 on; internally WT = {1, 2, 3}, TC = {1, 3}, ET = {3}.
LiTS regions: liver = {1, 2} (the tumor lies inside the liver), tumor = {2}.
"""

from __future__ import annotations

import numpy as np

#: label values allowed in the files of each naming convention, and their internal value
FILE_LABELS: dict[str, dict[int, int]] = {
    "lits": {0: 0, 1: 1, 2: 2},
    "brats_legacy": {0: 0, 1: 1, 2: 2, 4: 3},
    "brats_2023": {0: 0, 1: 1, 2: 2, 3: 3},
}

INTERNAL_LABELS: dict[str, dict[int, str]] = {
    "lits": {0: "background", 1: "liver", 2: "tumor"},
    "brats": {0: "background", 1: "necrotic/non-enhancing core", 2: "edema", 3: "enhancing tumor"},
}

#: regions as sets of label values, per convention ("internal" is what the cache holds)
REGIONS: dict[str, dict[str, tuple[int, ...]]] = {
    "lits": {"liver": (1, 2), "tumor": (2,)},
    "brats_internal": {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)},
    "brats_legacy": {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)},
    "brats_2023": {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)},
}


def map_labels(label: np.ndarray, convention: str) -> np.ndarray:
    """Map file label values to internal ones (``uint8``); values outside the convention raise
    ``ValueError`` (the readers check them first and report them with case and file)."""
    table = FILE_LABELS[convention]
    lut = np.zeros(max(table) + 1, dtype=np.uint8)
    for raw, internal in table.items():
        lut[raw] = internal
    values = np.unique(label)
    bad = [int(v) for v in values if int(v) not in table]
    if bad:
        raise ValueError(f"unexpected label values {bad} for convention {convention!r}")
    return lut[label.astype(np.intp, copy=False)]


def regions(label: np.ndarray, dataset: str, convention: str = "internal") -> dict[str, np.ndarray]:
    """Binary masks of the evaluation regions of ``label``.

    Args:
        label: integer label array of any shape.
        dataset: ``"lits"`` or ``"brats"``.
        convention: for BraTS, ``"internal"`` (default, cache labels), ``"legacy"`` (2018-2021
            files, ET = 4) or ``"2023"`` (ET = 3); ignored for LiTS.

    Returns:
        ``{"liver", "tumor"}`` or ``{"WT", "TC", "ET"}`` mapped to boolean arrays.
    """
    key = "lits" if dataset == "lits" else f"brats_{convention}"
    if key not in REGIONS:
        raise ValueError(f"unknown dataset/convention {dataset!r}/{convention!r}")
    return {name: np.isin(label, values) for name, values in REGIONS[key].items()}
