"""The seed paper's reported figures, shown beside measured ones only for runs on the real
datasets (plan dataset kinds ``lits`` and ``brats``, never phantoms), always labelled as
reported.

LFU-Net: Deng et al., Current Medical Imaging 2023. The paper gives one LiTS Dice; it is set
beside the measured liver Dice.
"""

from __future__ import annotations

#: where the figures come from
SOURCE = "Deng et al., Current Medical Imaging 2023 (LFU-Net)"

#: plan dataset kind -> {(metric, region): reported value}
REPORTED = {
    "lits": {("dice", "liver"): 0.9699},
    "brats": {
        ("dice", "WT"): 0.9363,
        ("dice", "TC"): 0.8699,
        ("dice", "ET"): 0.8116,
        ("hd95", "WT"): 4.3960,
        ("hd95", "TC"): 3.0607,
        ("hd95", "ET"): 4.3975,
    },
}

#: the model family the figures were reported for
FAMILY = "lfunet"
