"""A first paper-style PDF report: title page with the conventions, the results table,
and the Pareto figures, one per page (matplotlib's PDF backend, no LaTeX needed)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from .tables import by_dataset, cells


def _table_page(pdf, table: pd.DataFrame, title: str, conventions: Sequence[str]) -> None:
    import matplotlib.pyplot as plt

    shown = cells(table)
    cols = list(shown[0]) if shown else list(table.columns)
    cells_ = [[r[c] for c in cols] for r in shown]
    notes = [part for text in conventions for part in textwrap.wrap(text, 180)]
    per_page = 28
    for start in range(0, max(1, len(cells_)), per_page):
        fig = plt.figure(figsize=(11.69, 8.27))  # A4 landscape
        fig.text(0.03, 0.96, title, fontsize=14, weight="bold", va="top")
        for k, text in enumerate(notes):
            fig.text(0.03, 0.925 - 0.018 * k, text, fontsize=7.5, va="top", color="0.25")
        ax = fig.add_axes((0.02, 0.03, 0.96, 0.82 - 0.018 * len(notes)))
        ax.axis("off")
        chunk = cells_[start:start + per_page]
        if chunk:
            tab = ax.table(cellText=chunk, colLabels=cols, loc="upper center", cellLoc="center")
            tab.auto_set_font_size(False)
            tab.set_fontsize(6.5)
            tab.scale(1, 1.25)
        pdf.savefig(fig)
        plt.close(fig)


def write_report(path: str | Path, table: pd.DataFrame, figures: Sequence[str | Path], title: str,
                 conventions: Mapping[str, Sequence[str]]) -> Path:
    """Write the PDF: the table page(s) of each dataset headed by its ``conventions``, then each
    figure (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    path = Path(path)
    tmp = path.with_suffix(".pdf.tmp")
    with PdfPages(tmp) as pdf:
        for name, part in by_dataset(table):
            _table_page(pdf, part, f"{title}: {name}" if name else title, conventions.get(name, []))
        for fig_path in figures:
            img = plt.imread(fig_path)
            fig = plt.figure(figsize=(11.69, 8.27))
            ax = fig.add_axes((0.05, 0.05, 0.9, 0.9))
            ax.imshow(img)
            ax.axis("off")
            pdf.savefig(fig)
            plt.close(fig)
        info = pdf.infodict()
        info["Title"] = title
        info["Creator"] = "lfubench"
    tmp.replace(path)
    return path
