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
from .channels import INPUT, Layer, double_conv


def _below(i: int) -> str:
    """The node decoder node ``x{i}_{4-i}`` upsamples: the bottom encoder node or the decoder
    node one row deeper."""
    return "x4_0" if i == 3 else f"x{i + 1}_{3 - i}"


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
        widths: channel-set widths overriding the defaults (``x{i}_0.mid``, ``x{i}_0``,
            ``x{i}_{4-i}.mid``, ``x{i}_{4-i}``, ``up.x{i}_{4-i}`` with deconv upsampling);
            a channel-pruned model carries them (:mod:`models.pruning`). Defaults to None.

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
        widths: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        name = self.model_name
        check_positive(name, in_channels=in_channels, num_classes=num_classes, base_width=base_width)
        check_flag(name, norm=norm)
        check_probability(name, dropout=dropout)
        check_choice(name, "up_mode", up_mode, ("bilinear", "deconv"))
        self.in_channels, self.num_classes = in_channels, num_classes
        self.base_width, self.norm, self.up_mode = base_width, norm, up_mode
        w = self._resolve_widths(widths)
        unit = dict(norm=norm, dropout=dropout)
        self.encoder = nn.ModuleDict()
        for i in range(5):
            node = f"x{i}_0"
            c_in = in_channels if i == 0 else w[f"x{i - 1}_0"]
            self.encoder[node] = DoubleConv(c_in, w[node], mid_channels=w[f"{node}.mid"], **unit)
        self.up = nn.ModuleDict()
        self.decoder = nn.ModuleDict()
        for i in range(3, -1, -1):
            node, src = f"x{i}_{4 - i}", _below(i)
            self.up[node] = Up(w[src], w.get(f"up.{node}", 0), up_mode)
            c_in = self.up[node].out_channels + w[f"x{i}_0"]
            self.decoder[node] = DoubleConv(c_in, w[node], mid_channels=w[f"{node}.mid"], **unit)
        self.head = nn.Conv2d(w["x0_4"], num_classes, 1)

    def default_widths(self, level: int | None = None) -> dict[str, int]:
        w = stage_widths(self.base_width)
        out = {}
        for i in range(5):
            out[f"x{i}_0.mid"] = out[f"x{i}_0"] = w[i]
        for i in range(3, -1, -1):
            node = f"x{i}_{4 - i}"
            if self.up_mode == "deconv":
                out[f"up.{node}"] = w[i]
            out[f"{node}.mid"] = out[node] = w[i]
        return out

    def channel_layers(self, level: int | None = None) -> list[Layer]:
        layers = []
        for i in range(5):
            layers += double_conv(f"encoder.x{i}_0", f"x{i}_0", (INPUT,) if i == 0 else (f"x{i - 1}_0",),
                                  norm=self.norm)
        for i in range(3, -1, -1):
            node, src = f"x{i}_{4 - i}", _below(i)
            if self.up_mode == "deconv":
                layers.append(Layer(f"up.{node}.deconv", f"up.{node}", ((src,),)))
                src = f"up.{node}"
            layers += double_conv(f"decoder.{node}", node, (src, f"x{i}_0"), norm=self.norm)
        return [*layers, Layer("head", None, (("x0_4",),))]

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


@register_model(source="authors' preset")
def unet_zhou2018(in_channels: int = 1, num_classes: int = 1, **kwargs) -> UNet:
    """The U-Net of the UNet++ authors' Keras code (``U_Net`` in MrGiovanni/UNetPlusPlus).

    Widths 32..512, no batch norm, dropout 0.5 after every ReLU, 2x2 transposed-conv
    upsampling; defaults 1 input channel and 1 class as there: 7,759,521 parameters. The
    Keras model ends in a sigmoid; this one returns the logits before it.
    """
    cfg = dict(base_width=32, norm=False, dropout=0.5, up_mode="deconv")
    cfg.update(kwargs)
    return UNet(in_channels=in_channels, num_classes=num_classes, **cfg)
