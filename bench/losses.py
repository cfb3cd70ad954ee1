"""Training losses: soft Dice + cross-entropy over softmax classes, with deep supervision.

Conventions:

- ``DiceCELoss`` = cross-entropy (mean over pixels) + (1 - soft Dice), the soft Dice being
  computed over the whole batch ("batch Dice") for every foreground class and averaged
  (background excluded, as nnU-Net does); ``smooth`` = 1e-5 in numerator and denominator.
- Deep supervision: every head sees the full-resolution label; the head losses are averaged
  with equal weights (the UNet++ and LFU-Net papers weight the levels equally).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class DiceCELoss(nn.Module):
    """Cross-entropy plus soft Dice of the foreground classes.

    Args:
        num_classes: number of softmax classes (label values ``0 .. num_classes - 1``).
        smooth: additive smoothing of the soft Dice. Defaults to 1e-5.

    ``forward(logits, target)``: logits ``(B, C, H, W)``, integer target ``(B, H, W)``.
    """

    def __init__(self, num_classes: int, smooth: float = 1e-5) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"DiceCELoss needs at least 2 classes, got {num_classes}")
        self.num_classes, self.smooth = num_classes, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = nn.functional.cross_entropy(logits.float(), target)
        probs = logits.float().softmax(1)[:, 1:]
        onehot = nn.functional.one_hot(target, self.num_classes).permute(0, 3, 1, 2)[:, 1:].float()
        dims = (0, 2, 3)
        inter = (probs * onehot).sum(dims)
        denom = probs.sum(dims) + onehot.sum(dims)
        dice = (2 * inter + self.smooth) / (denom + self.smooth)
        return ce + (1 - dice.mean())


def deep_supervision_loss(
    loss: nn.Module, heads: Sequence[torch.Tensor], target: torch.Tensor
) -> torch.Tensor:
    """Mean of ``loss(head, target)`` over the heads (equal weights)."""
    return sum(loss(h, target) for h in heads) / len(heads)
