"""Label conventions of each dataset's files and their mapping to the internal labels.

Every reader maps labels to one *internal* convention per dataset (their names are in
:data:`bench.datasets.DATASETS`):

- LiTS / MSD Task03_Liver: 0 background, 1 liver, 2 tumor (stored as is).
- BraTS: 0 background, 1 necrotic / non-enhancing tumor core (NCR/NET), 2 peritumoral edema (ED),
  3 enhancing tumor (ET). BraTS 2018-2021 files store ET as 4, BraTS 2023+ files as 3.

The evaluation regions (LiTS liver/tumor, BraTS WT/TC/ET) are built in one place,
:func:`bench.metrics.split_labels`; the internal BraTS labels use its ``brats2023`` scheme.
"""

from __future__ import annotations

import numpy as np

#: label values allowed in the files of each naming convention, and their internal value
FILE_LABELS: dict[str, dict[int, int]] = {
    "lits": {0: 0, 1: 1, 2: 2},
    "brats_legacy": {0: 0, 1: 1, 2: 2, 4: 3},
    "brats_2023": {0: 0, 1: 1, 2: 2, 3: 3},
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

