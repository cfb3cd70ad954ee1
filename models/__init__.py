"""The lfubench model zoo: U-Net, UNet++, UNet 3+ and LFU-Net, and presets that reproduce
the original authors' forward functions.

``create_model(name, **kwargs)`` builds a registered model named ``name``; a bad model
configuration raises ``ModelConfigError`` (a ``ValueError``; ``UnknownModelError`` for an
unknown name is one too). ``prune_channels(model, ratio)`` returns a channel-pruned, genuinely
smaller model of the same family (:mod:`models.pruning`). The outside baselines (nnU-Net's,
MONAI's and smp's U-Nets: :mod:`models.nnunet`, :mod:`models.monai`, :mod:`models.smp`) are
registered always and need the extra ``baselines`` to be built.
"""

from . import lfunet, monai, nnunet, smp, unet, unet3p, unetpp  # noqa: F401  (registers the models)
from ._outside import OUTSIDE_SOURCES
from ._registry import (
    SOURCES,
    check_forward,
    create_model,
    is_reference,
    list_models,
    model_arguments,
    model_source,
    register_model,
    sized_arguments,
)
from .blocks import SegmentationNet
from .errors import ModelConfigError, UnknownModelError, UserModelError
from .pruning import prune_channels, zero_removed

__all__ = [
    "ModelConfigError",
    "OUTSIDE_SOURCES",
    "SOURCES",
    "SegmentationNet",
    "UnknownModelError",
    "UserModelError",
    "check_forward",
    "create_model",
    "is_reference",
    "list_models",
    "model_arguments",
    "model_source",
    "prune_channels",
    "register_model",
    "sized_arguments",
    "zero_removed",
]
