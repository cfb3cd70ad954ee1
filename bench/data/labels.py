"""Label values of each layout's files and their mapping to the internal labels.

Every reader maps labels to one *internal* convention per dataset (their meanings are
:attr:`bench.datasets.Dataset.labels`); the values each layout's files hold are its
:attr:`bench.datasets.Layout.file_labels`:

- LiTS / MSD Task03_Liver (``lits``, ``msd``): 0 background, 1 liver, 2 tumor (stored as is).
- BraTS: 0 background, 1 necrotic / non-enhancing tumor core (NCR/NET), 2 peritumoral edema (ED),
  3 enhancing tumor (ET). BraTS 2018-2021 files (``brats2018``, ``brats2020``) store ET as 4,
  BraTS 2023+ files (``brats2023``) as 3.

The evaluation regions (LiTS liver/tumor, BraTS WT/TC/ET) are built in one place,
:func:`bench.metrics.split_labels`; the internal BraTS labels use its ``brats2023`` scheme.
"""

from __future__ import annotations

import numpy as np

from ..datasets import Layout


def map_labels(label: np.ndarray, layout: Layout) -> np.ndarray:
    """Map the label values of ``layout``'s files to internal ones (``uint8``); values outside its
    :attr:`~bench.datasets.Layout.file_labels` raise ``ValueError`` (the readers check them first and
    report them with case and file)."""
    table = layout.file_labels
    lut = np.zeros(max(table) + 1, dtype=np.uint8)
    for raw, internal in table.items():
        lut[raw] = internal
    values = np.unique(label)
    bad = [int(v) for v in values if int(v) not in table]
    if bad:
        raise ValueError(f"unexpected label values {bad} for layout {layout.name!r}")
    return lut[label.astype(np.intp, copy=False)]
