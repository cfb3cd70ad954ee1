"""Print a list of row dicts as a Markdown table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence

FORMATS = ("md", "csv", "json")


def _cell(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def format_rows(rows: Sequence[dict], fmt: str, header: str | None = None) -> str:
    """Render ``rows`` (dicts sharing their keys) as ``md``, ``csv`` or ``json``.

    ``header`` (conventions, units) is printed above a Markdown table and carried as a
    ``"conventions"`` field in JSON; CSV stays a plain table.
    """
    columns = list(rows[0]) if rows else []
    if fmt == "json":
        return json.dumps({"conventions": header, "rows": list(rows)} if header else list(rows), indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue().rstrip("\n")
    if fmt != "md":
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    cells = [[_cell(r[c]) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[k]) for row in cells]) for k, c in enumerate(columns)]
    numeric = [all(isinstance(r[c], int | float) for r in rows) for c in columns]

    def line(values):
        return "| " + " | ".join(
            v.rjust(wd) if num else v.ljust(wd) for v, wd, num in zip(values, widths, numeric, strict=True)
        ) + " |"

    rules = [("-" * (wd - 1) + ":") if num else "-" * wd for wd, num in zip(widths, numeric, strict=True)]
    sep = "| " + " | ".join(rules) + " |"
    out = [line(columns), sep] + [line(r) for r in cells]
    if header:
        out = [header, ""] + out
    return "\n".join(out)
