"""Slice-cache loading throughput: 256 x 256 x 3 LiTS slices per second on one thread.

Builds LiTS phantoms and their cache (size 256, 2.5D context 3) in a temporary folder, then reads
the memory-mapped cache in random order as a training loader would: whole shuffled batches via
``SliceCache.read_batch`` and one slice at a time via ``cache[i]`` (a map-style Dataset). The
files were just written, so they are in the page cache: this measures the loader, not the disk.

Run: ``python benchmarks/cache_speed.py [--cases 8] [--batch 32] [--seconds 3]`` (about 30 s with
the defaults). It calls the functions ``lfubench data phantom`` and ``lfubench data prepare`` call
(:func:`bench.data.write_phantom`, :func:`bench.data.prepare_cache`, :func:`bench.data.open_cache`).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from lfubench.bench.data import PreprocessConfig, open_cache, prepare_cache, write_phantom


def _rate(read, order: np.ndarray, batch: int, seconds: float) -> tuple[float, int]:
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for k in range(0, len(order), batch):
            done += read(order[k:k + batch])
        order = np.random.default_rng(done).permutation(order)
    return done / (time.perf_counter() - start), done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--cases", type=int, default=8, help="phantom cases of 256x256x32 (default 8)")
    p.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    p.add_argument("--seconds", type=float, default=3.0, help="time per measurement (default 3)")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="lfubench-cache-speed-") as tmp:
        src, out = Path(tmp) / "lits", Path(tmp) / "cache"
        start = time.perf_counter()
        write_phantom("lits", src, cases=args.cases, shape=(256, 256, 32), seed=0)
        phantom_s = time.perf_counter() - start
        start = time.perf_counter()
        cache = open_cache(prepare_cache("lits", src, out, PreprocessConfig("lits", size=256)))
        prepare_s = time.perf_counter() - start
        n = len(cache)
        x, _ = cache.read_batch([0])
        order = np.random.default_rng(0).permutation(n)
        batched, _ = _rate(lambda idx: len(cache.read_batch(idx)[0]), order, args.batch, args.seconds)

        def one_by_one(idx):
            for i in idx:
                cache[int(i)]
            return len(idx)

        single, _ = _rate(one_by_one, order, args.batch, args.seconds)
        mb = cache.images.nbytes / 2 ** 20
        print(f"cache: {n} slices of {x.shape[1]}x{x.shape[2]}x{x.shape[3]} float16 ({mb:.0f} MiB on disk), "
              f"phantoms {phantom_s:.1f} s, prepare {prepare_s:.1f} s")
        print(f"random-order batches of {args.batch}, one thread: {batched:,.0f} slices/s "
              f"(float32 {x.shape[1]}x{x.shape[2]}x{x.shape[3]} out)")
        print(f"random-order single slices (cache[i]), one thread: {single:,.0f} slices/s")
        print("target: >= 1,000 slices/s " + ("met" if batched >= 1000 else "NOT met"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
