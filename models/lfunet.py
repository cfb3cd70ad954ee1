"""LFU-Net (Deng et al., Current Medical Imaging 2023, "LFU-Net: A Lightweight U-Net with
Full Skip Connections for Medical Image Segmentation").

The layout follows the authors' code (dengdy22/U-Nets, file ``LFU-Net``). Nodes sit on the
UNet++ grid: encoder ``x{i}_0`` with widths ``n * 2**i``, decoder nodes ``x{i}_{j}``
(j >= 1, i + j <= 4) all ``n`` channels wide. Every skip passes through a 3x3 grouped
*transition* convolution to ``n`` channels. Node ``x{i}_{j}`` concatenates, in this order:

1. the shallower encoder nodes ``x{k}_0`` (k < i), max-pooled by ``2**(i-k)``
   -- transition ``zp{k}``;
2. its own level's encoder node ``x{i}_0`` -- transition ``p{i}``;
3. the earlier nodes of its row ``x{i}_{m}`` (1 <= m < j) -- transition ``zp0``;
4. the deeper nodes on its anti-diagonal ``x{i+m}_{j-m}`` for m = j .. 1, bilinearly
   upsampled by ``2**m``; the nearest (m = 1) through ``p{c}``, the others through
   ``zp{c}``, where ``c`` is the source's width level (its row for an encoder node, 0 for a
   decoder node).

As in the authors' code, the ten transitions ``p0..p4`` and ``zp0..zp4`` are shared by all
skips that use them, and one 1x1 head is shared by all deep-supervision outputs; the
output at level k is the mean of the heads' logits on ``x0_1 .. x0_k`` (no sigmoid). The
arguments ``groups``, ``skip_mode``, ``share_transitions`` and ``deep_supervision`` switch
each design element off for ablations.

Two departures from the authors' forward, neither changing any output bit:

- a model built with ``prune_level=k`` holds and computes only the level-k sub-network
  (the node and head lists of :mod:`models.blocks`, shared with UNet++; the authors'
  forward computes every node whatever output is used);
- each distinct transition output (same conv, same source, same resampling) is computed
  once and reused; the authors recompute it for every node that uses it (for example
  ``p0(x0_0)`` four times). Setting ``model.dedupe = False`` restores the authors' order
  of work, for verification.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ._registry import register_model
from .blocks import (
    PRUNE_LEVELS,
    DoubleConv,
    SegmentationNet,
    check_choice,
    check_flag,
    check_positive,
    downsample,
    head_levels,
    level_nodes,
    stage_widths,
    upsample,
)
from .channels import INPUT, Layer, double_conv
from .errors import ModelConfigError

SKIP_MODES = ("full", "nested")


class Skip(NamedTuple):
    """One skip into a decoder node: source node, resampling and transition conv key."""

    source: tuple[int, int]
    op: str  # "none", "down" or "up"
    factor: int
    transition: str


def _node(i: int, j: int) -> str:
    return f"x{i}_{j}"


def node_skips(i: int, j: int, skip_mode: str = "full", share_transitions: bool = True) -> list[Skip]:
    """The skips of decoder node ``x{i}_{j}`` in concatenation order."""
    edges: list[tuple[tuple[int, int], str, int, str, int]] = []  # source, op, factor, set, level
    if skip_mode == "full":
        edges += [((k, 0), "down", 2 ** (i - k), "zp", k) for k in range(i)]
    edges.append(((i, 0), "none", 1, "p", i))
    edges += [((i, m), "none", 1, "zp", 0) for m in range(1, j)]
    deeper = range(j, 0, -1) if skip_mode == "full" else [1]
    for m in deeper:
        src = (i + m, j - m)
        level = src[0] if src[1] == 0 else 0
        edges.append((src, "up", 2**m, "p" if m == 1 else "zp", level))
    if share_transitions:
        return [Skip(s, op, f, f"{t}{lv}") for s, op, f, t, lv in edges]
    return [Skip(s, op, f, f"{_node(*s)}_to_{_node(i, j)}") for s, op, f, _, _ in edges]


class LFUNet(SegmentationNet):
    """LFU-Net: a narrow U-Net with grouped convolutions, full skip connections through shared
    transition convolutions, deep supervision and depth pruning.

    Args:
        in_channels: input channels. Defaults to 3 (2.5D CT, as the authors' model).
        num_classes: output channels (logits). Defaults to 3.
        base_width: width ``n`` of the first stage and of every decoder node; encoder widths
            ``n * (1, 2, 4, 8, 16)``. Must be divisible by ``groups``. Defaults to 8.
        groups: groups of every 3x3 convolution except the first (which sees the raw input).
            ``groups=1`` gives dense convolutions. Defaults to 8.
        deep_supervision: heads on ``x0_1 .. x0_k`` (all returned by ``forward_heads``);
            otherwise only the head on ``x0_k``. Defaults to True.
        prune_level: depth ``k`` in 1..4 of the sub-network that is built and computed.
            Defaults to 4.
        skip_mode: ``"full"`` (the paper's full skip connections) or ``"nested"``
            (UNet++-style skips only: own-level encoder, earlier row nodes and the
            upsampled node below). Defaults to ``"full"``.
        share_transitions: share one transition conv per (kind, source width) as the
            authors do; ``False`` gives every skip its own. Defaults to True.
        head_merge: ``"mean"`` (mean of the heads, the authors' output) or ``"last"``.
            Defaults to ``"mean"``.
        widths: channel-set widths overriding the defaults (``x{i}_{j}.mid`` and ``x{i}_{j}``
            for every node, ``t.KEY`` for each transition); each a multiple of ``groups``,
            equal for the transitions concatenated into one node and for the nodes read by
            one shared transition or the shared head. A channel-pruned model carries them
            (:mod:`models.pruning`). Defaults to None.

    Input ``(B, in_channels, H, W)`` with H and W divisible by 16; output
    ``(B, num_classes, H, W)``. Weights load from a full model of the same configuration
    with :meth:`load_from_full`.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 3,
        base_width: int = 8,
        groups: int = 8,
        deep_supervision: bool = True,
        prune_level: int = 4,
        skip_mode: str = "full",
        share_transitions: bool = True,
        head_merge: str = "mean",
        widths: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        name = self.model_name
        check_positive(
            name, in_channels=in_channels, num_classes=num_classes, base_width=base_width, groups=groups
        )
        if base_width % groups:
            raise ModelConfigError(f"{name}: base_width {base_width} is not divisible by groups {groups}")
        check_flag(name, deep_supervision=deep_supervision, share_transitions=share_transitions)
        check_choice(name, "prune_level", prune_level, PRUNE_LEVELS)
        check_choice(name, "skip_mode", skip_mode, SKIP_MODES)
        check_choice(name, "head_merge", head_merge, ("last", "mean"))
        self.in_channels, self.num_classes = in_channels, num_classes
        self.deep_supervision, self.prune_level, self.head_merge = deep_supervision, prune_level, head_merge
        self.base_width, self.groups = base_width, groups
        self.skip_mode, self.share_transitions = skip_mode, share_transitions
        self.dedupe = True
        g = groups
        w = self._resolve_widths(widths)
        self.encoder = nn.ModuleDict()
        for i in range(prune_level + 1):
            c_in = in_channels if i == 0 else w[_node(i - 1, 0)]
            self.encoder[_node(i, 0)] = DoubleConv(c_in, w[_node(i, 0)], g, first_groups=g if i else 1,
                                                   mid_channels=w[f"{_node(i, 0)}.mid"])
        self.nodes = level_nodes(prune_level)
        self.skips = {node: self._node_skips(node) for node in self.nodes}
        self.decoder = nn.ModuleDict()
        for node in self.nodes:
            c_in = sum(w[f"t.{s.transition}"] for s in self.skips[node])
            self.decoder[_node(*node)] = DoubleConv(c_in, w[_node(*node)], g,
                                                    mid_channels=w[f"{_node(*node)}.mid"])
        sources = self._transition_sources(self.nodes)
        self.transitions = nn.ModuleDict(
            {key: nn.Conv2d(w[src[0]], w[f"t.{key}"], 3, padding=1, groups=g) for key, src in sources.items()}
        )
        first_head = head_levels(prune_level, deep_supervision)[0]  # the heads' sources share one width
        self.head = nn.Conv2d(w[f"x0_{first_head}"], num_classes, 1)

    def _node_skips(self, node: tuple[int, int]) -> list[Skip]:
        return node_skips(*node, skip_mode=self.skip_mode, share_transitions=self.share_transitions)

    def _transition_sources(self, nodes) -> dict[str, list[str]]:
        """Transition key -> the nodes it reads (in order of first use)."""
        out: dict[str, list[str]] = {}
        for node in nodes:
            for s in self._node_skips(node):
                srcs = out.setdefault(s.transition, [])
                if _node(*s.source) not in srcs:
                    srcs.append(_node(*s.source))
        return out

    def default_widths(self, level: int | None = None) -> dict[str, int]:
        level = self.prune_level if level is None else level
        w, n = stage_widths(self.base_width), self.base_width
        out = {}
        for i in range(level + 1):
            out[f"{_node(i, 0)}.mid"] = out[_node(i, 0)] = w[i]
        nodes = level_nodes(level)
        out.update({f"t.{key}": n for key in self._transition_sources(nodes)})
        for node in nodes:
            out[f"{_node(*node)}.mid"] = out[_node(*node)] = n
        return out

    def channel_layers(self, level: int | None = None) -> list[Layer]:
        level = self.prune_level if level is None else level
        g = self.groups
        layers = []
        for i in range(level + 1):
            source = (INPUT,) if i == 0 else (_node(i - 1, 0),)
            layers += double_conv(f"encoder.{_node(i, 0)}", _node(i, 0), source, groups=g,
                                  first_groups=g if i else 1)
        nodes = level_nodes(level)
        for key, srcs in self._transition_sources(nodes).items():
            layers.append(Layer(f"transitions.{key}", f"t.{key}", tuple((src,) for src in srcs), g))
        for node in nodes:
            inputs = tuple(f"t.{s.transition}" for s in self._node_skips(node))
            layers += double_conv(f"decoder.{_node(*node)}", _node(*node), inputs, groups=g)
        heads = tuple((f"x0_{k}",) for k in head_levels(level, self.deep_supervision))
        return [*layers, Layer("head", None, heads)]

    def _skip_input(self, s: Skip, out: dict, cache: dict | None) -> torch.Tensor:
        def resampled() -> torch.Tensor:
            x = out[s.source]
            if s.op == "down":
                return downsample(x, s.factor)
            if s.op == "up":
                return upsample(x, s.factor)
            return x

        if cache is None:  # the authors' order: every skip computed afresh
            return self.transitions[s.transition](resampled())
        key = (s.transition, s.source, s.op, s.factor)
        if key not in cache:
            rkey = (s.source, s.op, s.factor)
            if rkey not in cache:
                cache[rkey] = resampled()
            cache[key] = self.transitions[s.transition](cache[rkey])
        return cache[key]

    def forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.check_input(x)
        out = {(0, 0): self.encoder["x0_0"](x)}
        cache: dict | None = {} if self.dedupe else None
        for node in self.nodes:
            i, j = node
            if (i + j, 0) not in out:
                out[i + j, 0] = self.encoder[_node(i + j, 0)](downsample(out[i + j - 1, 0], 2))
            parts = [self._skip_input(s, out, cache) for s in self.skips[node]]
            out[node] = self.decoder[_node(*node)](torch.cat(parts, 1))
        return [self.head(out[0, k]) for k in head_levels(self.prune_level, self.deep_supervision)]


@register_model
def lfunet(**kwargs) -> LFUNet:
    """LFU-Net, width 8, 8 groups, full skips, deep supervision, level 4."""
    return LFUNet(**kwargs)


@register_model(source="authors' preset")
def lfunet_deng2023(in_channels: int = 3, num_classes: int = 1, **kwargs) -> LFUNet:
    """LFU-Net of the authors' code (dengdy22/U-Nets, ``LFU-Net``): width 8, 8 groups, full
    shared skips, output the mean of the four heads. Their ``cfg`` is missing, so 3 input
    channels (their first conv) and 1 class: 47,849 parameters.
    """
    return LFUNet(in_channels=in_channels, num_classes=num_classes, **kwargs)
