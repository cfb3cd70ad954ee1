"""Reading NIfTI volumes in one canonical orientation, with their voxel spacing in mm.

Canonical order: the image is reoriented to the closest RAS+ axes (nibabel's
``as_closest_canonical``) and its array transposed to ``[z, y, x]``: axis 0 runs inferior to
superior (one axial slice per index), axis 1 posterior to anterior, axis 2 left to right.
Spacing is always reported in the same ``(z, y, x)`` order, in millimetres, from the header.

Volumes are read a slab of slices at a time (:func:`canonical_blocks`) into one array of the
stored dtype (``int16`` CT stays ``int16``; scaled or 8-byte data become ``float32``), so reading
never holds a second copy of a volume.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import LfubenchError

log = logging.getLogger(__name__)


class DataError(LfubenchError):
    """A dataset case cannot be used; the message is one line naming the case and the file.

    ``problems`` holds every problem found in the case (the message shows the first).
    """

    def __init__(self, message: str, problems: list | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])

    def __reduce__(self):  # keep the problems when raised in a worker process
        return type(self), (str(self), self.problems)


class ReadFailure(Exception):
    """Internal: a file could not be read; ``str()`` is the one-line reason."""


def load_image(path: Path) -> nib.Nifti1Image:
    """Open ``path`` lazily (header only); raise :class:`ReadFailure` with a one-line reason.

    The file stays open between reads of the image (``keep_file_open=True``), so
    :func:`canonical_blocks` reads a gzipped volume slab by slab in one forward pass.
    """
    try:
        img = nib.load(str(path), keep_file_open=True)
    except FileNotFoundError as err:
        raise ReadFailure("missing file") from err
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise ReadFailure(f"truncated or corrupt gzip data ({_first_line(err)})") from err
    except Exception as err:  # nibabel raises many types for bad headers
        raise ReadFailure(f"unreadable NIfTI header ({_first_line(err)})") from err
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise ReadFailure(f"not a NIfTI file ({type(img).__name__})")
    return img


def spatial_shape(img: nib.Nifti1Image) -> tuple[int, ...]:
    """The header shape with trailing singleton dimensions dropped (``(X, Y, Z, 1)`` is 3D)."""
    shape = tuple(int(s) for s in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def canonical_shape(img: nib.Nifti1Image) -> tuple[int, int, int]:
    """The ``(Z, Y, X)`` shape of the canonical array, from the header alone."""
    shape = _shape3(img)
    ornt = _orientation(img)
    out = [0, 0, 0]
    for axis, (target, _) in enumerate(ornt):
        out[2 - int(target)] = shape[axis]
    return tuple(out)


def read_dtype(img: nib.Nifti1Image, raw: bool = False) -> np.dtype:
    """The dtype :func:`read_data` returns: for ``raw`` the stored one, ``float64`` when the header
    scales the values (as nibabel's ``dataobj`` gives them); otherwise the stored one when it is
    unscaled and at most 4 bytes (``int16`` CT stays ``int16``), else ``float32``."""
    stored = np.dtype(img.get_data_dtype()).newbyteorder("=")
    if raw:
        return np.dtype(np.float64) if _scaled(img) else stored
    if _scaled(img) or stored.kind not in "iuf" or stored.itemsize > 4:
        return np.dtype(np.float32)
    return stored


def canonical_blocks(img: nib.Nifti1Image, slices: int | None = None):
    """Yield ``(z0, block)``: the canonical ``[z, y, x]`` volume, ``block`` = slices ``z0 ...`` of it.

    Reads the file one slab at a time (``slices`` per block; default about
    :data:`BLOCK_VOXELS` voxels), so a volume is never held twice; a file whose axial slices are
    not its last axis (not stored axially) is read in one block. Blocks hold the stored values
    (scaled, when the header says so); they come in file order, which is decreasing ``z0`` for a
    file stored superior to inferior. Raise :class:`ReadFailure` on truncated or corrupt data.
    """
    shape = _shape3(img)
    ornt = _orientation(img)
    axis = int(np.nonzero(ornt[:, 0] == 2)[0][0])  # the file axis that becomes canonical z
    n = shape[axis]
    step = slices or max(1, BLOCK_VOXELS // max(1, int(np.prod(shape)) // n))
    if axis != 2 and slices is None:  # slices are not contiguous in the file (not axial): one read
        step = n
    extra = (0,) * (len(img.shape) - 3)
    proxy = img.dataobj
    for k0 in range(0, n, step):
        k1 = min(n, k0 + step)
        slicer = [slice(None)] * 3
        slicer[axis] = slice(k0, k1)
        with _reading():
            block = np.asanyarray(proxy[(*slicer, *extra)])
            block = nib.orientations.apply_orientation(block, ornt)  # closest RAS+ axes (x, y, z)
        yield (k0 if ornt[axis, 1] > 0 else n - k1), np.transpose(block, (2, 1, 0))


def read_data(img: nib.Nifti1Image, raw: bool = False) -> np.ndarray:
    """Read the voxel data of a 3D image in canonical ``[z, y, x]`` order (a new C-ordered array).

    ``raw=True`` keeps the stored dtype (for labels; ``float64`` if the header scales the values);
    otherwise the dtype of :func:`read_dtype`: the stored one for unscaled integer or ``float32``
    data (``int16`` CT is not widened), else ``float32`` with the header's scaling applied. The
    file is read slab by slab into the result, so the peak is the result plus one slab. Raise
    :class:`ReadFailure` on truncated or corrupt data.
    """
    out = np.empty(canonical_shape(img), dtype=read_dtype(img, raw))
    for z0, block in canonical_blocks(img):
        out[z0:z0 + len(block)] = block
    return out


def canonical_spacing(img: nib.Nifti1Image) -> tuple[float, float, float]:
    """Voxel spacing in mm in canonical ``(z, y, x)`` order (from the header; no data is read)."""
    # the header nibabel's as_closest_canonical would give, built on a zero-byte stand-in array
    stand_in = type(img)(np.broadcast_to(np.uint8(0), img.shape), img.affine, img.header)
    zooms = nib.as_closest_canonical(stand_in).header.get_zooms()[:3]
    return (float(zooms[2]), float(zooms[1]), float(zooms[0]))


#: voxels per block read by :func:`canonical_blocks` (about 4 MB of ``int8`` ... 32 MB of ``float64``)
BLOCK_VOXELS = 1 << 22


def _shape3(img) -> tuple[int, int, int]:
    shape = spatial_shape(img)
    if len(shape) != 3:
        raise ReadFailure(f"{len(shape)}D image (shape {fmt_shape(shape)}), expected 3D")
    return shape


def _orientation(img) -> np.ndarray:
    ornt = nib.io_orientation(img.affine)
    if np.isnan(ornt).any():
        raise ReadFailure("unreadable data (the affine has no orientation: a zero or degenerate axis)")
    return ornt


def _scaled(img) -> bool:
    slope, inter = (getattr(img.dataobj, name, None) for name in ("slope", "inter"))
    return not ((slope is None or slope == 1) and (inter is None or inter == 0))


@contextmanager
def _reading():
    """Turn the errors of reading voxel data into :class:`ReadFailure` with a one-line reason."""
    try:
        yield
    except ReadFailure:
        raise
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise ReadFailure(f"truncated or corrupt gzip data ({_first_line(err)})") from err
    except OSError as err:
        raise ReadFailure(f"truncated or unreadable data ({_first_line(err)})") from err
    except Exception as err:
        raise ReadFailure(f"unreadable data ({_first_line(err)})") from err


def fmt_shape(shape) -> str:
    return "x".join(str(int(s)) for s in shape)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
