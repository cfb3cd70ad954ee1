"""Shared building blocks, the pruning-level layout and the output contract of every model.

Every model derives from :class:`SegmentationNet`:

- ``model(x)`` returns one logits tensor of shape ``(B, num_classes, H, W)``;
- ``model.forward_heads(x)`` returns the list of deep-supervision heads, level 1 first
  (a one-element list for models without deep supervision);
- ``H`` and ``W`` must be divisible by ``model.size_multiple`` (16 for four poolings),
  otherwise a ``ValueError`` names the model, the size and the nearest valid size;
- ``model.model_name`` is the registered name the model was built under (the registry builds
  inside :func:`building`), or the class name for a class used directly; the model's errors
  name it.

Also here: the argument checks that raise :class:`~models.errors.ModelConfigError`, the
decoder nodes and heads of each pruning level of the UNet++ grid (shared by UNet++ and
LFU-Net), and the conv units and resampling helpers the families share.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import nn

from .channels import Layer, resolve_widths
from .errors import ModelConfigError

_BUILDING: ContextVar[str | None] = ContextVar("lfubench_model_name", default=None)


@contextmanager
def building(name: str) -> Iterator[None]:
    """Name every :class:`SegmentationNet` constructed inside this block ``name``.

    The registry runs each registered constructor inside it, so a model is named after the
    name it was created by. Nested blocks keep the outermost name: a constructor registered
    as ``a`` that calls the one registered as ``b`` builds a model named ``a``.
    """
    if _BUILDING.get() is not None:
        yield
        return
    token = _BUILDING.set(name)
    try:
        yield
    finally:
        _BUILDING.reset(token)


def _nearest_multiple(n: int, m: int) -> int:
    return max(m, int(round(n / m)) * m)


class SegmentationNet(nn.Module):
    """Base class: input-size check, head merging and weight transfer between pruning levels.

    Subclasses call ``super().__init__()`` first, which sets ``model_name``, check their
    arguments with it, and implement :meth:`forward_heads`; ``forward`` merges the heads
    according to ``head_merge``: ``"last"`` returns the deepest head kept, ``"mean"`` the mean
    of all heads.
    """

    size_multiple: int = 16
    head_merge: str = "last"

    def __init__(self) -> None:
        super().__init__()
        self.model_name: str = _BUILDING.get() or type(self).__name__
        #: ``{"name": ..., **kwargs}``: ``models.create_model(**model.config)`` rebuilds this
        #: architecture (set by the registry; ``None`` for a class used directly)
        self.config: dict | None = None
        #: width of every channel set (see :mod:`models.channels`)
        self.widths: dict[str, int] = {}

    def channel_layers(self, level: int | None = None) -> list[Layer]:  # pragma: no cover
        """The model's convolutions over named channel sets (:mod:`models.channels`); at
        ``level`` instead of the model's own pruning level for models with levels."""
        raise NotImplementedError

    def default_widths(self, level: int | None = None) -> dict[str, int]:  # pragma: no cover
        """The width of every channel set before any ``widths`` override."""
        raise NotImplementedError

    def _resolve_widths(self, widths, level: int | None = None) -> dict[str, int]:
        """Set ``self.widths`` from the defaults and ``widths``; checked against the layers.
        Sets that only the full-depth model (``level`` 4) builds are accepted and ignored."""
        full = set(self.default_widths(4)) if getattr(self, "prune_level", 4) != 4 else ()
        self.widths = resolve_widths(self.model_name, self.channel_layers(), self.default_widths(), widths,
                                     elsewhere=full)
        return self.widths

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` if ``x`` is not ``(B, in_channels, H, W)`` with H, W valid."""
        if x.dim() != 4:
            raise ValueError(
                f"{self.model_name}: expected a 4D input (B, C, H, W), got shape {tuple(x.shape)}"
            )
        c, h, w = x.shape[1:]
        in_channels = getattr(self, "in_channels", c)
        if c != in_channels:
            raise ValueError(
                f"{self.model_name}: expected {in_channels} input channels, got {c}"
            )
        m = self.size_multiple
        if h % m or w % m:
            raise ValueError(
                f"{self.model_name}: input size {h}x{w} is not divisible by {m}; "
                f"nearest valid size {_nearest_multiple(h, m)}x{_nearest_multiple(w, m)}"
            )

    def forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = self.forward_heads(x)
        if self.head_merge == "mean" and len(heads) > 1:
            total = heads[0]
            for h in heads[1:]:  # (h1 + h2 + ... + hk) / k, summed in order as the authors do
                total = total + h
            return total / len(heads)
        return heads[-1]

    def load_from_full(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load the weights this model needs from the state dict of a larger model.

        A model pruned to level k holds a subset of the modules of the full model of the
        same configuration, under the same names, so a model trained once at full depth can
        be evaluated at every pruning level. Keys this model lacks are ignored; keys it
        needs but ``state_dict`` lacks raise ``KeyError`` naming them.
        """
        own = self.state_dict()
        missing = sorted(k for k in own if k not in state_dict)
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise KeyError(f"{self.model_name}: state dict lacks {len(missing)} key(s): {shown}")
        self.load_state_dict({k: state_dict[k] for k in own}, strict=True)


def check_choice(model: str, name: str, value, allowed) -> None:
    """Raise ``ModelConfigError`` naming the model and argument if ``value`` is not allowed."""
    if value not in allowed:
        raise ModelConfigError(
            f"{model}: {name}={value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}"
        )


def check_positive(model: str, **values: int) -> None:
    """Raise ``ModelConfigError`` naming the model and argument unless each value is an int >= 1."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ModelConfigError(f"{model}: {name} must be a positive integer, got {value!r}")


def check_flag(model: str, **values: bool) -> None:
    """Raise ``ModelConfigError`` naming the model and argument unless each value is a bool."""
    for name, value in values.items():
        if not isinstance(value, bool):
            raise ModelConfigError(f"{model}: {name} must be True or False, got {value!r}")


def check_probability(model: str, **values: float) -> None:
    """Raise ``ModelConfigError`` naming the model and argument unless each value is in [0, 1)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            raise ModelConfigError(f"{model}: {name} must be a number in [0, 1), got {value!r}")


PRUNE_LEVELS = (1, 2, 3, 4)


def level_nodes(level: int) -> list[tuple[int, int]]:
    """Decoder nodes ``(i, j)`` (j >= 1) of the level-``level`` sub-network of the UNet++ grid.

    In compute order: level k adds the anti-diagonal ``i + j = k``, deepest node first (the
    order of the authors' code), after encoder node ``x{k}_0``. UNet++ and LFU-Net build and
    compute exactly these nodes.
    """
    return [(i, k - i) for k in range(1, level + 1) for i in range(k - 1, -1, -1)]


def head_levels(prune_level: int, deep_supervision: bool) -> list[int]:
    """Levels whose output heads (on ``x0_k``) a model holds: ``1 .. prune_level`` with deep
    supervision, otherwise ``prune_level`` alone."""
    return list(range(1, prune_level + 1)) if deep_supervision else [prune_level]


def stage_widths(base_width: int, depth: int = 5) -> list[int]:
    """Stage widths ``base_width * (1, 2, 4, 8, 16)``."""
    return [base_width * 2**i for i in range(depth)]


class ConvBNReLU(nn.Sequential):
    """3x3 convolution (padding 1, with bias), optional batch norm, ReLU, optional dropout.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        groups: convolution groups. Defaults to 1.
        norm: add ``BatchNorm2d`` after the convolution. Defaults to True.
        dropout: dropout probability after the ReLU (0 disables it). Defaults to 0.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        groups: int = 1,
        norm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1, groups=groups)]
        if norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
        if dropout:
            layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


class DoubleConv(nn.Sequential):
    """Two :class:`ConvBNReLU`; ``groups`` applies to each, ``first_groups`` overrides the first;
    the first produces ``mid_channels`` (default ``out_channels``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        groups: int = 1,
        first_groups: int | None = None,
        norm: bool = True,
        dropout: float = 0.0,
        mid_channels: int | None = None,
    ) -> None:
        g1 = groups if first_groups is None else first_groups
        mid = out_channels if mid_channels is None else mid_channels
        super().__init__(
            ConvBNReLU(in_channels, mid, g1, norm, dropout),
            ConvBNReLU(mid, out_channels, groups, norm, dropout),
        )


class Up(nn.Module):
    """2x upsampling: bilinear (``align_corners=True``, no parameters, keeps the channels)
    or a 2x2 stride-2 transposed convolution to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, mode: str = "bilinear") -> None:
        super().__init__()
        self.mode = mode
        self.out_channels = in_channels if mode == "bilinear" else out_channels
        if mode == "deconv":
            self.deconv = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        elif mode != "bilinear":
            raise ValueError(f"upsampling mode must be 'bilinear' or 'deconv', got {mode!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "bilinear":
            return upsample(x, 2)
        return self.deconv(x)


def upsample(x: torch.Tensor, factor: int, align_corners: bool = True) -> torch.Tensor:
    """Bilinear upsampling by ``factor`` (``align_corners=True`` unless told otherwise)."""
    return nn.functional.interpolate(
        x, scale_factor=factor, mode="bilinear", align_corners=align_corners
    )


def downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Max pooling with kernel and stride ``factor``."""
    return nn.functional.max_pool2d(x, kernel_size=factor, stride=factor)
