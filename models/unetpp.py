"""UNet++ (Zhou et al., DLMIA 2018, "UNet++: A Nested U-Net Architecture for Medical Image
Segmentation"; TMI 2019, "UNet++: Redesigning Skip Connections ...").

Nodes are named by their grid position ``x{i}_{j}``: row ``i`` is the resolution level
(i = 0 is full resolution), column ``j`` the position along the nested skip pathway. The
level-k sub-network holds the nodes with ``i + j <= k``; its output head sits on ``x0_k``.
A model built with ``prune_level=k`` holds and computes only that sub-network; its node and
head lists come from :mod:`models.blocks`, shared with LFU-Net.
"""

from __future__ import annotations

import torch
from torch import nn

from ._registry import register_model
from .blocks import (
    PRUNE_LEVELS,
    DoubleConv,
    SegmentationNet,
    Up,
    check_choice,
    check_flag,
    check_positive,
    check_probability,
    head_levels,
    level_nodes,
    stage_widths,
)
from .channels import INPUT, Layer, double_conv


class UNetPlusPlus(SegmentationNet):
    """UNet++ with nested dense skip pathways, deep supervision and depth pruning.

    Args:
        in_channels: input channels. Defaults to 3.
        num_classes: output channels (logits). Defaults to 3.
        base_width: first stage width; stages ``base_width * (1, 2, 4, 8, 16)``. Defaults to 32.
        deep_supervision: one 1x1 head per level (``x0_1`` .. ``x0_k``), all returned by
            ``forward_heads``; otherwise only the head of ``x0_k``. Defaults to True.
        prune_level: depth ``k`` in 1..4 of the sub-network that is built and computed;
            the model holds only the nodes with ``i + j <= k``. Defaults to 4.
        head_merge: what ``model(x)`` returns with several heads: ``"last"`` (the level-k
            head, the paper's fast mode) or ``"mean"`` (the mean of all heads, accurate
            mode). Defaults to ``"last"``.
        norm: batch norm after every 3x3 convolution. Defaults to True.
        dropout: dropout probability after every ReLU. Defaults to 0.
        up_mode: ``"bilinear"`` or ``"deconv"`` (2x2 transposed conv to the row's width).
            Defaults to ``"bilinear"``.
        widths: channel-set widths overriding the defaults (``x{i}_{j}.mid`` and ``x{i}_{j}``
            for every node, ``up.x{i}_{j}`` with deconv upsampling); a channel-pruned model
            carries them (:mod:`models.pruning`). Defaults to None.

    Node ``x{i}_{j}`` concatenates ``up(x{i+1}_{j-1})`` (first) with ``x{i}_0 .. x{i}_{j-1}``.
    Input ``(B, in_channels, H, W)`` with H and W divisible by 16; output
    ``(B, num_classes, H, W)``. Weights load from a full model with :meth:`load_from_full`.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 3,
        base_width: int = 32,
        deep_supervision: bool = True,
        prune_level: int = 4,
        head_merge: str = "last",
        norm: bool = True,
        dropout: float = 0.0,
        up_mode: str = "bilinear",
        widths: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        name = self.model_name
        check_positive(name, in_channels=in_channels, num_classes=num_classes, base_width=base_width)
        check_flag(name, deep_supervision=deep_supervision, norm=norm)
        check_probability(name, dropout=dropout)
        check_choice(name, "prune_level", prune_level, PRUNE_LEVELS)
        check_choice(name, "head_merge", head_merge, ("last", "mean"))
        check_choice(name, "up_mode", up_mode, ("bilinear", "deconv"))
        self.in_channels, self.num_classes = in_channels, num_classes
        self.deep_supervision, self.prune_level, self.head_merge = deep_supervision, prune_level, head_merge
        self.base_width, self.norm, self.up_mode = base_width, norm, up_mode
        w = self._resolve_widths(widths)
        unit = dict(norm=norm, dropout=dropout)
        self.encoder = nn.ModuleDict()
        for i in range(prune_level + 1):
            c_in = in_channels if i == 0 else w[f"x{i - 1}_0"]
            self.encoder[f"x{i}_0"] = DoubleConv(c_in, w[f"x{i}_0"], mid_channels=w[f"x{i}_0.mid"], **unit)
        self.nodes = level_nodes(prune_level)
        self.up = nn.ModuleDict()
        self.decoder = nn.ModuleDict()
        for i, j in self.nodes:
            node = f"x{i}_{j}"
            self.up[node] = Up(w[f"x{i + 1}_{j - 1}"], w.get(f"up.{node}", 0), up_mode)
            c_in = self.up[node].out_channels + sum(w[f"x{i}_{m}"] for m in range(j))
            self.decoder[node] = DoubleConv(c_in, w[node], mid_channels=w[f"{node}.mid"], **unit)
        self.heads = nn.ModuleDict({f"l{k}": nn.Conv2d(w[f"x0_{k}"], num_classes, 1)
                                    for k in head_levels(prune_level, deep_supervision)})

    def default_widths(self, level: int | None = None) -> dict[str, int]:
        w = stage_widths(self.base_width)
        level = self.prune_level if level is None else level
        out = {}
        for i in range(level + 1):
            out[f"x{i}_0.mid"] = out[f"x{i}_0"] = w[i]
        for i, j in level_nodes(level):
            node = f"x{i}_{j}"
            if self.up_mode == "deconv":
                out[f"up.{node}"] = w[i]
            out[f"{node}.mid"] = out[node] = w[i]
        return out

    def channel_layers(self, level: int | None = None) -> list[Layer]:
        level = self.prune_level if level is None else level
        layers = []
        for i in range(level + 1):
            layers += double_conv(f"encoder.x{i}_0", f"x{i}_0", (INPUT,) if i == 0 else (f"x{i - 1}_0",),
                                  norm=self.norm)
        for i, j in level_nodes(level):
            node, src = f"x{i}_{j}", f"x{i + 1}_{j - 1}"
            if self.up_mode == "deconv":
                layers.append(Layer(f"up.{node}.deconv", f"up.{node}", ((src,),)))
                src = f"up.{node}"
            layers += double_conv(f"decoder.{node}", node, (src, *(f"x{i}_{m}" for m in range(j))),
                                  norm=self.norm)
        return layers + [Layer(f"heads.l{k}", None, ((f"x0_{k}",),))
                         for k in head_levels(level, self.deep_supervision)]

    def forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.check_input(x)
        out: dict[tuple[int, int], torch.Tensor] = {(0, 0): self.encoder["x0_0"](x)}
        for i, j in self.nodes:
            if (i + j, 0) not in out:  # the first node of level i + j needs its encoder node
                out[i + j, 0] = self.encoder[f"x{i + j}_0"](nn.functional.max_pool2d(out[i + j - 1, 0], 2))
            node = f"x{i}_{j}"
            inputs = [self.up[node](out[i + 1, j - 1])] + [out[i, m] for m in range(j)]
            out[i, j] = self.decoder[node](torch.cat(inputs, 1))
        return [self.heads[f"l{k}"](out[0, k]) for k in head_levels(self.prune_level, self.deep_supervision)]


@register_model
def unetpp(**kwargs) -> UNetPlusPlus:
    """UNet++ with the harmonised blocks (conv-BN-ReLU, bilinear upsampling), width 32."""
    return UNetPlusPlus(**kwargs)


@register_model(source="authors' preset")
def unetpp_zhou2018(
    in_channels: int = 1, num_classes: int = 1, deep_supervision: bool = False, **kwargs
) -> UNetPlusPlus:
    """UNet++ of the authors' Keras code (``Nest_Net`` in MrGiovanni/UNetPlusPlus).

    Widths 32..512, no batch norm, dropout 0.5 after every ReLU, 2x2 transposed-conv
    upsampling in every node, one 1x1 head per level; defaults 1 input channel, 1 class and
    deep supervision off as there: 9,041,601 parameters (9,041,700 with deep supervision).
    The Keras heads end in a sigmoid; these return the logits before it.
    """
    cfg = dict(base_width=32, norm=False, dropout=0.5, up_mode="deconv")
    cfg.update(kwargs)
    return UNetPlusPlus(
        in_channels=in_channels, num_classes=num_classes, deep_supervision=deep_supervision, **cfg
    )
