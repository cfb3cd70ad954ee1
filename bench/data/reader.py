"""Reading one case into arrays, checking it on the way.

:func:`inspect_case` is the single place where a case is judged: ``lfubench data verify`` lists
its problems, and :func:`read_case` raises :class:`~bench.data.nifti.DataError` with the same
one-line message. A bad case never becomes an array of zeros.

Files are read slab by slab (:func:`~bench.data.nifti.canonical_blocks`) and checked on the way:
a case costs its image in the stored dtype (``int16`` for CT) and its ``uint8`` labels, plus one
slab, never a ``float32`` or ``int64`` copy of the volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np

from ..datasets import get_dataset
from .layouts import Case, Problem
from .nifti import (
    DataError,
    ReadFailure,
    canonical_blocks,
    canonical_shape,
    canonical_spacing,
    fmt_shape,
    load_image,
    read_dtype,
    spatial_shape,
)

#: tolerance when comparing spacings (mm) and affines between the files of one case
SPACING_ATOL = 1e-3
AFFINE_ATOL = 1e-3


@dataclass
class CaseData:
    """One case in canonical orientation.

    Attributes:
        case_id: the case name.
        kind: the dataset's kind (``"lits"``, ``"brats"``).
        image: array ``(C, Z, Y, X)``, one channel per image file (LiTS C = 1, CT in HU; BraTS C = 4,
            flair, t1, t1ce, t2);
            in the files' stored dtype when unscaled and at most 4 bytes (``int16`` CT stays
            ``int16``), else ``float32`` (:func:`bench.data.nifti.read_dtype`); several channels
            share their common dtype.
        label: ``uint8`` array ``(Z, Y, X)`` in the internal labels (see ``bench.data.labels``).
        spacing: voxel size in mm, ``(z, y, x)``.
        channels: channel names, in order.
        group: ``"HGG"``/``"LGG"`` for BraTS 2018, else ``None``.
    """

    case_id: str
    kind: str
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
    stack = None  # the (C, Z, Y, X) image, read into channel by channel
    channel = {name: c for c, name in enumerate(case.images)}
    dataset = get_dataset(case.kind)
    labels = dataset.layout(case.layout).file_labels
    for role, path in case.files():
        name = case.rel(path)

        def report(message: str, name=name) -> None:
            problems.append(Problem(case.case_id, name, message))

        if not path.is_file():
            report(f"missing file ({dataset.role_name(role)})")
            continue
        try:
            img = load_image(path)
            if len(spatial_shape(img)) != 3:
                shape = spatial_shape(img)
                raise ReadFailure(f"{len(shape)}D image (shape {fmt_shape(shape)}), expected 3D")
            if role == "label":
                data, message = _read_label(img, labels)
            else:
                if stack is None:
                    stack = np.empty((len(case.images), *canonical_shape(img)), dtype=_common_dtype(case))
                fits = stack.shape[1:] == canonical_shape(img)
                data, message = _read_image(img, stack[channel[role]] if fits else None)
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
        if message:
            report(message)
            continue
        arrays[role] = data
    if problems:
        return None, problems
    return CaseData(case.case_id, case.kind, stack, arrays["label"], spacing, tuple(case.images),
                    case.group), []


def read_case(case: Case) -> CaseData:
    """Read ``case``; raise :class:`DataError` whose message is its first problem (all in ``.problems``)."""
    data, problems = inspect_case(case)
    if problems:
        raise DataError(str(problems[0]), problems)
    return data


def read_label(case: Case) -> np.ndarray:
    """The label file of ``case`` alone, as :func:`read_case` gives it: ``uint8`` internal labels in
    canonical order, read, checked and mapped slab by slab (for scoring against the original grid).

    Raises:
        DataError: the file cannot be read or holds values outside the case's layout's.
    """
    try:
        labels = get_dataset(case.kind).layout(case.layout).file_labels
        label, message = _read_label(load_image(case.label), labels)
    except ReadFailure as err:
        label, message = None, str(err)
    if message:
        raise DataError(str(Problem(case.case_id, case.rel(case.label), message)))
    return label


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


def _common_dtype(case: Case) -> np.dtype:
    """The dtype of the case's image: the channels' :func:`~bench.data.nifti.read_dtype` in common
    (channels whose header cannot be read are left out; they are reported when read)."""
    dtypes = []
    for path in case.images.values():
        try:
            dtypes.append(read_dtype(load_image(path)))
        except (ReadFailure, OSError):
            continue
    return np.result_type(*dtypes) if dtypes else np.dtype(np.float32)


def _read_image(img, out: np.ndarray | None = None) -> tuple[np.ndarray, str | None]:
    """The canonical image (into ``out``, else a new array of :func:`~bench.data.nifti.read_dtype`)
    and what is wrong with it (NaN/Inf voxels, all zeros), checked slab by slab."""
    if out is None:
        out = np.empty(canonical_shape(img), dtype=read_dtype(img))
    bad, nonzero = 0, False
    for z0, block in canonical_blocks(img):
        slab = out[z0:z0 + len(block)]
        slab[...] = block
        if slab.dtype.kind == "f":
            bad += int(slab.size - np.count_nonzero(np.isfinite(slab)))
        nonzero = nonzero or bool(slab.any())
    if bad:
        return out, f"{bad} NaN/Inf voxels in the image"
    if not nonzero:
        return out, "image is all zeros"
    return out, None


def _read_label(img, allowed: dict[int, int]) -> tuple[np.ndarray, str | None]:
    """The canonical label map in internal ``uint8`` labels and what is wrong with the file's values
    (non-integers, values not in ``allowed``: file value -> internal label), checked and mapped slab
    by slab."""
    lut = np.zeros(256, dtype=np.uint8)
    for raw, internal in allowed.items():
        lut[raw] = internal
    out = np.zeros(canonical_shape(img), dtype=np.uint8)
    off, example, values = 0, None, set()
    for z0, block in canonical_blocks(img):
        if block.dtype.kind == "f":
            rounded = np.rint(block)
            wrong = ~(np.abs(block - rounded) <= 1e-3)
            if wrong.any():
                off += int(wrong.sum())
                if example is None or z0 < example[0]:  # the first one in canonical order
                    example = (z0, float(block[wrong][0]))
            block = rounded
        if off:
            continue
        if block.dtype == np.uint8:
            present = np.flatnonzero(np.bincount(block.ravel(), minlength=256))
        else:
            present = np.unique(block)
        values.update(int(v) for v in present)
        if all(int(v) in allowed for v in present):
            out[z0:z0 + len(block)] = lut[block if block.dtype.kind in "iu" else block.astype(np.intp)]
    if off:
        return out, f"{off} non-integer label values (e.g. {example[1]:g})"
    bad = sorted(v for v in values if v not in allowed)
    if bad:
        expected = ", ".join(str(v) for v in allowed)
        return out, f"unexpected label values {', '.join(map(str, bad))} (expected {expected})"
    return out, None
