"""Per-layer widths: the channel sets of a model, how its layers connect them, and the rules a
width configuration must follow.

Every model describes its convolutions as :class:`Layer` entries over named **channel sets**:
the output channels of one convolution (``"x1_0.mid"``, ``"x1_0"``, ``"t.zp0"``, ...), or the
network input (:data:`INPUT`). A layer produces one set (``out``; ``None`` for the class
outputs of a head, which are never pruned) and reads, in each of its uses, the concatenation
of one or more sets (a shared module -- LFU-Net's transitions and head -- has several uses).
A model built with ``widths={set: n}`` gives each named set ``n`` channels instead of its
default; ``model.widths`` holds every set's width.

The description is the single source of channel structure: :mod:`models.pruning` prunes
through it, and :func:`resolve_widths` checks a width configuration against it:

- a width is a positive integer;
- a set produced or read by a grouped convolution with ``g`` groups has a multiple of ``g``
  channels (it is pruned as ``g`` equal chunks, the same number kept in each);
- the sets concatenated into a grouped convolution have equal widths (so every group of the
  convolution keeps the same number of inputs);
- sets read in the same position by different uses of a shared module are *coupled*: they
  must keep the same channels (same width, same indices).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import ModelConfigError

#: the channel set of the network input (never pruned)
INPUT = "input"


@dataclass(frozen=True)
class Layer:
    """One convolution (or transposed convolution) of a model.

    Attributes:
        path: module path of the convolution (``model.get_submodule(path)``).
        out: channel set it produces; ``None`` for class outputs.
        uses: per use, the channel sets concatenated (in order) into its input.
        groups: convolution groups.
        norm: module path of the ``BatchNorm2d`` that follows it, if any.
    """

    path: str
    out: str | None
    uses: tuple[tuple[str, ...], ...]
    groups: int = 1
    norm: str | None = None


def conv_bn(path: str, out: str | None, *uses: tuple[str, ...], groups: int = 1, norm: bool = True) -> Layer:
    """A :class:`~models.blocks.ConvBNReLU` at ``path`` (conv ``path.0``, batch norm ``path.1``)."""
    return Layer(f"{path}.0", out, tuple(uses), groups, f"{path}.1" if norm else None)


def double_conv(path: str, name: str, inputs: tuple[str, ...], groups: int = 1,
                first_groups: int | None = None, norm: bool = True) -> list[Layer]:
    """The two layers of a :class:`~models.blocks.DoubleConv` at ``path`` producing the sets
    ``name.mid`` and ``name``."""
    g1 = groups if first_groups is None else first_groups
    return [conv_bn(f"{path}.0", f"{name}.mid", inputs, groups=g1, norm=norm),
            conv_bn(f"{path}.1", name, (f"{name}.mid",), groups=groups, norm=norm)]


class _Union:
    """Union-find over channel set names."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, a: str) -> str:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def classes(self, names: Iterable[str]) -> list[list[str]]:
        out: dict[str, list[str]] = {}
        for n in names:
            out.setdefault(self.find(n), []).append(n)
        return list(out.values())


@dataclass
class ChannelGraph:
    """The channel structure of a model: its layers, the sets' chunk counts, the coupled sets
    (same kept channels) and the tied sets (same width)."""

    layers: list[Layer]
    names: list[str]          # prunable sets, in order of first appearance
    chunks: dict[str, int]    # set -> number of equal chunks it is pruned in (lcm of groups)
    coupled: list[list[str]]  # classes of sets that keep the same channels
    tied: list[list[str]]     # classes of coupled classes' members that keep the same width

    def coupled_class(self, name: str) -> list[str]:
        return next(c for c in self.coupled if name in c)


def graph(layers: list[Layer]) -> ChannelGraph:
    """Analyse a layer list: chunks per set, coupled and tied classes."""
    names: list[str] = []
    chunks: dict[str, int] = {}

    def see(name: str, groups: int) -> None:
        if name == INPUT:
            return
        if name not in chunks:
            names.append(name)
            chunks[name] = 1
        chunks[name] = math.lcm(chunks[name], groups)

    coupled, tied = _Union(), _Union()
    for layer in layers:
        if layer.out is not None:
            see(layer.out, layer.groups)
        for use in layer.uses:
            for name in use:
                see(name, layer.groups)
        first = layer.uses[0]
        for use in layer.uses[1:]:
            for a, b in zip(first, use, strict=True):
                if INPUT not in (a, b):
                    coupled.union(a, b)
        if layer.groups > 1:
            for use in layer.uses:
                sets = [n for n in use if n != INPUT]
                for a, b in zip(sets, sets[1:], strict=False):
                    tied.union(a, b)
    classes = coupled.classes(names)
    for c in classes:  # coupled sets are pruned together: one chunk count for the class
        k = math.lcm(*(chunks[n] for n in c))
        for n in c:
            chunks[n] = k
        for a in c[1:]:
            tied.union(c[0], a)
    return ChannelGraph(layers, names, chunks, classes, tied.classes(names))


def resolve_widths(model: str, layers: list[Layer], defaults: Mapping[str, int], widths: Mapping | None,
                   elsewhere: Iterable[str] = ()) -> dict[str, int]:
    """Every set's width: ``defaults`` overridden by ``widths``; raise ``ModelConfigError``
    naming the model, the set and the layer for a width configuration that breaks a rule.

    Names in ``elsewhere`` (sets of the same configuration at full depth that this pruning
    level does not build) are accepted and ignored, so one configuration serves every level.
    """
    out = dict(defaults)
    if widths is None:
        return out
    if not isinstance(widths, Mapping):
        raise ModelConfigError(f"{model}: widths must be a table of channel set -> width, got {widths!r}")
    known, ignored = set(defaults), set(elsewhere)
    for name, value in widths.items():
        if name not in known:
            if name in ignored:
                continue
            shown = ", ".join(sorted(known)[:8]) + (" ..." if len(known) > 8 else "")
            raise ModelConfigError(f"{model}: widths names unknown channel set {name!r}; sets: {shown}")
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ModelConfigError(f"{model}: width of channel set {name!r} must be a positive integer, "
                                   f"got {value!r}")
        out[name] = value
    check_widths(model, layers, out)
    return out


def check_widths(model: str, layers: list[Layer], widths: Mapping[str, int]) -> None:
    """Raise ``ModelConfigError`` naming the set and layer if ``widths`` breaks a rule."""
    for layer in layers:
        g = layer.groups
        for name in ([layer.out] if layer.out else []) + [n for use in layer.uses for n in use]:
            if name != INPUT and widths[name] % g:
                raise ModelConfigError(
                    f"{model}: channel set {name!r} has {widths[name]} channels, not a multiple of the "
                    f"{g} groups of layer {layer.path!r}")
        for use in layer.uses:
            sets = [n for n in use if n != INPUT]
            if g > 1 and len({widths[n] for n in sets}) > 1:
                shown = ", ".join(f"{n}={widths[n]}" for n in sets)
                raise ModelConfigError(
                    f"{model}: the channel sets concatenated into grouped layer {layer.path!r} must have "
                    f"equal widths, got {shown}")
        for use in layer.uses[1:]:
            for a, b in zip(layer.uses[0], use, strict=True):
                if INPUT not in (a, b) and widths[a] != widths[b]:
                    raise ModelConfigError(
                        f"{model}: channel sets {a!r} ({widths[a]}) and {b!r} ({widths[b]}) both feed the "
                        f"shared layer {layer.path!r} and must have equal widths")
