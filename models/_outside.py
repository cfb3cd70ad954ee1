"""What the outside baselines share: the library import and the wrapper to the zoo's contract.

The outside baselines (:mod:`models.nnunet`, :mod:`models.monai`, :mod:`models.smp`) are built by
their own libraries, installed with the extra ``baselines`` (``pip install 'lfubench[baselines]'``).
Each library is imported when a model is built, not when :mod:`lfubench.models` is imported, so
the zoo works without the extra; building one without its library raises a one-line
:class:`~models.errors.ModelConfigError` naming the extra. No weights are ever downloaded.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import torch
from torch import nn

from .blocks import SegmentationNet, check_positive
from .errors import ModelConfigError

#: the extra that installs the outside baselines' libraries
EXTRA = "baselines"

#: the registry sources (``models.SOURCES``) of the outside baselines
OUTSIDE_SOURCES = ("nnU-Net", "MONAI", "smp")


def require(model: str, module: str, package: str) -> ModuleType:
    """Import ``module`` (of the pip package ``package``) for ``model``; a missing or broken
    install raises :class:`ModelConfigError` in one line naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        missing = err.name or ""
        why = ("is not installed" if missing.split(".")[0] == module.split(".")[0]
               else f"failed to import (it needs {missing or err}, which is missing)")
    except Exception as err:  # noqa: BLE001  (a broken install, e.g. a torchvision built for another torch)
        first = str(err).splitlines()[0] if str(err) else ""
        why = f"failed to import ({type(err).__name__}: {first})"
    raise ModelConfigError(f"{model}: needs {package}, which {why}; pip install 'lfubench[{EXTRA}]'")


class OutsideNet(SegmentationNet):
    """A network built by an outside library (``self.net``), wrapped to the zoo's contract:
    ``model(x)`` checks the input (``(B, in_channels, H, W)``, H and W divisible by
    ``size_multiple``) and returns the library's logits ``(B, num_classes, H, W)``;
    ``forward_heads(x)`` the one-element list of them. No pruning levels.

    Subclasses call ``super().__init__(in_channels, num_classes, base_width)`` (which checks the
    three), then set ``self.net`` and ``self.size_multiple``.
    """

    def __init__(self, in_channels: int, num_classes: int, base_width: int) -> None:
        super().__init__()
        check_positive(self.model_name, in_channels=in_channels, num_classes=num_classes,
                       base_width=base_width)
        self.in_channels, self.num_classes, self.base_width = in_channels, num_classes, base_width
        self.net: nn.Module

    #: whether the network normalises each feature map over its own pixels (instance norm) down to
    #: the bottom stage, which then needs more than one pixel
    instance_norm: bool = False

    def check_input(self, x: torch.Tensor) -> None:
        """The zoo's input check, and for an instance-normed network a bottom feature map of more
        than one pixel (H and W at least ``size_multiple``, one of them twice that)."""
        super().check_input(x)
        h, w = x.shape[-2:]
        m = self.size_multiple
        if self.instance_norm and (h // m) * (w // m) < 2:
            raise ValueError(f"{self.model_name}: input size {h}x{w} leaves a 1x1 feature map at the "
                             f"bottom, which instance norm cannot normalise; use at least {2 * m}x{m}")

    def forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.check_input(x)
        return [self.net(x)]
