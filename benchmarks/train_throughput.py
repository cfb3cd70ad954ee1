"""Training throughput: images/s of training steps fed by the real loader and by a pre-loaded set.

Builds LiTS phantoms and their slice cache (3 adjacent slices at ``--input`` x ``--input``) in a
temporary folder, wraps it as the pipeline does (``studies.pipeline.CacheSlices``), and times
training steps of each model and batch size twice: fed through the loader
(``TrainConfig(preload="never")``: DataLoader workers, pinned memory and non-blocking copies on
CUDA) and from the whole set pre-loaded on the device (``preload="always"``), each eager and
compiled (``torch.compile``; CUDA graphs on CUDA). The ratio loader/pre-loaded says how much
the loader holds the device back; on a GPU the target is >= 90%.

Run: ``python benchmarks/train_throughput.py [--device cuda|cpu] [--models lfunet,unet]
[--batch 16,32] [--steps 50] [--input 256] [--no-compile]`` (on a GPU a few minutes, mostly
compilation). A CPU smoke run: ``python benchmarks/train_throughput.py --device cpu --input 64
--steps 3 --models lfunet --batch 4 --no-compile``. It calls the functions training calls
(:func:`bench.loader.make_feed`, :class:`bench.train.TrainStep`) on a cache made by
:func:`bench.data.write_phantom` and :func:`bench.data.prepare_cache`.

Each row is one model (one compiled step) fed both ways: ``--warmup`` steps from the
pre-loaded set (compilation happens there; ``warmup_s`` shows those seconds, which in training
count) and from the loader (its workers start), then ``--steps`` timed steps from each, the
device synchronised before and after and no read-back in between. ``--models`` takes zoo families with their
benchmark widths (``lfunet``: 8 and 16, ``unet``: 32) or ``name:width``. Exit status 1 when on
CUDA a loader row is below 90% of its pre-loaded twin, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from lfubench import models
from lfubench.bench.data import PreprocessConfig, open_cache, prepare_cache, write_phantom
from lfubench.bench.datasets import get_dataset
from lfubench.bench.environment import environment_record, format_environment, torch_threads
from lfubench.bench.latency import PRECISIONS
from lfubench.bench.loader import make_feed, resolve_workers
from lfubench.bench.losses import DiceCELoss
from lfubench.bench.train import TrainStep, resolve_precision
from lfubench.reports.text import format_rows
from lfubench.studies.pipeline import CacheSlices

#: families and the widths they are benchmarked at
WIDTHS = {"lfunet": (8, 16), "unet": (32,)}
TARGET = 0.90
SLICES_PER_CASE = 64


def parse_models(text: str) -> list[tuple[str, int]]:
    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, width = item.partition(":")
        if name not in models.list_models():
            raise ValueError(f"--models: {name!r} is not a zoo model (lfubench zoo lists them)")
        if width:
            if not width.isdigit():
                raise ValueError(f"--models: width {width!r} of {name} is not a number")
            out.append((name, int(width)))
        elif name in WIDTHS:
            out += [(name, w) for w in WIDTHS[name]]
        else:
            raise ValueError(f"--models: give {name}'s width as {name}:WIDTH")
    if not out:
        raise ValueError("--models: no model given")
    return out


def _forever(feed):
    epoch = 1
    while True:
        yield from feed.epoch(epoch)
        epoch += 1


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timed(step: TrainStep, batches, steps: int, device: str) -> float:
    """Seconds of ``steps`` training steps, the device synchronised before and after."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(*next(batches))
    _sync(device)
    seconds = time.perf_counter() - start
    if not torch.isfinite(loss):
        raise RuntimeError(f"loss became {loss.item()}")
    return seconds


def measure(name: str, width: int, data, args, *, compile: bool) -> dict:
    """images/s of one model and batch size fed by the loader and by the pre-loaded set.

    One model and one (compiled) step serve both feeds: the first warm-up (from the pre-loaded
    set) compiles, the loader's warm-up starts its workers; then each feed's timed steps.
    """
    torch.manual_seed(0)
    cuda = args.device == "cuda"
    classes = get_dataset("lits").num_classes
    model = models.create_model(name, in_channels=data.cache.in_channels, num_classes=classes,
                                base_width=width)
    model.to(args.device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True if cuda else None)
    step = TrainStep(model, DiceCELoss(classes), optimizer, precision=args.precision, device=args.device,
                     compile=compile)
    feeds = {preload: make_feed(data, batch_size=args.batch_size, seed=0, device=args.device,
                                workers=args.workers, preload=preload, channels_last=True)
             for preload in ("always", "never")}
    streams = {preload: _forever(feed) for preload, feed in feeds.items()}
    try:
        warmup_s = _timed(step, streams["always"], args.warmup, args.device)
        _timed(step, streams["never"], args.warmup, args.device)
        rates = {preload: args.steps * args.batch_size / _timed(step, stream, args.steps, args.device)
                 for preload, stream in streams.items()}
        return {"loader": rates["never"], "preloaded": rates["always"], "warmup_s": warmup_s}
    finally:
        for preload in feeds:
            streams[preload].close()
            feeds[preload].close()
        if cuda:
            torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="default cuda")
    p.add_argument("--models", default="lfunet,unet",
                   help="families (lfunet: widths 8, 16; unet: 32) or name:width, comma-separated "
                        "(default lfunet,unet)")
    p.add_argument("--batch", default="16,32", help="batch sizes, comma-separated (default 16,32)")
    p.add_argument("--steps", type=int, default=50, help="timed steps per row (default 50)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed steps first, compilation included (default min(10, steps), at least 2)")
    p.add_argument("--input", type=int, default=256, help="in-plane size, a multiple of 16 (default 256)")
    p.add_argument("--cases", type=int, default=4,
                   help=f"phantom cases of {SLICES_PER_CASE} slices (default 4)")
    p.add_argument("--workers", type=int, default=None, help="loader workers (default: training's, "
                                                              "0 on CPU, min(4, cores) on CUDA)")
    p.add_argument("--precision", choices=tuple(PRECISIONS), default=None,
                   help="default: training's (bf16 on CUDA where native, else fp16; fp32 on CPU)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    p.add_argument("--no-compile", action="store_true", help="eager rows only")
    args = p.parse_args(argv)
    try:
        specs = parse_models(args.models)
        batches = [int(b) for b in args.batch.split(",") if b.strip()]
        if not batches or min(batches) < 1:
            raise ValueError("--batch: give batch sizes >= 1")
        if args.input < 16 or args.input % 16:
            raise ValueError(f"--input {args.input} is not a positive multiple of 16")
        if args.warmup is None:
            args.warmup = max(2, min(10, args.steps))
        if args.steps < 1 or args.warmup < 1 or args.cases < 1 or (args.threads or 1) < 1:
            raise ValueError("--steps, --warmup, --cases and --threads must be >= 1")
        if args.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is visible to torch (use --device cpu)")
        if max(batches) > args.cases * SLICES_PER_CASE:
            raise ValueError(f"--batch {max(batches)} exceeds the {args.cases * SLICES_PER_CASE} cached "
                             "slices; raise --cases")
        args.precision = resolve_precision(args.precision, args.device)
    except ValueError as err:
        p.error(str(err))
    modes = [False] if args.no_compile else [False, True]
    workers = resolve_workers(args.workers, args.device)
    with torch_threads(args.threads), tempfile.TemporaryDirectory(prefix="lfubench-train-throughput-") as tmp:
        src = Path(tmp) / "lits"
        write_phantom("lits", src, cases=args.cases, shape=(args.input, args.input, SLICES_PER_CASE), seed=0)
        config = PreprocessConfig("lits", size=args.input)
        cache = open_cache(prepare_cache("lits", src, Path(tmp) / "cache", config))
        data = CacheSlices(cache, range(len(cache)))
        print(f"Training images/s on {args.device}: {len(data)} cached LiTS phantom slices of "
              f"{cache.in_channels}x{args.input}x{args.input}, {args.precision}, channels-last, AdamW, "
              f"Dice+CE over every deep-supervision head; loader: {workers} worker(s)"
              f"{', pinned memory, non-blocking copies' if args.device == 'cuda' else ''}; "
              f"{args.warmup} warm-up + {args.steps} timed steps per cell\n", flush=True)
        rows, short = [], []
        for name, width in specs:
            for batch in batches:
                args.batch_size = batch
                for compiled in modes:
                    r = measure(name, width, data, args, compile=compiled)
                    ratio = r["loader"] / r["preloaded"]
                    label = f"{name} w{width}"
                    rows.append({"model": label, "batch": batch, "compile": "yes" if compiled else "no",
                                 "loader_img_s": round(r["loader"], 1),
                                 "preloaded_img_s": round(r["preloaded"], 1),
                                 "loader/preloaded": round(ratio, 3), "warmup_s": round(r["warmup_s"], 1)})
                    print(f"  {label} batch {batch} compile={compiled}: loader {r['loader']:.1f}, "
                          f"pre-loaded {r['preloaded']:.1f} img/s", file=sys.stderr, flush=True)
                    if ratio < TARGET:
                        short.append(f"{label} batch {batch}{' compiled' if compiled else ''}")
        env = environment_record(args.device)  # inside: it records the thread count measured with
    print(format_rows(rows, "md"))
    if args.device == "cuda":
        verdict = "met" if not short else "NOT met by " + ", ".join(short)
        print(f"\ntarget: loader >= {TARGET:.0%} of the pre-loaded rate: {verdict}")
    else:
        print("\n(the >= 90% target is judged on CUDA only)")
    print("\nEnvironment:\n" + format_environment(env))
    return 1 if args.device == "cuda" and short else 0


if __name__ == "__main__":
    raise SystemExit(main())
