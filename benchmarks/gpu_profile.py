"""GPU latency and memory of LFU-Net (w8), U-Net (w32) and UNet++ (w32) at 3x256x256, batch 1
and 16, fp32 and fp16, inference and one training step; prints one Markdown table, the MAC and
latency ratios against U-Net, and the environment record.

Run on a CUDA machine: ``python -m bench.benchmarks.gpu_profile`` (about 2-3 minutes on one H100).
Every configuration is measured independently: a failure (out of memory, compile error ...) is a
row with its status and the run goes on. Exits with status 2 and a message if CUDA is unavailable.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

import torch
from bench.cli._output import format_rows

import models
from bench.complexity import MAC_CONVENTION, fvcore_macs
from bench.environment import environment_record, format_environment
from bench.latency import CUDA_MEMORY, CUDA_TIMER, Timing, profile

MODELS = {"lfunet": {"base_width": 8}, "unet": {"base_width": 32}, "unetpp": {"base_width": 32}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batch", default="1,16")
    parser.add_argument("--precision", default="fp32,fp16")
    parser.add_argument("--mode", default="inference,train")
    parser.add_argument("--input", default="3x256x256")
    parser.add_argument("--time", type=float, default=2.0, help="measured seconds per configuration")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)  # "cpu": dry run of this script
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            f"gpu_profile: CUDA is not available (torch {torch.__version__}, built with CUDA "
            f"{torch.version.cuda or 'none'}); run this on a machine with an NVIDIA GPU",
            file=sys.stderr,
        )
        return 2
    shape = tuple(int(v) for v in args.input.split("x"))
    batches = [int(b) for b in args.batch.split(",")]
    timing = Timing(
        min_warmup=5, max_warmup=100, max_warmup_s=5.0, min_iters=10, max_iters=500, max_time_s=args.time
    )
    start = time.perf_counter()
    rows, gmacs = [], {}
    for name in args.models.split(","):
        kwargs = MODELS.get(name, {})
        try:
            torch.manual_seed(0)
            model = models.create_model(name, **kwargs)
            gmacs[name] = fvcore_macs(model, shape) / 1e9
            rows += profile(
                model,
                shape,
                name=name,
                model_kwargs=kwargs,
                batch_sizes=batches,
                precisions=args.precision.split(","),
                modes=args.mode.split(","),
                device=args.device,
                channels_last=args.channels_last,
                timing=timing,
                extra={"gmacs": gmacs[name]},
            )
        except Exception as err:  # a whole model failing must not stop the others
            traceback.print_exc()
            rows.append({"model": name, "status": "error", "error": f"{type(err).__name__}: {err}"})
        print(f"[{time.perf_counter() - start:6.1f} s] {name} done", file=sys.stderr, flush=True)
    table = []
    for r in rows:
        ok = r.get("status") == "ok"

        def num(key, digits=2, r=r, ok=ok):
            return round(r[key], digits) if ok and r.get(key) is not None else "n/a"

        table.append(
            {
                "device": r.get("env_device_name", "n/a"),
                "model": r["model"],
                "mode": r.get("mode", "n/a"),
                "precision": r.get("precision", "n/a"),
                "batch": r.get("batch", "n/a"),
                "status": r["status"],
                "median_ms": num("median_ms", 3),
                "p90_ms": num("p90_ms", 3),
                "iqr_ms": num("iqr_ms", 3),
                "images_per_s": num("images_per_s", 1),
                "peak_alloc_MB": num("peak_allocated_mb" if args.device == "cuda" else "peak_rss_mb", 1),
                "peak_reserved_MB": num("peak_reserved_mb", 1),
                "GMACs/img": round(gmacs.get(r["model"], 0), 4),
                "iters": r.get("iters") or "n/a",
            }
        )
    print(
        f"Input {args.input}; latency: {CUDA_TIMER}; memory: {CUDA_MEMORY}; "
        f"precision via torch.autocast, cudnn.benchmark on, channels_last={args.channels_last}; "
        f"{MAC_CONVENTION}\n"
    )
    print(format_rows(table, "md"))
    failed = [r for r in rows if r.get("status") != "ok"]
    if failed:
        print("\nFailed configurations:")
        for r in failed:
            print(
                f"- {r['model']} {r.get('mode', '')} {r.get('precision', '')} batch {r.get('batch', '')}: "
                f"{r['status']}: {r.get('error', '')}"
            )
    if "unet" in gmacs:
        print("\nAgainst unet (same mode, precision, batch): MACs ratio vs latency ratio")
        mem = "peak_allocated_mb" if args.device == "cuda" else "peak_rss_mb"
        ref = {
            (r["mode"], r["precision"], r["batch"]): r
            for r in rows
            if r["model"] == "unet" and r.get("status") == "ok"
        }
        for r in rows:
            key = (r.get("mode"), r.get("precision"), r.get("batch"))
            if r["model"] == "unet" or r.get("status") != "ok" or key not in ref:
                continue
            print(
                f"- {r['model']} {key[0]} {key[1]} batch {key[2]}: "
                f"MACs x{gmacs[r['model']] / gmacs['unet']:.3f}, "
                f"latency x{r['median_ms'] / ref[key]['median_ms']:.3f}, "
                f"peak memory x{r[mem] / ref[key][mem]:.3f}"
            )
    print("\nEnvironment:\n" + format_environment(environment_record(args.device)))
    print(f"\nTotal {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
