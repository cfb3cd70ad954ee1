"""U-Net and UNet++ with an ImageNet-style encoder, built with segmentation_models_pytorch (smp,
Iakubovskii 2019).

``encoder_weights=None`` always: the encoder starts from random weights and nothing is
downloaded. ``base_width`` is the width of the last decoder block; the decoder's five blocks are
``base_width * (16, 8, 4, 2, 1)`` (smp's default ``(256, 128, 64, 32, 16)`` at 16). The encoder
is fixed by ``encoder``; shrinking ``base_width`` shrinks the decoder only. Five poolings: H and
W divisible by 32.
"""

from __future__ import annotations

from ._outside import OutsideNet, require
from ._registry import register_model
from .blocks import check_choice

ENCODERS = ("resnet18", "resnet34", "mobilenet_v2", "efficientnet-b0")

ARCHITECTURES = ("Unet", "UnetPlusPlus")


def decoder_channels(base_width: int) -> tuple[int, ...]:
    """The five decoder widths for ``base_width``: ``base_width * (16, 8, 4, 2, 1)``."""
    return tuple(base_width * 2**i for i in range(4, -1, -1))


class SmpNet(OutsideNet):
    """smp's ``Unet`` or ``UnetPlusPlus`` (``architecture``) with ``encoder`` (one of
    :data:`ENCODERS`, random weights) and decoder widths ``base_width * (16, 8, 4, 2, 1)``.

    Args:
        in_channels: input channels. Defaults to 3.
        num_classes: output channels (logits). Defaults to 3.
        base_width: width of the last decoder block. Defaults to 16 (smp's default decoder).
        encoder: the encoder. Defaults to ``"resnet34"`` (smp's default).
        architecture: ``"Unet"`` or ``"UnetPlusPlus"``.
    """

    size_multiple = 32

    def __init__(self, in_channels: int = 3, num_classes: int = 3, base_width: int = 16,
                 encoder: str = "resnet34", architecture: str = "Unet") -> None:
        super().__init__(in_channels, num_classes, base_width)
        check_choice(self.model_name, "encoder", encoder, ENCODERS)
        check_choice(self.model_name, "architecture", architecture, ARCHITECTURES)
        self.encoder = encoder
        smp = require(self.model_name, "segmentation_models_pytorch", "segmentation-models-pytorch")
        self.net = getattr(smp, architecture)(
            encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=num_classes,
            decoder_channels=decoder_channels(base_width))


@register_model(source="smp")
def smp_unet(in_channels: int = 3, num_classes: int = 3, base_width: int = 16,
             encoder: str = "resnet34") -> SmpNet:
    """smp's U-Net with a randomly initialised ``encoder``."""
    return SmpNet(in_channels, num_classes, base_width, encoder, "Unet")


@register_model(source="smp")
def smp_unetplusplus(in_channels: int = 3, num_classes: int = 3, base_width: int = 16,
                     encoder: str = "resnet34") -> SmpNet:
    """smp's UNet++ with a randomly initialised ``encoder``."""
    return SmpNet(in_channels, num_classes, base_width, encoder, "UnetPlusPlus")
