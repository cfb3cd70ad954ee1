"""What the tests of the outside baselines share: which library each needs (a test is skipped
where it does not import) and a small configuration of each, quick to train and prune."""

from __future__ import annotations

import importlib

import pytest

from lfubench import models

#: the outside baselines, by name
BASELINES = [n for n in models.list_models() if models.model_source(n) in models.OUTSIDE_SOURCES]

#: the library each baseline family (the name's prefix) needs
LIBRARY = {"nnunet": "dynamic_network_architectures", "monai": "monai",
           "smp": "segmentation_models_pytorch"}

#: small configurations, quick to train and prune, and the side of their square input
SMALL = {
    "nnunet_plainunet": ({"base_width": 8, "input_size": 64}, 64),
    "nnunet_resenc": ({"base_width": 8, "input_size": 64}, 64),
    "monai_basicunet": ({"base_width": 8}, 32),
    "monai_attentionunet": ({"base_width": 8}, 32),
    "monai_segresnet": ({"base_width": 8}, 32),
    "monai_dynunet": ({"base_width": 8, "input_size": 64}, 64),
    "smp_unet": ({"base_width": 4, "encoder": "resnet18"}, 64),
    "smp_unetplusplus": ({"base_width": 4, "encoder": "mobilenet_v2"}, 64),
}


def importable(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except Exception:  # noqa: BLE001  (missing, or a broken install)
        return False


def needs(name: str):
    """Skip unless the library of baseline ``name`` (by its prefix) imports here."""
    module = LIBRARY[name.split("_")[0]]
    return pytest.mark.skipif(not importable(module), reason=f"{module} is not importable here")
