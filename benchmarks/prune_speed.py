"""Channel pruning by ratio: seconds to prune, and what it buys (parameters, GMACs, CPU latency)
at 3x256x256, for LFU-Net w8 and w16, U-Net w32, UNet++ w32 and UNet 3+ w16 (target: pruning
any zoo model takes at most 10 s on 2 CPU cores).

Run: ``python benchmarks/prune_speed.py [--ratios 0,0.25,0.5,0.75] [--importance l1]
[--scope local] [--iters 20]``. Each row prunes a freshly initialised model with
:func:`models.prune_channels` (timed alone), counts the pruned model's parameters and MACs
(fvcore) and times its inference (batch 1, fp32, channels-last) with :func:`bench.latency.profile`,
side by side in one run. Run it alone: other processes on the cores spoil the latencies.
"""

from __future__ import annotations

import argparse
import time

import torch

from lfubench import models
from lfubench.bench import conventions
from lfubench.bench.complexity import count_params, fvcore_macs
from lfubench.bench.latency import Timing, profile
from lfubench.cli.args import parse_list
from lfubench.reports.text import format_rows

TARGET_S = 10.0
INPUT = (3, 256, 256)

#: (label, model, constructor arguments)
MODELS = [
    ("lfunet w8", "lfunet", {"base_width": 8}),
    ("lfunet w16", "lfunet", {"base_width": 16}),
    ("unet w32", "unet", {"base_width": 32}),
    ("unetpp w32", "unetpp", {"base_width": 32}),
    ("unet3p w16", "unet3p", {"base_width": 16}),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--ratios", default="0,0.25,0.5,0.75", help="comma-separated prune ratios")
    parser.add_argument("--importance", default="l1", choices=models.pruning.IMPORTANCE)
    parser.add_argument("--scope", default="local", choices=models.pruning.SCOPES)
    parser.add_argument("--iters", type=int, default=20, help="most timed iterations per row (default 20)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    ratios = [float(r) for r in parse_list(args.ratios)]
    if args.threads:
        torch.set_num_threads(args.threads)
    timing = Timing(max_warmup=10, min_iters=5, max_iters=args.iters, max_time_s=5.0)
    rows, slowest = [], 0.0
    for label, name, kwargs in MODELS:
        torch.manual_seed(0)
        model = models.create_model(name, in_channels=INPUT[0], num_classes=3, **kwargs).eval()
        for ratio in ratios:
            t0 = time.perf_counter()
            pruned = models.prune_channels(model, ratio, importance=args.importance, scope=args.scope)
            seconds = time.perf_counter() - t0
            slowest = max(slowest, seconds)
            lat = profile(pruned, INPUT, batch_sizes=(1,), precisions=("fp32",), modes=("inference",),
                          device="cpu", channels_last=True, timing=timing)[0]
            rows.append({"model": label, "ratio": ratio, "importance": args.importance, "scope": args.scope,
                         "params": count_params(pruned), "GMACs": round(fvcore_macs(pruned, INPUT) / 1e9, 3),
                         "channels removed": round(pruned.prune_report.channel_ratio, 3),
                         "CPU ms": round(lat["median_ms"], 1) if lat.get("median_ms") else lat["status"],
                         "prune s": round(seconds, 2)})
    print(conventions.MACS)
    print(conventions.latency("cpu", 1, "fp32", "x".join(map(str, INPUT)), torch.get_num_threads(), True))
    print("prune s: models.prune_channels alone (scores, selection, building the smaller model, copying "
          "weights).\n")
    print(format_rows(rows, "md"))
    verdict = "within" if slowest <= TARGET_S else "OVER"
    print(f"\nslowest pruning: {slowest:.2f} s ({verdict} the {TARGET_S:.0f} s target)")
    return 0 if slowest <= TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
