"""Image operations dataset modules share: in-plane resizing, cropping / padding, pasting back."""

from __future__ import annotations

import numpy as np


def resize_slices(volume: np.ndarray, size: int, labels: bool = False) -> np.ndarray:
    """Resize ``(Z, Y, X)`` to ``(Z, size, size)``: bilinear with antialiasing, or nearest for labels."""
    import torch

    if volume.shape[1:] == (size, size):
        return volume.copy()
    t = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[:, None]
    if labels:
        out = torch.nn.functional.interpolate(t, size=(size, size), mode="nearest-exact")
        return out[:, 0].numpy().astype(volume.dtype)
    out = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                                          antialias=True)
    return out[:, 0].numpy()


def crop_or_pad(volume: np.ndarray, size: int, center: tuple[int, int]) -> tuple[np.ndarray, list[int]]:
    """Cut a ``size`` x ``size`` window of the last two axes centred on ``center`` (zero padding where
    it leaves the array). Returns the window and its ``[y0, x0]`` offset in the input (may be negative)."""
    ny, nx = volume.shape[-2:]
    offsets = []
    for n, c in zip((ny, nx), center, strict=True):
        start = int(round(c - size / 2))
        if n >= size:
            start = min(max(start, 0), n - size)
        else:
            start = -((size - n) // 2)
        offsets.append(start)
    out = np.zeros(volume.shape[:-2] + (size, size), dtype=volume.dtype)
    (y0, x0) = offsets
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + size, ny), min(x0 + size, nx)
    out[..., ys - y0:ye - y0, xs - x0:xe - x0] = volume[..., ys:ye, xs:xe]
    return out, offsets


def paste_slices(pred: np.ndarray, offset, out: np.ndarray, start: int) -> None:
    """Paste label slices ``pred`` ``(B, S, S)``, cut by :func:`crop_or_pad` at ``offset`` ``[y0, x0]``,
    into slices ``start .. start + B`` of ``out`` ``(Z, Y, X)``, clipped to its grid (voxels outside
    the crop keep their value)."""
    _, ny, nx = out.shape
    size = pred.shape[-1]
    y0, x0 = offset
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + size, ny), min(x0 + size, nx)
    out[start:start + len(pred), ys:ye, xs:xe] = pred[:, ys - y0:ye - y0, xs - x0:xe - x0]
