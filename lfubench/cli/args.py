"""Parsing command-line values: shapes, KEY=VALUE pairs and comma-separated lists.

Every parser raises :class:`bench.errors.LfubenchError` naming the option and the text, so a
user's typo is one line on the terminal.
"""

from __future__ import annotations

from lfubench.bench.errors import LfubenchError


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
