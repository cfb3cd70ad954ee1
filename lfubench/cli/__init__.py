"""The ``lfubench`` command line: one module per subcommand in the ``lfubench`` package.

Each subcommand module defines ``register(subparsers)``, which adds its parser and sets
``func`` to a callable taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from lfubench.bench.errors import LfubenchError
from lfubench.models import ModelConfigError

SUBCOMMANDS = ["zoo", "data", "profile", "bench", "sweep", "report", "plans"]

#: optional runtimes whose installed versions --version names (none of them is imported)
RUNTIMES = ("onnxruntime", "openvino", "tensorrt", "torch_tensorrt")


def version_text() -> str:
    """``lfubench X.Y.Z (torch A.B.C; onnxruntime ...)``: installed versions, read from package
    metadata without importing anything heavy; runtimes that are not installed are left out."""
    from importlib.metadata import PackageNotFoundError, version

    def found(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    parts = [f"{name} {v}" for name in ("torch", *RUNTIMES) if (v := found(name))]
    return f"lfubench {found('lfubench') or 'unknown (not installed)'} ({'; '.join(parts) or 'no torch'})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lfubench",
        description="Benchmark and ablate lightweight medical-image segmentation U-Nets.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--version", action="version", version=version_text(),
                        help="print the versions of lfubench, torch and the runtimes found, and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"lfubench.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (non-zero on any error).

    Error policy: a user's mistake (:class:`bench.errors.LfubenchError` and its kinds -- a bad
    plan, a bad data file, a bad option -- or :class:`models.ModelConfigError`) is printed as one
    line naming the file, key or argument, exit code 2. Anything else is a bug in lfubench and
    keeps its traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except (LfubenchError, ModelConfigError) as err:  # the user's mistake: one clear line, exit 2
        if args.verbose:
            raise
        lines = str(err).strip().splitlines() or [type(err).__name__]
        print(f"lfubench {args.command}: error: {lines[0]}", file=sys.stderr)
        for line in lines[1:]:  # a validation error lists every problem, one per line
            print(f"  {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lfubench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
