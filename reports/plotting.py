"""What every report figure shares: the non-interactive backend, one colour per model
family, data text made plain for matplotlib (:func:`plain`), and saving as a vector PDF (for
documents) with a PNG beside it."""

from __future__ import annotations

from pathlib import Path

#: PNG resolution of every figure
PNG_DPI = 150


def plt():
    """``matplotlib.pyplot`` on the Agg backend, fonts embedded as TrueType in PDFs."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams.update(
        {"pdf.fonttype": 42, "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7}
    )
    import matplotlib.pyplot as pyplot

    return pyplot


def plain(text) -> str:
    """``text`` (a label, dataset name, case id: anything from data) as matplotlib shows it
    literally: every ``$`` escaped, so that no pair of them starts a formula (mathtext, which
    shows one silently and fails the figure on an invalid one)."""
    return str(text).replace("$", r"\$")


def family_colors(families: list[str]) -> dict[str, tuple]:
    """A fixed colour per family, in the order given."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {name: cmap(k % 10) for k, name in enumerate(families)}


def save_figure(fig, stem: str | Path) -> Path:
    """Write ``stem.pdf`` and ``stem.png``, close the figure, return the PDF's path."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(stem.with_suffix(".pdf"))
    fig.savefig(stem.with_suffix(".png"), dpi=PNG_DPI)
    plt().close(fig)
    return stem.with_suffix(".pdf")


def file_name(text: str) -> str:
    """``text`` reduced to characters safe in a file name."""
    import re

    return re.sub(r"[^A-Za-z0-9.=-]+", "_", str(text)).strip("_") or "_"
