"""The paper-style report as a Typst document, compiled to PDF by the ``typst`` package (a
self-contained compiler with embedded fonts; no TeX installation).

Every string that comes from data (labels, paths, reasons, plan text) enters the source
escaped: in markup by :func:`escape` (a backslash before every ASCII punctuation character),
in code as a string literal by :func:`literal`.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from pathlib import Path

from .tables import Display

_PUNCT = set(string.punctuation)

#: the text width of the report's A4 page, in points
TEXT_WIDTH_PT = 595.3 - 2 * 51.0


def escape(text) -> str:
    """``text`` as Typst markup that shows exactly ``text`` (line breaks become spaces)."""
    return "".join("\\" + ch if ch in _PUNCT else " " if ch in "\r\n\t" else ch for ch in str(text))


def literal(text) -> str:
    """``text`` as a Typst string literal."""
    body = (
        str(text)
        .replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{body}"'


class Doc:
    """A Typst source under construction."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def raw(self, source: str) -> None:
        self.parts.append(source)

    def heading(self, text: str, level: int = 1, label: str | None = None) -> None:
        self.parts.append("=" * level + " " + escape(text) + (f" <{label}>" if label else "") + "\n")

    def para(self, text: str) -> None:
        self.parts.append(escape(text) + "\n")

    def bullets(self, lines: Sequence[str]) -> None:
        self.parts.append("".join(f"- {escape(line)}\n" for line in lines))

    def table(
        self,
        d: Display,
        caption: str = "",
        size: float = 7.0,
        heading: tuple[str, int] | None = None,
        columns: str | None = None,
    ) -> None:
        """A booktabs-style table: rules at top, below the header, between families and at the
        bottom; bold cells as given. Scaled down to the text width when a little too wide; on a
        landscape page (with ``heading``, if given, so that it stays with its table) when much
        too wide. ``columns``: a Typst column spec (default: one ``auto`` per column, and the
        table is fitted)."""
        n = len(d.columns)
        chars = sum(max([len(c)] + [len(r[j]) for r in d.rows]) for j, c in enumerate(d.columns))
        wide = columns is None and chars * size * 0.48 + n * 6 > 1.3 * TEXT_WIDTH_PT
        aligns = ", ".join("right" if num else "left" for num in d.numeric)
        cells = []
        for k, r in enumerate(d.rows):
            if k in d.group_starts:
                cells.append("table.hline(stroke: 0.3pt),")
            cells.append(
                " ".join(
                    (f"strong[{escape(v)}]," if (k, j) in d.bold else f"[{escape(v)}],")
                    for j, v in enumerate(r)
                )
            )
        body = (
            f"text(size: {size}pt, table(columns: {columns or n}, align: ({aligns},), stroke: none, "
            "inset: (x: 2.5pt, y: 2pt),\n"
            "    table.hline(stroke: 0.8pt),\n"
            "    table.header(" + " ".join(f"[*{escape(c)}*]," for c in d.columns) + "),\n"
            "    table.hline(stroke: 0.5pt),\n    " + "\n    ".join(cells) + "\n"
            "    table.hline(stroke: 0.8pt)))"
        )
        if columns is None:
            body = f"fit({body})"
        src = f"#figure(kind: table, caption: [{escape(caption or d.caption)}],\n  {body}\n)\n"
        if len(d.rows) <= 30:  # a short table stays on one page with its caption
            src = f"#block(breakable: false)[\n{src}]\n"
        head = ("=" * heading[1] + " " + escape(heading[0]) + "\n") if heading else ""
        self.parts.append(f"#page(flipped: true)[\n{head}{src}]\n" if wide else head + src)

    def figure(self, path: str | Path, caption: str, width: str = "100%") -> None:
        self.parts.append(
            f"#figure(image({literal(Path(path).as_posix())}, width: {width}), "
            f"caption: [{escape(caption)}])\n"
        )

    def code(self, text: str, lang: str = "toml", size: float = 6.5) -> None:
        self.parts.append(
            f"#text(size: {size}pt, raw(block: true, lang: {literal(lang)}, {literal(text)}))\n"
        )

    def source(self, title: str, subtitle: str) -> str:
        head = (
            f'#set document(title: {literal(title)}, author: "lfubench")\n'
            '#set page(paper: "a4", margin: (x: 51pt, y: 2cm), numbering: "1")\n'
            "#set text(size: 9.5pt, hyphenate: false)\n#set par(justify: true)\n"
            '#set heading(numbering: "1.1")\n'
            "#show figure.caption: set text(size: 8pt)\n"
            "#show figure.where(kind: table): set block(breakable: true)\n"
            "#let fit(body) = layout(size => {\n  let w = measure(body).width\n"
            "  if w > size.width { scale(size.width / w * 100%, reflow: true, body) } else { body }\n})\n"
            "#show heading.where(level: 1): set text(size: 13pt)\n"
            f'#align(center)[#text(size: 17pt, weight: "bold")[{escape(title)}] \\\n'
            f"#text(size: 9pt)[{escape(subtitle)}]]\n#v(0.5em)\n"
        )
        return head + "\n".join(self.parts)


def compile_pdf(source: str, path: str | Path, root: str | Path) -> Path:
    """Compile ``source`` (figures relative to ``root``) to the PDF ``path``, written atomically;
    the ``.typ`` source is kept beside it."""
    import typst

    path = Path(path)
    typ = path.with_suffix(".typ")
    typ.write_text(source)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        typst.compile(str(typ), output=str(tmp), root=str(root))
    except typst.TypstError as err:  # a bug in the generated source, not the user's input
        raise RuntimeError(f"{typ}: typst could not compile the report: {err}") from err
    tmp.replace(path)
    return path
