"""Time the MAC counting of the whole zoo at 3x256x256: the four counters, the reconciliation and
the parameter counts of every model (target: under 60 s on 2 CPU cores).

Run: ``python benchmarks/zoo_macs.py [--input 3x256x256] [--pattern '*']``. It calls
:func:`bench.complexity.mac_report` for each model, as ``lfubench profile --all --macs`` does, and
prints one summary row per model with the time it took.
"""

from __future__ import annotations

import argparse
import time

import torch

from lfubench import models
from lfubench.bench.complexity import COUNTERS, mac_report
from lfubench.bench.errors import LfubenchError
from lfubench.cli.args import parse_shape
from lfubench.cli.macs import MAC_HEADER
from lfubench.cli.profile import fit_input
from lfubench.reports.text import format_rows

TARGET_S = 60.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--input", default="3x256x256", help="CxHxW; each model gets its own channels")
    parser.add_argument("--pattern", default="*", help="wildcard on model names (default *)")
    args = parser.parse_args(argv)
    names = models.list_models(args.pattern)
    try:
        shape = parse_shape(args.input)
        if not names:
            raise LfubenchError(f"no model matches --pattern {args.pattern!r}")
        zoo = [(name, models.create_model(name)) for name in names]
        inputs = [fit_input(model, shape, own_channels=True) for _, model in zoo]
    except LfubenchError as err:
        parser.error(str(err))
    rows = []
    start = time.perf_counter()
    for (name, model), ishape in zip(zoo, inputs, strict=True):
        t0 = time.perf_counter()
        report = mac_report(model, ishape, name=name)
        row = {"model": name, "seconds": round(time.perf_counter() - t0, 2)}
        for counter in COUNTERS:
            total = report.totals[counter]
            row[f"{counter} GMACs"] = "failed" if total is None else round(total / 1e9, 4)
        row["conv GMACs (all agree)"] = round(report.by_category["conv"]["fvcore"] / 1e9, 4)
        row["unexplained"] = sum(abs(v or 0) for v in report.unexplained.values())
        row["params_used"] = report.params.used
        rows.append(row)
    total = time.perf_counter() - start
    _, h, w = shape
    print(f"{MAC_HEADER}\nInput {h}x{w}, batch 1, eval mode, {torch.get_num_threads()} threads.\n")
    print(format_rows(rows, "md"))
    line = f"\n{len(rows)} models, 4 counters + reconciliation + parameters: {total:.1f} s"
    if args.pattern == "*":
        line += f" ({'within' if total < TARGET_S else 'OVER'} the {TARGET_S:.0f} s target for the whole zoo)"
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
