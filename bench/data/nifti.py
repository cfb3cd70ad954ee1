"""Reading NIfTI volumes in one canonical orientation, with their voxel spacing in mm.

Canonical order: the image is reoriented to the closest RAS+ axes (nibabel's
``as_closest_canonical``) and its array transposed to ``[z, y, x]``: axis 0 runs inferior to
superior (one axial slice per index), axis 1 posterior to anterior, axis 2 left to right.
Spacing is always reported in the same ``(z, y, x)`` order, in millimetres, from the header.
"""

from __future__ import annotations

import gzip
import logging
import zlib
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


class ReadFailure(Exception):
    """Internal: a file could not be read; ``str()`` is the one-line reason."""


def load_image(path: Path) -> nib.Nifti1Image:
    """Open ``path`` lazily (header only); raise :class:`ReadFailure` with a one-line reason."""
    try:
        img = nib.load(str(path))
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


def read_data(img: nib.Nifti1Image, raw: bool = False) -> np.ndarray:
    """Read the voxel data of a 3D image in canonical ``[z, y, x]`` order.

    ``raw=True`` keeps the stored dtype (for labels); otherwise ``float32`` with the header's
    scaling applied. Raise :class:`ReadFailure` on truncated or corrupt data.
    """
    shape = spatial_shape(img)
    if len(shape) != 3:
        raise ReadFailure(f"{len(shape)}D image (shape {fmt_shape(shape)}), expected 3D")
    try:
        canon = nib.as_closest_canonical(img)
        data = np.asanyarray(canon.dataobj) if raw else canon.get_fdata(dtype=np.float32)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise ReadFailure(f"truncated or corrupt gzip data ({_first_line(err)})") from err
    except OSError as err:
        raise ReadFailure(f"truncated or unreadable data ({_first_line(err)})") from err
    except Exception as err:
        raise ReadFailure(f"unreadable data ({_first_line(err)})") from err
    data = data.reshape(data.shape[:3])
    return np.array(np.transpose(data, (2, 1, 0)), order="C", copy=True)  # never a view of a memmap


def canonical_spacing(img: nib.Nifti1Image) -> tuple[float, float, float]:
    """Voxel spacing in mm in canonical ``(z, y, x)`` order."""
    zooms = nib.as_closest_canonical(img).header.get_zooms()[:3]
    return (float(zooms[2]), float(zooms[1]), float(zooms[0]))


def fmt_shape(shape) -> str:
    return "x".join(str(int(s)) for s in shape)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
