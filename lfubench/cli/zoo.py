"""``lfubench zoo``: every registered model with its source, parameter count and GMACs.

The source (``models.model_source``) says where a model comes from: lfubench, an authors' preset,
nnU-Net, MONAI, smp, or ``user`` for a model an installed package registers in the entry-point group
``lfubench.models``.

A mistake in the arguments (a bad ``--input``, a ``--pattern`` matching nothing) raises
:class:`bench.errors.LfubenchError`: one line, exit 2.
"""

from __future__ import annotations

import argparse

import torch

from lfubench import models
from lfubench.bench.complexity import count_params, fvcore_macs
from lfubench.bench.conventions import MACS
from lfubench.bench.errors import LfubenchError
from lfubench.reports.text import FORMATS, format_rows

from .args import parse_shape
from .profile import fit_input


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="list the registered models with their source, parameters and GMACs")
    p.add_argument("--input", default="3x256x256",
                   help="CxHxW input size (default 3x256x256); each model is fed its own "
                   "default number of input channels at HxW")
    p.add_argument("--pattern", default="*", help="wildcard on model names (default *), or one model of your "
                   "own as module:callable")
    p.add_argument("--format", choices=FORMATS, default="md", help="output format (default md)")
    p.set_defaults(func=run)


def zoo_rows(input_shape: tuple[int, int, int], pattern: str = "*") -> list[dict]:
    """One row per registered model matching ``pattern`` (or the one user's model ``pattern`` names
    as ``module:callable``): name, source, input channels, classes, parameters, GMACs; each model at
    its own ``in_channels`` and the H x W of ``input_shape``."""
    rows = []
    torch.manual_seed(0)
    for name in [pattern] if models.is_reference(pattern) else models.list_models(pattern):
        source = models.model_source(name)
        try:
            model = models.create_model(name, **models.sized_arguments(name, input_shape[1]))
            shape = fit_input(model, input_shape, own_channels=True)
        except (models.ModelConfigError, LfubenchError) as err:
            if source not in models.OUTSIDE_SOURCES:
                raise
            # an outside baseline whose library is missing, or that does not take this input size
            rows.append({"model": name, "source": source, "in_channels": None, "num_classes": None,
                         "params": None, "gmacs": None, "note": f"not built here: {err}"})
            continue
        rows.append({
            "model": name,
            "source": source,
            "in_channels": model.in_channels,
            "num_classes": model.num_classes,
            "params": count_params(model),
            "gmacs": round(fvcore_macs(model, shape) / 1e9, 4),
            "note": "",
        })
    return rows


def run(args: argparse.Namespace) -> int:
    shape = parse_shape(args.input)
    if not models.is_reference(args.pattern) and not models.list_models(args.pattern):
        raise LfubenchError(f"no model matches --pattern {args.pattern!r}; the zoo: "
                            f"{', '.join(models.list_models())}")
    rows = zoo_rows(shape, args.pattern)
    header = (f"{MACS}; input {shape[1]}x{shape[2]}, batch 1, each model at its "
              "default in_channels/num_classes, eval mode")
    print(format_rows(rows, args.format, header))
    return 0
