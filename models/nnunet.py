"""nnU-Net's 2D U-Nets, built with its own library (dynamic-network-architectures).

Isensee et al., Nature Methods 2021 ("nnU-Net: a self-configuring method for deep
learning-based biomedical image segmentation"), and "nnU-Net Revisited" (MICCAI 2024) for the
residual-encoder U-Net (ResEnc). ``nnunet_plainunet`` is ``PlainConvUNet``, ``nnunet_resenc``
``ResidualEncoderUNet``, both configured as nnU-Net's 2D planners configure them for a square
input of ``input_size`` pixels (the default and ResEnc planners of nnU-Net v2).

Planner rules followed:

- stages: the input is halved (stride 2 in both axes) while the feature map's edge is at least
  8, so the smallest feature map has an edge of 4 (``featuremap_min_edge_length = 4``, no
  limit on the number of poolings): 7 stages at 256, 4 at 32; the input's H and W must then be
  divisible by ``2 ** (stages - 1)`` (64 at 256);
- features ``32 * 2**i`` capped at 512 (``UNet_base_num_features``, ``UNet_max_features_2d``);
- 3x3 convolutions with bias, instance norm (eps 1e-5, affine), leaky ReLU, no dropout;
- plain U-Net: two convolutions per stage in the encoder and in the decoder;
- ResEnc (M and L presets): residual blocks per encoder stage ``(1, 3, 4, 6, 6, 6, ...)``, one
  convolution per decoder stage.

Not followed:

- the patch size comes from ``input_size``, not from the dataset's median shape and spacing;
  in-plane spacing is taken as isotropic (no anisotropic kernel or pooling rules), and the
  planner's shrinking of the patch to a GPU-memory budget and its batch size are not applied;
- deep supervision is off: one full-resolution output (the library still builds a 1x1 output
  convolution per decoder stage, unused, as nnU-Net does for inference);
- ``base_width`` other than 32 scales every stage (features ``base_width * 2**i`` capped at
  ``16 * base_width``), so a narrower network keeps nnU-Net's shape; nnU-Net has no such knob.

ResEnc L (``preset="L"``) differs from M only in the planner's GPU-memory target (24 GB instead
of 8 GB), which buys a larger patch and batch; at a given 2D input size the network is the same.
"""

from __future__ import annotations

from ._outside import OutsideNet, require
from ._registry import register_model
from .blocks import check_choice, check_positive
from .errors import ModelConfigError

#: nnU-Net's smallest feature-map edge (``UNet_featuremap_min_edge_length``)
MIN_EDGE = 4

#: residual blocks per encoder stage of ResEnc M and L (``UNet_blocks_per_stage_encoder``)
RESENC_BLOCKS = (1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6)

PRESETS = ("M", "L")


def pool_count(size: int, min_edge: int = MIN_EDGE) -> int:
    """Poolings nnU-Net's planner gives a square 2D patch of edge ``size``: halve while the
    edge is at least ``2 * min_edge``."""
    count = 0
    while size >= 2 * min_edge:
        size = -(-size // 2)
        count += 1
    return count


def features_per_stage(base_width: int, stages: int) -> tuple[int, ...]:
    """``base_width * 2**i`` capped at ``16 * base_width`` (32..512 at nnU-Net's 32)."""
    return tuple(min(base_width * 2**i, 16 * base_width) for i in range(stages))


def topology(model: str, input_size: int) -> tuple[int, int]:
    """``(stages, size_multiple)`` for ``input_size``; ``ModelConfigError`` if the size is not
    divisible by the multiple its own poolings need (naming the nearest valid size)."""
    check_positive(model, input_size=input_size)
    pools = pool_count(input_size)
    multiple = 2**pools
    if input_size % multiple:
        nearest = max(multiple, round(input_size / multiple) * multiple)
        raise ModelConfigError(f"{model}: input_size {input_size} is not divisible by {multiple} "
                               f"({pools} poolings); nearest valid size {nearest}")
    return pools + 1, multiple


def nnunet_kwargs(in_channels: int, num_classes: int, base_width: int, stages: int) -> dict:
    """The arguments that nnU-Net's planner gives both 2D U-Net classes (besides the blocks)."""
    from torch import nn

    return {
        "input_channels": in_channels, "n_stages": stages,
        "features_per_stage": features_per_stage(base_width, stages), "conv_op": nn.Conv2d,
        "kernel_sizes": [[3, 3]] * stages, "strides": [[1, 1]] + [[2, 2]] * (stages - 1),
        "num_classes": num_classes, "conv_bias": True, "norm_op": nn.InstanceNorm2d,
        "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
        "nonlin": nn.LeakyReLU, "nonlin_kwargs": {"inplace": True}, "deep_supervision": False,
    }


class NnUNet2D(OutsideNet):
    """nnU-Net's 2D ``PlainConvUNet`` or ``ResidualEncoderUNet`` as its planner sets it up.

    Args:
        in_channels: input channels. Defaults to 3.
        num_classes: output channels (logits). Defaults to 3.
        base_width: features of the first stage; every stage scales with it. Defaults to 32.
        input_size: edge of the square input the network is planned for; it sets the number of
            stages. Defaults to 256.
        residual: ``ResidualEncoderUNet`` (ResEnc) instead of ``PlainConvUNet``. Defaults to False.
        preset: ResEnc preset ``"M"`` or ``"L"`` (the same network at a given input size).

    Input ``(B, in_channels, H, W)`` with H and W divisible by ``2 ** (stages - 1)`` (64 at the
    default 256) and a bottom feature map of more than one pixel (instance norm); output logits
    ``(B, num_classes, H, W)``.
    """

    instance_norm = True

    def __init__(self, in_channels: int = 3, num_classes: int = 3, base_width: int = 32,
                 input_size: int = 256, residual: bool = False, preset: str = "M") -> None:
        super().__init__(in_channels, num_classes, base_width)
        check_choice(self.model_name, "preset", preset, PRESETS)
        stages, self.size_multiple = topology(self.model_name, input_size)
        self.input_size, self.preset, self.stages = input_size, preset, stages
        unet = require(self.model_name, "dynamic_network_architectures.architectures.unet",
                       "dynamic-network-architectures")
        kwargs = nnunet_kwargs(in_channels, num_classes, base_width, stages)
        if residual:
            self.net = unet.ResidualEncoderUNet(
                **kwargs, n_blocks_per_stage=RESENC_BLOCKS[:stages] + (6,) * (stages - len(RESENC_BLOCKS)),
                n_conv_per_stage_decoder=(1,) * (stages - 1))
        else:
            self.net = unet.PlainConvUNet(**kwargs, n_conv_per_stage=(2,) * stages,
                                          n_conv_per_stage_decoder=(2,) * (stages - 1))


@register_model(source="nnU-Net")
def nnunet_plainunet(in_channels: int = 3, num_classes: int = 3, base_width: int = 32,
                     input_size: int = 256) -> NnUNet2D:
    """nnU-Net's default 2D U-Net (``PlainConvUNet``), planned for ``input_size``."""
    return NnUNet2D(in_channels, num_classes, base_width, input_size)


@register_model(source="nnU-Net")
def nnunet_resenc(in_channels: int = 3, num_classes: int = 3, base_width: int = 32,
                  input_size: int = 256, preset: str = "M") -> NnUNet2D:
    """nnU-Net's residual-encoder U-Net (ResEnc M or L), planned for ``input_size``."""
    return NnUNet2D(in_channels, num_classes, base_width, input_size, residual=True, preset=preset)
