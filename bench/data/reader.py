"""Reading one case into arrays, checking it on the way.

:func:`inspect_case` is the single place where a case is judged: ``lfubench data verify`` lists
its problems, and :func:`read_case` raises :class:`~bench.data.nifti.DataError` with the same
one-line message. A bad case never becomes an array of zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np

from .labels import FILE_LABELS, map_labels
from .layouts import Case, Problem
from .nifti import DataError, ReadFailure, canonical_spacing, fmt_shape, load_image, read_data, spatial_shape

#: tolerance when comparing spacings (mm) and affines between the files of one case
SPACING_ATOL = 1e-3
AFFINE_ATOL = 1e-3


@dataclass
class CaseData:
    """One case in canonical orientation.

    Attributes:
        case_id: the case name.
        dataset: ``"lits"`` or ``"brats"``.
        image: ``float32`` array ``(C, Z, Y, X)``; LiTS C = 1 (CT in HU), BraTS C = 4
            (flair, t1, t1ce, t2).
        label: ``uint8`` array ``(Z, Y, X)`` in the internal convention (see ``bench.data.labels``).
        spacing: voxel size in mm, ``(z, y, x)``.
        channels: channel names, in order.
        group: ``"HGG"``/``"LGG"`` for BraTS 2018, else ``None``.
    """

    case_id: str
    dataset: str
    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]
    channels: tuple[str, ...]
    group: str | None = None


def inspect_case(case: Case) -> tuple[CaseData | None, list[Problem]]:
    """Read and check every file of ``case``.

    Checks: missing files or modalities, unreadable or truncated files, 4D images, shape / spacing /
    affine mismatch between the image(s) and the label, NaN/Inf intensities, all-zero images,
    non-integer or unexpected label values.

    Returns:
        ``(data, [])`` when the case is sound, else ``(None, problems)`` listing every problem.
    """
    problems = list(case.problems)
    arrays: dict[str, np.ndarray] = {}
    ref: tuple[str, nib.Nifti1Image] | None = None
    spacing = None
    for role, path in case.files():
        name = case.rel(path)

        def report(message: str, name=name) -> None:
            problems.append(Problem(case.case_id, name, message))

        if not path.is_file():
            what = "label" if role == "label" else "image" if case.dataset == "lits" else f"modality {role}"
            report(f"missing file ({what})")
            continue
        try:
            img = load_image(path)
            if len(spatial_shape(img)) != 3:
                shape = spatial_shape(img)
                raise ReadFailure(f"{len(shape)}D image (shape {fmt_shape(shape)}), expected 3D")
            data = read_data(img, raw=(role == "label"))
        except ReadFailure as err:
            report(str(err))
            continue
        if ref is None:
            ref, spacing = (case.rel(path), img), canonical_spacing(img)
        else:
            mismatch = _geometry_mismatch(img, ref[1])
            if mismatch:
                report(_mismatch_message(mismatch, img, ref))
                continue
        message = _check_label(data, case.label_convention) if role == "label" else _check_image(data)
        if message:
            report(message)
            continue
        arrays[role] = data
    if problems:
        return None, problems
    image = np.stack([arrays[c].astype(np.float32, copy=False) for c in case.images])
    label = map_labels(np.rint(arrays["label"]).astype(np.int64), case.label_convention)
    return CaseData(case.case_id, case.dataset, image, label, spacing, tuple(case.images), case.group), []


def read_case(case: Case) -> CaseData:
    """Read ``case``; raise :class:`DataError` whose message is its first problem (all in ``.problems``)."""
    data, problems = inspect_case(case)
    if problems:
        raise DataError(str(problems[0]), problems)
    return data


def _geometry_mismatch(img, ref) -> str | None:
    if spatial_shape(img) != spatial_shape(ref):
        return "shape"
    if not np.allclose(img.header.get_zooms()[:3], ref.header.get_zooms()[:3], atol=SPACING_ATOL, rtol=0):
        return "spacing"
    if not np.allclose(img.affine, ref.affine, atol=AFFINE_ATOL, rtol=0):
        return "affine"
    return None


def _mismatch_message(what: str, img, ref: tuple[str, nib.Nifti1Image]) -> str:
    ref_name, ref_img = ref
    if what == "shape":
        mine, theirs = fmt_shape(spatial_shape(img)), fmt_shape(spatial_shape(ref_img))
        return f"shape {mine} differs from {ref_name} ({theirs})"
    if what == "spacing":
        return f"spacing {_zooms(img)} mm differs from {ref_name} ({_zooms(ref_img)} mm)"
    shift = float(np.abs(img.affine - ref_img.affine).max())
    return f"affine differs from {ref_name} (orientation or origin, max difference {shift:.3g})"


def _zooms(img) -> str:
    return "x".join(f"{z:.4g}" for z in img.header.get_zooms()[:3])


def _check_image(data: np.ndarray) -> str | None:
    bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if bad:
        return f"{bad} NaN/Inf voxels in the image"
    if not np.any(data):
        return "image is all zeros"
    return None


def _check_label(data: np.ndarray, convention: str) -> str | None:
    allowed = FILE_LABELS[convention]
    if np.issubdtype(data.dtype, np.floating):
        rounded = np.rint(data)
        off = ~(np.abs(data - rounded) <= 1e-3)
        if np.any(off):
            return f"{int(off.sum())} non-integer label values (e.g. {float(data[off][0]):g})"
        data = rounded
    values = [int(v) for v in np.unique(data)]
    bad = [v for v in values if v not in allowed]
    if bad:
        expected = ", ".join(str(v) for v in allowed)
        return f"unexpected label values {', '.join(map(str, bad))} (expected {expected})"
    return None
