"""``lfubench zoo``: every registered model with its parameter count and GMACs."""

from __future__ import annotations

import argparse

import torch

import models
from bench.complexity import MAC_CONVENTION, count_params, fvcore_macs
from reports.text import FORMATS, format_rows

from .args import parse_shape


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="list the registered models with parameters and GMACs")
    p.add_argument("--input", default="3x256x256",
                   help="CxHxW input size (default 3x256x256); each model is fed its own "
                   "default number of input channels at HxW")
    p.add_argument("--pattern", default="*", help="wildcard on model names (default *)")
    p.add_argument("--format", choices=FORMATS, default="md", help="output format (default md)")
    p.set_defaults(func=run)


def zoo_rows(input_shape: tuple[int, int, int], pattern: str = "*") -> list[dict]:
    """One row per registered model: name, input channels, classes, parameters, GMACs."""
    _, h, w = input_shape
    rows = []
    torch.manual_seed(0)
    for name in models.list_models(pattern):
        model = models.create_model(name)
        shape = (model.in_channels, h, w)
        model.check_input(torch.empty(1, *shape))
        rows.append({
            "model": name,
            "in_channels": model.in_channels,
            "num_classes": model.num_classes,
            "params": count_params(model),
            "gmacs": round(fvcore_macs(model, shape) / 1e9, 4),
        })
    return rows


def run(args: argparse.Namespace) -> int:
    shape = parse_shape(args.input)
    rows = zoo_rows(shape, args.pattern)
    if not rows:
        raise ValueError(f"no model matches --pattern {args.pattern!r}")
    header = (f"{MAC_CONVENTION}; input {shape[1]}x{shape[2]}, batch 1, each model at its "
              "default in_channels/num_classes, eval mode")
    print(format_rows(rows, args.format, header))
    return 0
