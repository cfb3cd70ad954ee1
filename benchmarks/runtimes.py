"""Efficiency as deployed: each model in PyTorch eager, ONNX Runtime and OpenVINO, fp32 and int8, with
its agreement with PyTorch, its share of the CPU's peak and its own peak memory (target: exporting
and quantizing one model takes at most 20 s on 2 CPU cores).

Run: ``python benchmarks/runtimes.py [--input 3x256x256] [--threads 1] [--iters 50] [--compile]``.
Models: LFU-Net w8, the authors' LFU-Net (``lfunet_deng2023``), U-Net w32, UNet++ w32 (level 4),
UNet 3+ w16 and LFU-Net w16 channel-pruned at 0.5 (l1, local). Each is measured with
:func:`bench.latency.profile` (batch 1, inference, one fixed thread count for every runtime; int8:
static post-training quantization calibrated on 8 seeded random inputs) and the table gives, per
model and runtime: fp32 median ms, ``max_abs_diff`` from PyTorch fp32, int8 median ms, the int8
speed-up (fp32 ms / int8 ms: below 1 is a slow-down), the arg-max agreement of int8 with PyTorch
fp32, % of the CPU's fp32 peak, ``model_peak_mb`` and the seconds to export and quantize. Takes
several minutes at the default input; run it alone (other processes on the cores spoil the
latencies). ``--input 3x32x32 --iters 2 --time 0`` is a quick check that it runs.
"""

from __future__ import annotations

import argparse
import logging
import os

import torch

from lfubench import models
from lfubench.bench import conventions
from lfubench.bench.environment import environment_record
from lfubench.bench.latency import Timing, profile
from lfubench.bench.runtimes import check_runtimes
from lfubench.cli.args import parse_shape
from lfubench.reports.text import format_rows

TARGET_S = 20.0

#: (label, model, constructor arguments, channel-prune ratio)
MODELS = [
    ("LFU-Net w8", "lfunet", {"base_width": 8}, 0.0),
    ("LFU-Net (authors)", "lfunet_deng2023", {}, 0.0),
    ("U-Net w32", "unet", {"base_width": 32}, 0.0),
    ("UNet++ w32 L4", "unetpp", {"base_width": 32, "prune_level": 4}, 0.0),
    ("UNet 3+ w16", "unet3p", {"base_width": 16}, 0.0),
    ("LFU-Net w16 pruned 0.5", "lfunet", {"base_width": 16}, 0.5),
]


def build(name: str, kwargs: dict, ratio: float, channels: int) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "lfunet_deng2023":
        model = models.create_model(name)
    else:
        model = models.create_model(name, in_channels=channels, **kwargs)
    if ratio:
        model = models.prune_channels(model, ratio)
    return model.eval()


def _num(value, digits=3):
    return "n/a" if value is None else round(value, digits)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--input", default="3x256x256", help="CxHxW (default 3x256x256)")
    parser.add_argument("--threads", type=int, default=1, help="threads of every runtime (default 1)")
    parser.add_argument("--iters", type=int, default=50, help="most timed iterations per row (default 50)")
    parser.add_argument("--time", type=float, default=5.0, help="measuring stops after this many seconds")
    parser.add_argument("--compile", action="store_true", help="also torch.compile (minutes of compiling)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    shape = parse_shape(args.input)
    runtimes = ["torch", *(["compile"] if args.compile else []), "onnxruntime", "openvino"]
    check_runtimes(runtimes, ["none", "int8"])
    timing = Timing(max_warmup=20, min_iters=min(5, args.iters), max_iters=args.iters, max_time_s=args.time)
    table, slowest, limit = [], 0.0, None
    for label, name, kwargs, ratio in MODELS:
        model = build(name, kwargs, ratio, shape[0])
        ishape = (model.in_channels, *shape[1:])
        rows = profile(model, ishape, name=label, runtimes=runtimes, quantize=["none", "int8"],
                       modes=["inference"], threads=args.threads, timing=timing, energy=False)
        got = {(r["runtime"], r["quantize"]): r for r in rows}
        for runtime in runtimes:
            fp32, int8 = got[(runtime, "none")], got[(runtime, "int8")]
            ok8 = int8["status"] == "ok"
            speedup = fp32["median_ms"] / int8["median_ms"] if ok8 and fp32["median_ms"] else None
            if ok8:
                slowest = max(slowest, int8["prepare_s"])
            table.append({
                "model": label,
                "runtime": f"{runtime} {fp32['runtime_version']}",
                "fp32 ms": _num(fp32["median_ms"], 2) if fp32["status"] == "ok" else fp32["status"],
                "max_abs_diff": _num(fp32["max_abs_diff"], 9),
                "int8 ms": _num(int8["median_ms"], 2) if ok8 else "n/a",
                "int8 speed-up": _num(speedup, 2),
                "int8 argmax agree": _num(int8["argmax_agreement"], 4) if ok8 else "n/a",
                "% of peak": _num(fp32["pct_of_peak"], 2),
                "int8 % of fp32 peak": _num(int8["pct_of_peak"], 2) if ok8 else "n/a",
                "model_peak_mb": _num(fp32["model_peak_mb"], 1),
                "export+quantize s": _num(int8["prepare_s"], 1) if ok8 else "n/a",
            })
            limit = limit or fp32
        for r in rows:
            if r["status"] not in ("ok", "unsupported"):
                print(f"{label} {r['runtime']} {r['quantize']}: {r['status']}: {r['error']}")
    env = environment_record("cpu")
    print(f"Input 1x{'x'.join(map(str, shape))}, batch 1, fp32 inference on {env['cpu']}, {args.threads} "
          f"thread(s); torch {env['torch']}. Untrained weights and a random input: agreement, not accuracy.")
    print(f"Hardware limit: {_num(limit['peak_gmacs_per_s'], 1)} GMAC/s fp32 peak, "
          f"{_num(limit['bandwidth_gb_s'], 1)} GB/s ({limit['hardware_method']}).")
    for sentence in (conventions.RUNTIMES, conventions.INT8, conventions.MODEL_MEMORY, conventions.PEAK,
                     conventions.MACS):
        print(f"- {sentence}")
    print("- export+quantize s: torch.onnx.export + onnx.checker + that runtime's int8 quantization "
          "(openvino row: NNCF; the others: ONNX Runtime QDQ)\n")
    print(format_rows(table, "md"))
    verdict = "within" if slowest <= TARGET_S else "OVER"
    print(f"\nslowest export + quantize: {slowest:.1f} s ({verdict} the {TARGET_S:.0f} s target; "
          f"{os.cpu_count()} cores, export at {args.threads} torch thread(s))")
    return 0 if slowest <= TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
