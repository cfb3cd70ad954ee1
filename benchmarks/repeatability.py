"""Repeatability of CPU latency: the same model measured twice back to back; prints both runs'
medians and dispersion and whether the medians agree within 5%.

Run: ``python benchmarks/repeatability.py [--model lfunet] [--input 3x256x256] [--threads 1] [--time 20]``
(about a minute with the defaults). It calls :func:`bench.latency.profile`, as ``lfubench profile``
does.
One intra-op thread by default: on a shared 2-core machine, two OpenMP threads competing with other
processes make the timings swing by orders of magnitude; pass ``--threads 2`` on an idle machine.
Exit status 1 when the medians differ by more than the tolerance.
"""

from __future__ import annotations

import argparse

from lfubench import models
from lfubench.bench.environment import format_environment
from lfubench.bench.errors import LfubenchError
from lfubench.bench.latency import Timing, profile
from lfubench.cli.args import parse_shape
from lfubench.cli.profile import fit_input
from lfubench.reports.text import format_rows

TOLERANCE = 0.05


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--model", default="lfunet", help="zoo model at its defaults (default lfunet)")
    parser.add_argument("--input", default="3x256x256", help="CxHxW (default 3x256x256)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op CPU threads (default 1)")
    parser.add_argument("--time", type=float, default=20.0, help="measured seconds per run (default 20)")
    args = parser.parse_args(argv)
    model = models.create_model(args.model)
    try:
        shape = fit_input(model, parse_shape(args.input), own_channels=False)
    except LfubenchError as err:
        parser.error(str(err))
    timing = Timing(min_warmup=5, max_warmup_s=15.0, min_iters=20, max_iters=10_000, max_time_s=args.time)
    runs = []
    for i in (1, 2):
        row = profile(
            model,
            shape,
            name=args.model,
            batch_sizes=[args.batch],
            modes=["inference"],
            threads=args.threads,
            timing=timing,
        )[0]
        if row["status"] != "ok":
            print(f"run {i} failed: {row['error']}")
            return 1
        runs.append(
            {
                "run": i,
                "iters": row["iters"],
                "warmup_iters": row["warmup_iters"],
                "warmup_stable": row["warmup_stable"],
                "median_ms": round(row["median_ms"], 3),
                "p90_ms": round(row["p90_ms"], 3),
                "p99_ms": round(row["p99_ms"], 3),
                "iqr_ms": round(row["iqr_ms"], 3),
                "iqr/median": round(row["iqr_ms"] / row["median_ms"], 4),
                "images_per_s": round(row["images_per_s"], 2),
            }
        )
    a, b = runs[0]["median_ms"], runs[1]["median_ms"]
    diff = abs(a - b) / min(a, b)
    print(
        f"{args.model} at {args.input}, batch {args.batch}, CPU, {args.threads} thread(s), inference, "
        f"time.perf_counter per iteration, {args.time:g} s of measurement per run\n"
    )
    print(format_rows(runs, "md"))
    verdict = "PASS" if diff <= TOLERANCE else "FAIL"
    print(
        f"\nmedians {a:.3f} ms and {b:.3f} ms: relative difference {diff:.2%} "
        f"(target <= {TOLERANCE:.0%}): {verdict}"
    )
    env = {k.removeprefix("env_"): v for k, v in row.items() if k.startswith("env_")}  # as measured
    print("\nEnvironment:\n" + format_environment(env))
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
