"""U-Net (Ronneberger et al., MICCAI 2015, "U-Net: Convolutional Networks for Biomedical
Image Segmentation").

Nodes are named by their position in the UNet++ grid: encoder ``x{i}_0`` (i = 0..4) and
decoder ``x{i}_{4-i}`` (i = 3..0), so ``x0_4`` is the last decoder node.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_model
from .blocks import (
    DoubleConv,
    SegmentationNet,
    Up,
    check_choice,
    check_flag,
    check_positive,
    check_probability,
    stage_widths,
)


class UNet(SegmentationNet):
    """Four-level U-Net.

    Args:
        in_channels: input channels. Defaults to 3 (2.5D CT: three adjacent slices).
        num_classes: output channels (logits). Defaults to 3.
        base_width: width of the first stage; stages are ``base_width * (1, 2, 4, 8, 16)``.
            Defaults to 32.
        norm: batch norm after every 3x3 convolution. Defaults to True.
        dropout: dropout probability after every ReLU of the conv units. Defaults to 0.
        up_mode: ``"bilinear"`` (parameter-free, keeps the channels) or ``"deconv"``
            (2x2 stride-2 transposed convolution to the next stage's width). Defaults to
            ``"bilinear"``.

    Input ``(B, in_channels, H, W)`` with H and W divisible by 16; output logits
    ``(B, num_classes, H, W)``. Each decoder node concatenates the upsampled deeper node
    (first) with the encoder node of its level.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 3,
        base_width: int = 32,
        norm: bool = True,
        dropout: float = 0.0,
        up_mode: str = "bilinear",
    ) -> None:
        super().__init__()
        name = self.model_name
        check_positive(name, in_channels=in_channels, num_classes=num_classes, base_width=base_width)
        check_flag(name, norm=norm)
        check_probability(name, dropout=dropout)
        check_choice(name, "up_mode", up_mode, ("bilinear", "deconv"))
        self.in_channels, self.num_classes = in_channels, num_classes
        w = stage_widths(base_width)
        unit = dict(norm=norm, dropout=dropout)
        self.encoder = nn.ModuleDict()
        for i in range(5):
            self.encoder[f"x{i}_0"] = DoubleConv(in_channels if i == 0 else w[i - 1], w[i], **unit)
        self.up = nn.ModuleDict()
        self.decoder = nn.ModuleDict()
        for i in range(3, -1, -1):
            name = f"x{i}_{4 - i}"
            self.up[name] = Up(w[i + 1], w[i], up_mode)
            self.decoder[name] = DoubleConv(self.up[name].out_channels + w[i], w[i], **unit)
        self.head = nn.Conv2d(w[0], num_classes, 1)

    def forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.check_input(x)
        skips = []
        for i in range(5):
            x = self.encoder[f"x{i}_0"](x if i == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        for i in range(3, -1, -1):
            name = f"x{i}_{4 - i}"
            x = self.decoder[name](torch.cat([self.up[name](x), skips[i]], 1))
        return [self.head(x)]


@register_model
def unet(**kwargs) -> UNet:
    """U-Net with the harmonised blocks (conv-BN-ReLU, bilinear upsampling), width 32."""
    return UNet(**kwargs)


@register_model
def unet_zhou2018(in_channels: int = 1, num_classes: int = 1, **kwargs) -> UNet:
    """The U-Net of the UNet++ authors' Keras code (``U_Net`` in MrGiovanni/UNetPlusPlus).

    Widths 32..512, no batch norm, dropout 0.5 after every ReLU, 2x2 transposed-conv
    upsampling; defaults 1 input channel and 1 class as there: 7,759,521 parameters. The
    Keras model ends in a sigmoid; this one returns the logits before it.
    """
    cfg = dict(base_width=32, norm=False, dropout=0.5, up_mode="deconv")
    cfg.update(kwargs)
    return UNet(in_channels=in_channels, num_classes=num_classes, **cfg)
