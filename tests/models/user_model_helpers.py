"""A user's own model module for the tests: written into a temporary folder under a fresh name
(``sys.modules`` keeps every module imported, so each test imports its own), with callables that
build good and bad models, and a fake installed distribution that registers one by entry point."""

from __future__ import annotations

import uuid
from pathlib import Path

#: the source of the user's module: ``build`` (a plain two-convolution net), ``build_heads`` (the
#: same with ``forward_heads``: deep supervision), and callables that go wrong in each way
MODULE = '''
import torch
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, in_channels, num_classes, base_width=4):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, base_width, 3, padding=1),
                                  nn.BatchNorm2d(base_width), nn.ReLU())
        self.out = nn.Conv2d(base_width, num_classes, 1)

    def forward(self, x):
        return self.out(self.body(x))


class HeadsNet(TinyNet):
    def __init__(self, in_channels, num_classes, base_width=4):
        super().__init__(in_channels, num_classes, base_width)
        self.aux = nn.Conv2d(base_width, num_classes, 1)

    def forward_heads(self, x):
        f = self.body(x)
        return [self.aux(f), self.out(f)]

    def forward(self, x):
        return self.forward_heads(x)[-1]


class Halves(TinyNet):
    def forward(self, x):
        return super().forward(x)[..., ::2, ::2]


class BadHeads(HeadsNet):
    def forward_heads(self, x):
        return [h[:, :1] for h in super().forward_heads(x)]

    def forward(self, x):
        return TinyNet.forward(self, x)


def build(in_channels, num_classes, base_width=4):
    return TinyNet(in_channels, num_classes, base_width)


def build_heads(in_channels, num_classes, base_width=4):
    return HeadsNet(in_channels, num_classes, base_width)


def build_any(**kwargs):
    return TinyNet(**kwargs)


def build_ignoring(in_channels, num_classes, **options):
    return TinyNet(in_channels, num_classes)


def build_halves(in_channels, num_classes):
    return Halves(in_channels, num_classes)


def build_bad_heads(in_channels, num_classes):
    return BadHeads(in_channels, num_classes)


def build_tuple(in_channels, num_classes):
    class Pair(TinyNet):
        def forward(self, x):
            y = super().forward(x)
            return y, y
    return Pair(in_channels, num_classes)


def build_raises(in_channels, num_classes, base_width=4):
    raise ValueError(f"base_width {base_width} is too narrow\\nsecond line")


def build_without_io(base_width=4):
    return TinyNet(3, 3, base_width)


def build_number(in_channels, num_classes):
    return 3


def build_own_config(in_channels, num_classes):
    net = TinyNet(in_channels, num_classes)
    net.config = ["settings of its own"]
    return net


NOT_CALLABLE = 3
'''


def write_user_module(folder: Path, source: str = MODULE) -> str:
    """Write ``source`` as a module of a fresh name into ``folder``; return the name."""
    name = f"usernet_{uuid.uuid4().hex[:10]}"
    (folder / f"{name}.py").write_text(source)
    return name


def write_distribution(folder: Path, entry_points: dict[str, str], dist: str = "fakebench") -> None:
    """A fake installed distribution in ``folder`` (put it on ``sys.path``): ``METADATA`` and
    ``entry_points.txt`` registering ``entry_points`` (name -> ``module:callable``) in the group
    ``lfubench.models``."""
    info = folder / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[lfubench.models]\n{lines}")
