"""The one text-table formatter: rows of dicts as Markdown, CSV or JSON, and the one number
format every table uses (4 significant digits; thousands grouped from 1,000 on; integers
grouped; NaN/None as "–" in Markdown and LaTeX cells).

Used by the command line (``zoo``, ``profile``, ``data verify``, ``bench``) and by the result
tables of :mod:`reports.tables`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence

FORMATS = ("md", "csv", "json")


MISSING = "–"


def format_number(value) -> str:
    """A number as every lfubench table shows it: ``0.8963``, ``1.000``, ``210.4``, ``12,345``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    if value == 0:
        return "0"
    return f"{value:#.4g}".rstrip(".")


def md_cell(text: str) -> str:
    """``text`` as a Markdown table cell: a ``|`` escaped (it would end the cell), line breaks
    as spaces."""
    return str(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def format_rows(rows: Sequence[dict], fmt: str, header: str | None = None,
                right: Sequence[str] = ()) -> str:
    """Render ``rows`` (dicts sharing their keys) as ``md``, ``csv`` or ``json``.

    ``header`` (conventions, units) is printed above a Markdown table and carried as a
    ``"conventions"`` field in JSON; CSV stays a plain table. In Markdown, numbers are shown
    by :func:`format_number` and numeric columns (and those named in ``right``) right-aligned.
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
    cells = [[md_cell(format_number(r[c])) for c in columns] for r in rows]
    heads = [md_cell(c) for c in columns]
    widths = [max([len(c)] + [len(row[k]) for row in cells]) for k, c in enumerate(heads)]
    numeric = [c in right or all(_is_number(r[c]) or r[c] is None for r in rows) for c in columns]

    def line(values):
        return "| " + " | ".join(
            v.rjust(wd) if num else v.ljust(wd) for v, wd, num in zip(values, widths, numeric, strict=True)
        ) + " |"

    rules = [("-" * (wd - 1) + ":") if num else "-" * wd for wd, num in zip(widths, numeric, strict=True)]
    sep = "| " + " | ".join(rules) + " |"
    out = [line(heads), sep] + [line(r) for r in cells]
    if header:
        out = [header, ""] + out
    return "\n".join(out)
