"""The lfubench model zoo: U-Net, UNet++, UNet 3+ and LFU-Net, and presets that reproduce
the original authors' code."""

from . import lfunet, unet, unet3p, unetpp  # noqa: F401  (registers the models)
from ._registry import UnknownModelError, create_model, list_models, register_model
from .blocks import SegmentationNet

__all__ = ["SegmentationNet", "UnknownModelError", "create_model", "list_models", "register_model"]
