"""Parameters, GMACs and CPU latency of each outside baseline at its default width and shrunk to
LFU-Net w8's parameter count (iso-cost).

Run: ``python benchmarks/baselines.py [--pattern '*'] [--encoders resnet34,mobilenet_v2] [--iters 20]
[--threads 1]``. For every outside baseline (``models.OUTSIDE_SOURCES``; smp's once per encoder) it
finds by search the ``base_width`` whose parameter count is closest to LFU-Net w8's at the same
input channels and classes, then prints both rows: parameters, GMACs (fvcore) and the median CPU
latency (``bench.latency.profile``, fp32, batch 1, inference) at 3x256x256. smp's width shrinks its
decoder only, so its iso-cost row stays far above the target. A baseline whose library is missing
is listed as skipped. Takes several minutes: run it alone (``--iters 2 --time 0 --pattern
'monai_seg*'``: a quick check).
"""

from __future__ import annotations

import argparse

import torch

from lfubench import models
from lfubench.bench import conventions
from lfubench.bench.complexity import count_params, fvcore_macs
from lfubench.bench.latency import Timing, profile
from lfubench.cli.args import parse_list
from lfubench.reports.text import format_rows

INPUT = (3, 256, 256)
CLASSES = 3


def _params(name: str, kwargs: dict) -> int:
    """Parameters of ``name`` built with ``kwargs`` (on the meta device: nothing allocated)."""
    with torch.device("meta"):
        return count_params(models.create_model(name, **kwargs))


def iso_width(name: str, kwargs: dict, target: int, default: int) -> int:
    """The ``base_width`` whose parameter count is closest to ``target`` (counts grow with width;
    the smaller width on a tie)."""
    lo, hi = 1, max(default, 2)
    while _params(name, {**kwargs, "base_width": hi}) < target:
        hi *= 2
    while hi - lo > 1:  # the largest width at or under the target lies in [lo, hi)
        mid = (lo + hi) // 2
        if _params(name, {**kwargs, "base_width": mid}) <= target:
            lo = mid
        else:
            hi = mid
    below, above = _params(name, {**kwargs, "base_width": lo}), _params(name, {**kwargs, "base_width": hi})
    return lo if abs(below - target) <= abs(above - target) else hi


def _targets(pattern: str, encoders: list[str]) -> list[tuple[str, dict]]:
    out = []
    for name in models.list_models(pattern):
        if models.model_source(name) not in models.OUTSIDE_SOURCES:
            continue
        takes_encoder = "encoder" in (models.model_arguments(name) or ())
        out += [(name, {"encoder": e}) for e in encoders] if takes_encoder else [(name, {})]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--pattern", default="*", help="wildcard on the baselines' names (default *)")
    parser.add_argument("--encoders", default="resnet34,mobilenet_v2",
                        help="smp encoders, comma-separated (default resnet34,mobilenet_v2)")
    parser.add_argument("--iters", type=int, default=20, help="most timed iterations per row (default 20)")
    parser.add_argument("--time", type=float, default=5.0, help="most seconds timed per row (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    targets = _targets(args.pattern, parse_list(args.encoders))
    if not targets:
        parser.error(f"no outside baseline matches --pattern {args.pattern!r}")
    io = {"in_channels": INPUT[0], "num_classes": CLASSES}
    target = count_params(models.create_model("lfunet", base_width=8, **io))
    timing = Timing(min_warmup=1, max_warmup=5, min_iters=max(1, min(5, args.iters)), max_iters=args.iters,
                    max_time_s=args.time)
    rows = []
    for name, extra in targets:
        label = " ".join([name, *extra.values()])
        kwargs = {**io, **extra}
        try:
            torch.manual_seed(0)
            default_model = models.create_model(name, **kwargs)
        except models.ModelConfigError as err:
            rows.append({"model": label, "size": "skipped", "base_width": "", "params": "", "GMACs": "",
                         "CPU ms": str(err)})
            continue
        default = default_model.base_width
        width = iso_width(name, kwargs, target, default)
        for size, model in (("default", default_model), ("iso LFU-Net w8", None)):
            if model is None:
                torch.manual_seed(0)
                model = models.create_model(name, **kwargs, base_width=width)
            model.eval()
            lat = profile(model, INPUT, batch_sizes=(1,), precisions=("fp32",), modes=("inference",),
                          device="cpu", threads=args.threads, timing=timing, hardware=False, energy=False)[0]
            rows.append({"model": label, "size": size, "base_width": model.base_width,
                         "params": count_params(model), "GMACs": round(fvcore_macs(model, INPUT) / 1e9, 3),
                         "CPU ms": round(lat["median_ms"], 1) if lat.get("median_ms") else lat["status"]})
    print(conventions.MACS)
    print(conventions.latency("cpu", 1, "fp32", "x".join(map(str, INPUT)), args.threads, False))
    print(f"iso LFU-Net w8: the base_width whose parameter count is closest to LFU-Net w8's ({target:,} at "
          f"{INPUT[0]} input channels, {CLASSES} classes).\n")
    print(format_rows(rows, "md"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
