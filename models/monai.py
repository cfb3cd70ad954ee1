"""MONAI's 2D segmentation networks, built with MONAI itself (Cardoso et al., "MONAI: An
open-source framework for deep learning in healthcare", 2022).

Each is MONAI's class with ``spatial_dims=2`` and MONAI's own defaults, except where a class has
none (noted per model); ``base_width`` scales the widths of every stage, and equals MONAI's
default width at its default.
"""

from __future__ import annotations

import math

from ._outside import OutsideNet, require
from ._registry import register_model
from .nnunet import features_per_stage, topology


def _nets(model: str):
    return require(model, "monai.networks.nets", "monai")


class BasicUNet(OutsideNet):
    """MONAI's ``BasicUNet``: features ``(b, b, 2b, 4b, 8b, b)`` for ``base_width`` b
    (MONAI's default ``(32, 32, 64, 128, 256, 32)`` at 32), instance norm, leaky ReLU, transposed
    convolutions; four poolings, so H and W divisible by 16."""

    size_multiple = 16
    instance_norm = True

    def __init__(self, in_channels: int = 3, num_classes: int = 3, base_width: int = 32) -> None:
        super().__init__(in_channels, num_classes, base_width)
        b = base_width
        self.net = _nets(self.model_name).BasicUNet(
            spatial_dims=2, in_channels=in_channels, out_channels=num_classes,
            features=(b, b, 2 * b, 4 * b, 8 * b, b))


class AttentionUNet(OutsideNet):
    """MONAI's ``AttentionUnet`` (Oktay et al., MIDL 2018): channels ``b * (1, 2, 4, 8, 16)``,
    strides 2. MONAI has no default for them: the default ``b = 16`` gives the channels of
    MONAI's ``UNet`` example, ``(16, 32, 64, 128, 256)``. H and W divisible by 16."""

    size_multiple = 16

    def __init__(self, in_channels: int = 3, num_classes: int = 3, base_width: int = 16) -> None:
        super().__init__(in_channels, num_classes, base_width)
        self.net = _nets(self.model_name).AttentionUnet(
            spatial_dims=2, in_channels=in_channels, out_channels=num_classes,
            channels=tuple(base_width * 2**i for i in range(5)), strides=(2, 2, 2, 2))


class SegResNet(OutsideNet):
    """MONAI's ``SegResNet`` (Myronenko, BrainLes 2018) without the VAE branch:
    ``init_filters = base_width`` (MONAI's default 8), blocks down ``(1, 2, 2, 4)``, up
    ``(1, 1, 1)``, group norm with ``gcd(8, base_width)`` groups (MONAI's 8 at the default).
    Three poolings: H and W divisible by 8."""

    size_multiple = 8

    def __init__(self, in_channels: int = 3, num_classes: int = 3, base_width: int = 8) -> None:
        super().__init__(in_channels, num_classes, base_width)
        self.net = _nets(self.model_name).SegResNet(
            spatial_dims=2, init_filters=base_width, in_channels=in_channels, out_channels=num_classes,
            norm=("GROUP", {"num_groups": math.gcd(8, base_width)}))


class DynUNet(OutsideNet):
    """MONAI's ``DynUNet`` (its reimplementation of nnU-Net's U-Net). MONAI has no default for
    kernels and strides; they follow nnU-Net's 2D planner for ``input_size`` as
    :mod:`models.nnunet` does (3x3 kernels, stride 2 while the feature map's edge is at least 8).
    Filters ``base_width * 2**i`` capped at ``16 * base_width``: MONAI's default
    ``min(2**(5 + i), 512)`` at 32. No deep supervision (one output in train and eval mode).
    H and W divisible by ``2 ** (stages - 1)`` (64 at 256)."""

    instance_norm = True

    def __init__(self, in_channels: int = 3, num_classes: int = 3, base_width: int = 32,
                 input_size: int = 256) -> None:
        super().__init__(in_channels, num_classes, base_width)
        stages, self.size_multiple = topology(self.model_name, input_size)
        self.input_size = input_size
        strides = [1] + [2] * (stages - 1)
        self.net = _nets(self.model_name).DynUNet(
            spatial_dims=2, in_channels=in_channels, out_channels=num_classes,
            kernel_size=[3] * stages, strides=strides, upsample_kernel_size=strides[1:],
            filters=features_per_stage(base_width, stages))


@register_model(source="MONAI")
def monai_basicunet(in_channels: int = 3, num_classes: int = 3, base_width: int = 32) -> BasicUNet:
    """MONAI's BasicUNet in 2D, features (32, 32, 64, 128, 256, 32) at the default width."""
    return BasicUNet(in_channels, num_classes, base_width)


@register_model(source="MONAI")
def monai_attentionunet(in_channels: int = 3, num_classes: int = 3, base_width: int = 16) -> AttentionUNet:
    """MONAI's Attention U-Net in 2D, channels (16, 32, 64, 128, 256) at the default width."""
    return AttentionUNet(in_channels, num_classes, base_width)


@register_model(source="MONAI")
def monai_segresnet(in_channels: int = 3, num_classes: int = 3, base_width: int = 8) -> SegResNet:
    """MONAI's SegResNet in 2D, 8 initial filters at the default width."""
    return SegResNet(in_channels, num_classes, base_width)


@register_model(source="MONAI")
def monai_dynunet(in_channels: int = 3, num_classes: int = 3, base_width: int = 32,
                  input_size: int = 256) -> DynUNet:
    """MONAI's DynUNet in 2D with nnU-Net's planned kernels and strides for ``input_size``."""
    return DynUNet(in_channels, num_classes, base_width, input_size)
