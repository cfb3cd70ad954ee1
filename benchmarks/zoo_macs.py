"""Time the MAC counting of the whole zoo at 3x256x256: the four counters, the reconciliation and
the parameter counts of every model (target: under 60 s on 2 CPU cores).

Run: ``python -m bench.benchmarks.zoo_macs [--input 3x256x256]``.
"""

from __future__ import annotations

import argparse
import time

import torch
from bench.cli._output import format_rows, parse_shape

import models
from bench.complexity import COUNTERS, MAC_NOTE, mac_report

TARGET_S = 60.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default="3x256x256", help="CxHxW; each model gets its own channels")
    args = parser.parse_args(argv)
    _, h, w = parse_shape(args.input)
    rows = []
    start = time.perf_counter()
    for name in models.list_models():
        model = models.create_model(name)
        t0 = time.perf_counter()
        report = mac_report(model, (model.in_channels, h, w), name=name)
        row = {"model": name, "seconds": round(time.perf_counter() - t0, 2)}
        for counter in COUNTERS:
            total = report.totals[counter]
            row[f"{counter} GMACs"] = "failed" if total is None else round(total / 1e9, 4)
        row["conv GMACs (all agree)"] = round(report.by_category["conv"]["fvcore"] / 1e9, 4)
        row["unexplained"] = sum(abs(v or 0) for v in report.unexplained.values())
        row["params_used"] = report.params.used
        rows.append(row)
    total = time.perf_counter() - start
    print(f"{MAC_NOTE}\nInput {h}x{w}, batch 1, eval mode, {torch.get_num_threads()} threads.\n")
    print(format_rows(rows, "md"))
    verdict = "within" if total < TARGET_S else "OVER"
    print(
        f"\nWhole zoo ({len(rows)} models, 4 counters + reconciliation + parameters): {total:.1f} s "
        f"({verdict} the {TARGET_S:.0f} s target)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
