"""Parsing command-line values: shapes, KEY=VALUE pairs and comma-separated lists; and the
options every command that runs a plan or a study shares (:func:`add_run_options`).

Every parser raises :class:`bench.errors.LfubenchError` naming the option and the text, so a
user's typo is one line on the terminal.
"""

from __future__ import annotations

import argparse

from lfubench.bench.errors import LfubenchError


def add_run_options(parser: argparse.ArgumentParser, noun: str, unit: str, set_examples: str,
                    workers_note: str) -> None:
    """The options of a command that runs a ``noun`` (``plan``, ``study``) of ``unit`` s (``item``,
    ``trial``) with workers on one storage: ``--out``, ``--set``, ``--storage``, ``--grace``,
    ``--workers``, ``--devices``, ``--no-progress`` and the hidden ``--worker-tag``.

    ``set_examples`` lists a few ``--set`` overrides of the command's own file; ``workers_note``
    says how its CPU workers share the machine's cores.
    """
    parser.add_argument("--out", help=f"run folder (default runs/<{noun} name>)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a {noun} setting, validated like the file: {set_examples} "
                        f"(repeatable; the run folder keeps the effective {noun})")
    parser.add_argument("--storage", help="Optuna storage: sqlite:///FILE (default: OUT/study.db), "
                        "journal:FILE for several local processes, or an RDB URL such as "
                        "postgresql://USER:PASSWORD@HOST/DB for several machines")
    parser.add_argument("--grace", type=float, default=60.0,
                        help=f"seconds without a heartbeat after which a running {unit} counts as lost "
                        "and is retried (default 60; workers stamp every min(10, grace/6) s)")
    parser.add_argument("--workers", type=int, default=1,
                        help=f"local worker processes sharing the storage (default 1); {workers_note}")
    parser.add_argument("--devices", help="comma-separated GPUs, one worker each: cuda:0,cuda:1 (each worker "
                        f"sees only its own GPU; the {noun}'s measure.device stays 'cuda')")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--worker-tag", help=argparse.SUPPRESS)  # set on the workers --workers starts


def parse_shape(text: str, option: str = "--input", example: str = "3x256x256",
                minimum: int = 1) -> tuple[int, ...]:
    """Parse ``"3x256x256"`` into ``(3, 256, 256)``; raise ``LfubenchError`` naming the option and text."""
    try:
        dims = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < minimum:
        rule = f" with sizes >= {minimum}" if minimum > 1 else ""
        raise LfubenchError(f"{option} must look like {'x'.join('CHW' if option == '--input' else 'XYZ')}"
                         f"{rule} (e.g. {example}), got {text!r}")
    return dims


def parse_value(text: str):
    """``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"true"`` -> True, ``"none"`` -> None, else the string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_kwargs(items: list[str], what: str = "model argument") -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LfubenchError(f"{what} {item!r} must look like KEY=VALUE")
        out[key] = parse_value(value)
    return out


def parse_list(text: str, allowed=None, what: str = "value") -> list:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise LfubenchError(f"empty {what} list {text!r}")
    if allowed is not None:
        for t in items:
            if t not in allowed:
                raise LfubenchError(f"unknown {what} {t!r}; choose from {', '.join(allowed)}")
    return items
