"""Qualitative overlays: the same test slices with image, ground truth and several models'
predictions side by side.

Each item's ``overlays.npz`` (the ``overlays`` column of the items table) holds ``case`` (K),
``slice`` (K), ``image`` (K, H, W float), ``label`` and ``pred`` (K, H, W class indices) and
``classes`` (the names of the class indices). The K slices are chosen from the reference
only, so every model of a dataset has the same ones. Among them the figure shows the slice
where the models disagree most (the most pixels on which their predictions are not all equal)
and a typical one (the median disagreement)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .plotting import plain, plt, save_figure
from .schema import ReportInputError

#: arrays an overlays file must hold
ARRAYS = ("case", "slice", "image", "label", "pred", "classes")

#: models shown side by side at most
MAX_MODELS = 6

#: characters per line of a panel's title (about a panel's width at the title's size)
TITLE_CHARS = 16

#: class colours (index 1, 2, ...; background is not drawn)
CLASS_COLORS = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4"]


def load_overlays(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of one overlays file, checked: every array present, shapes consistent."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except (OSError, ValueError) as err:
        raise ReportInputError(f"{path}: cannot read the overlays file ({err})") from None
    missing = [k for k in ARRAYS if k not in data]
    if missing:
        raise ReportInputError(f"{path}: overlays file lacks {', '.join(missing)}")
    k = len(data["case"])
    shape = data["image"].shape
    if (
        len(shape) != 3
        or shape[0] != k
        or data["label"].shape != shape
        or data["pred"].shape != shape
        or len(data["slice"]) != k
    ):
        raise ReportInputError(
            f"{path}: overlays arrays disagree in shape (image {shape}, label "
            f"{data['label'].shape}, pred {data['pred'].shape}, {k} cases)"
        )
    return data


def disagreement(preds: Sequence[np.ndarray]) -> np.ndarray:
    """Per slice: the number of pixels where the predictions (each K x H x W) are not all equal."""
    stack = np.stack(preds)  # M, K, H, W
    return (stack != stack[:1]).any(axis=0).sum(axis=(1, 2))


def pick_slices(preds: Sequence[np.ndarray]) -> dict[str, int]:
    """The slice of largest disagreement and a typical one (the median disagreement)."""
    d = disagreement(preds)
    order = np.argsort(d, kind="stable")
    most = int(order[-1])
    typical = int(order[(len(order) - 1) // 2])
    if typical == most and len(order) > 1:
        typical = int(order[-2])
    return {"largest disagreement": most, "typical": typical}


def _color(labels: np.ndarray, n: int) -> np.ndarray:
    rgba = np.zeros((*labels.shape, 4))
    from matplotlib.colors import to_rgba

    for c in range(1, n):
        rgba[labels == c] = to_rgba(CLASS_COLORS[(c - 1) % len(CLASS_COLORS)], 0.5)
    return rgba


def load_models(
    entries: Sequence[tuple[str, str, str | Path]], most: int = MAX_MODELS
) -> tuple[list[tuple[str, dict[str, np.ndarray]]], dict[str, str]]:
    """The overlays of up to ``most`` models, from (item, model name, overlays file) entries in
    order: the (name, arrays) of those read and, per item whose file cannot be read (missing,
    unreadable, malformed), why -- a figure is optional, so such an item is left out, never
    fatal."""
    loaded, lacking = [], {}
    for item, name, path in entries:
        if len(loaded) == most:
            break
        if not Path(path).is_file():
            lacking[item] = f"{path}: no such file"
            continue
        try:
            loaded.append((name, load_overlays(path)))
        except ReportInputError as err:
            lacking[item] = str(err)
    return loaded, lacking


def _common(loaded: Sequence[tuple[str, dict[str, np.ndarray]]]):
    """The (case, slice) keys every file holds, and each file's index of them."""
    keys = [list(zip(d["case"].astype(str), d["slice"].astype(int), strict=True)) for _, d in loaded]
    common = [k for k in keys[0] if all(k in other for other in keys[1:])]
    return common, [[ks.index(k) for k in common] for ks in keys]


def _row(axes, image: np.ndarray, panels: Sequence[tuple[str, np.ndarray | None]], n_classes: int,
         titles: bool) -> None:
    """One row of panels: the image alone, then with each label map over it."""
    lo, hi = np.percentile(image, [1, 99])
    for ax, (name, lab) in zip(axes, panels, strict=True):
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
        if lab is not None:
            ax.imshow(_color(lab, n_classes), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if titles:  # long labels wrapped to the panel's width, so neighbours' titles never meet
            ax.set_title(plain(textwrap.fill(name, TITLE_CHARS)), fontsize=6)


def write_overlay_figure(
    loaded: Sequence[tuple[str, dict[str, np.ndarray]]], out_stem: str | Path, title: str = ""
) -> tuple[Path, dict[str, tuple[str, int]]] | None:
    """A figure of the chosen slices (rows) with image, ground truth and each model's prediction
    (columns); ``loaded`` are (name, overlays arrays) pairs of one dataset (:func:`load_models`).
    Returns the PDF path and, per row, the (case, slice) shown; None when no slice is common to
    the files."""
    if not loaded:
        return None
    common, index = _common(loaded)
    if not common:
        return None
    preds = [d["pred"][idx] for (_, d), idx in zip(loaded, index, strict=True)]
    first = loaded[0][1]
    image, label = first["image"][index[0]], first["label"][index[0]]
    classes = [str(c) for c in first["classes"]]
    chosen = pick_slices(preds)
    ncols = 2 + len(loaded)
    fig, axes = plt().subplots(
        len(chosen), ncols, figsize=(min(6.8, 1.15 * ncols), 1.25 * len(chosen) + 0.55), squeeze=False
    )
    shown = {}
    for r, (what, k) in enumerate(chosen.items()):
        panels = [("image", None), ("ground truth", label[k])] + [
            (name, p[k]) for (name, _), p in zip(loaded, preds, strict=True)]
        _row(axes[r], image[k], panels, len(classes), titles=r == 0)
        case, sl = common[k]
        shown[what] = (case, sl)
        axes[r][0].set_ylabel(plain(f"{what}\n{case} z={sl}"), fontsize=5.5)
    from matplotlib.patches import Patch

    handles = [
        Patch(color=CLASS_COLORS[(c - 1) % len(CLASS_COLORS)], alpha=0.6, label=plain(classes[c]))
        for c in range(1, len(classes))
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=6.5, frameon=False)
    if title:
        fig.suptitle(plain(title), fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 1), pad=0.3, w_pad=0.2, h_pad=0.3)
    return save_figure(fig, out_stem), shown
