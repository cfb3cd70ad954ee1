"""``lfubench plans``: the plans and sweep studies that ship with lfubench, by name.

Each name works wherever a file is accepted: ``lfubench bench lits2017``, ``lfubench sweep
smoke``, ``lfubench sweep show lits``.
"""

from __future__ import annotations

import argparse

from lfubench.reports.text import FORMATS, format_rows
from lfubench.studies.shipped import describe, shipped


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plans", help="list the shipped plans (lfubench bench NAME) and sweep studies "
                       "(lfubench sweep NAME)")
    p.add_argument("--format", choices=FORMATS, default="md", help="output format (default md)")
    p.set_defaults(func=run)


def plan_rows() -> list[dict]:
    """One row per shipped plan and study: its kind, name, the command that runs it, its file."""
    rows = []
    for kind, command in (("plan", "lfubench bench"), ("study", "lfubench sweep")):
        for name, path in shipped(kind).items():
            rows.append({"kind": kind, "name": name, "run with": f"{command} {name}",
                         "description": describe(path), "file": str(path)})
    return rows


def run(args: argparse.Namespace) -> int:
    print(format_rows(plan_rows(), args.format, "shipped plans and sweep studies; a path to your own "
                      "TOML file works wherever a name does"))
    return 0
