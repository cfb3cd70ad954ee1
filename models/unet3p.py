"""UNet 3+ (Huang et al., ICASSP 2020, "UNet 3+: A Full-Scale Connected UNet for Medical
Image Segmentation").

Encoder nodes ``x{i}_0`` (i = 0..4); decoder nodes ``x{i}_{4-i}`` (i = 3..0, the paper's
X_De^4 .. X_De^1). Every decoder node fuses five full-scale branches: the shallower encoder
nodes max-pooled down, the encoder node of its own level, and the deeper decoder nodes (and
the bottom encoder node) bilinearly upsampled; each branch is a 3x3 conv-BN-ReLU to
``base_width`` channels, the fusion a 3x3 conv-BN-ReLU on ``5 * base_width`` channels.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_model
from .blocks import (
    ConvBNReLU,
    DoubleConv,
    SegmentationNet,
    check_flag,
    check_positive,
    stage_widths,
    upsample,
)
from .channels import INPUT, Layer, conv_bn, double_conv


def _name(i: int) -> str:
    return f"x{i}_{4 - i}" if i < 4 else "x4_0"


def _source(s: int, d: int) -> str:
    """The node that branch ``s`` of decoder level ``d`` reads: an encoder node at or above
    level ``d`` (and the bottom node), otherwise a deeper decoder node."""
    return _name(s) if s > d else f"x{s}_0"


def _branch(s: int, d: int) -> str:
    return f"{_source(s, d)}_to_{_name(d)}"


class UNet3Plus(SegmentationNet):
    """UNet 3+ with full-scale skip connections (no deep supervision, no classification-guided
    module).

    Args:
        in_channels: input channels. Defaults to 3.
        num_classes: output channels (logits). Defaults to 3.
        base_width: first stage width; stages ``base_width * (1, 2, 4, 8, 16)``, branch width
            ``base_width``, decoder width ``5 * base_width``. Defaults to 64 as in the paper.
        align_corners: ``align_corners`` of the bilinear upsampling. Defaults to True (as
            every lfubench family); the authors' code leaves PyTorch's default (False).
        widths: channel-set widths overriding the defaults (``x{i}_0.mid``, ``x{i}_0``, each
            branch ``x{s}_..._to_x{d}_...`` and each fusion ``x{d}_{4-d}``); a channel-pruned
            model carries them (:mod:`models.pruning`). Defaults to None.

    Input ``(B, in_channels, H, W)`` with H and W divisible by 16; output
    ``(B, num_classes, H, W)`` from a 3x3 output convolution.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 3,
        base_width: int = 64,
        align_corners: bool = True,
        widths: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        name = self.model_name
        check_positive(name, in_channels=in_channels, num_classes=num_classes, base_width=base_width)
        check_flag(name, align_corners=align_corners)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.align_corners, self.base_width = align_corners, base_width
        w = self._resolve_widths(widths)
        self.encoder = nn.ModuleDict()
        for i in range(5):
            c_in = in_channels if i == 0 else w[f"x{i - 1}_0"]
            self.encoder[f"x{i}_0"] = DoubleConv(c_in, w[f"x{i}_0"], mid_channels=w[f"x{i}_0.mid"])
        self.branch = nn.ModuleDict()
        self.fuse = nn.ModuleDict()
        for d in range(3, -1, -1):
            for s in range(5):
                key = _branch(s, d)
                self.branch[key] = ConvBNReLU(w[_source(s, d)], w[key])
            self.fuse[_name(d)] = ConvBNReLU(sum(w[_branch(s, d)] for s in range(5)), w[_name(d)])
        self.head = nn.Conv2d(w["x0_4"], num_classes, 3, padding=1)

    def default_widths(self, level: int | None = None) -> dict[str, int]:
        w = stage_widths(self.base_width)
        out = {}
        for i in range(5):
            out[f"x{i}_0.mid"] = out[f"x{i}_0"] = w[i]
        for d in range(3, -1, -1):
            out.update({_branch(s, d): self.base_width for s in range(5)})
            out[_name(d)] = 5 * self.base_width
        return out

    def channel_layers(self, level: int | None = None) -> list[Layer]:
        layers = []
        for i in range(5):
            layers += double_conv(f"encoder.x{i}_0", f"x{i}_0", (INPUT,) if i == 0 else (f"x{i - 1}_0",))
        for d in range(3, -1, -1):
            layers += [conv_bn(f"branch.{_branch(s, d)}", _branch(s, d), (_source(s, d),)) for s in range(5)]
            layers.append(conv_bn(f"fuse.{_name(d)}", _name(d), tuple(_branch(s, d) for s in range(5))))
        return [*layers, Layer("head", None, (("x0_4",),))]

    def forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.check_input(x)
        enc = [self.encoder["x0_0"](x)]
        for i in range(1, 5):
            enc.append(self.encoder[f"x{i}_0"](nn.functional.max_pool2d(enc[-1], 2)))
        dec = {4: enc[4]}
        for d in range(3, -1, -1):
            parts = []
            for s in range(5):
                if s < d:
                    f = 2 ** (d - s)
                    src = nn.functional.max_pool2d(enc[s], f, f, ceil_mode=True)
                elif s == d:
                    src = enc[d]
                else:
                    src = upsample(dec[s], 2 ** (s - d), self.align_corners)
                parts.append(self.branch[_branch(s, d)](src))
            dec[d] = self.fuse[_name(d)](torch.cat(parts, 1))
        return [self.head(dec[0])]


@register_model
def unet3p(**kwargs) -> UNet3Plus:
    """UNet 3+ with conv-BN-ReLU blocks and bilinear upsampling (align_corners=True), width 64."""
    return UNet3Plus(**kwargs)


@register_model(source="authors' preset")
def unet3p_huang2020(in_channels: int = 3, num_classes: int = 1, **kwargs) -> UNet3Plus:
    """UNet 3+ of the authors' code (``UNet_3Plus`` in ZJUGiveLab/UNet-Version).

    Widths 64..1024, branch width 64, decoder width 320, bilinear upsampling with
    ``align_corners=False``, 3x3 output conv; defaults 3 input channels and 1 class as there:
    26,971,777 parameters. The authors' forward ends in a sigmoid; this one returns the
    logits before it.
    """
    cfg = dict(base_width=64, align_corners=False)
    cfg.update(kwargs)
    return UNet3Plus(in_channels=in_channels, num_classes=num_classes, **cfg)
