"""Evaluation: predict every slice of each test volume, put the prediction back on the case's
original voxel grid, and score it in 3D, in mm, against the original label file.

- LiTS: the softmax probabilities of each slice are resized bilinearly from the network size
  back to the original in-plane size before the arg-max; classes liver (label >= 1) and tumor
  (label 2).
- BraTS: the arg-max of each cropped slice is pasted back at the crop offset; voxels outside
  the crop are background. Regions WT, TC, ET (internal labels 1 necrotic/non-enhancing core,
  2 edema, 3 enhancing).
- Metrics: ``bench.metrics`` (medpy's definitions), voxel spacing of the original header,
  surfaces with connectivity 1, the empty-mask rule of the caller, by default the dataset's
  (:data:`bench.datasets.DATASETS`: LiTS ``diagonal``: one mask empty -> Dice 0, HD95 = the
  diagonal of the case's volume in mm; BraTS ``brats``: one mask empty -> Dice 0, HD95
  373.13 mm; both rules: both empty -> Dice 1, HD95 0).

Rows are JSON-able: ``{"case", "region", "metric", "value"}`` (NaN written as None).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .data import SliceCache, find_cases, read_case
from .datasets import DATASETS
from .metrics import MetricsAccumulator


@torch.no_grad()
def predict_probabilities(model: nn.Module, images: np.ndarray, batch_size: int = 16, device: str = "cpu",
                          channels_last: bool = True):
    """Softmax probabilities ``(Z, classes, S, S)`` (a torch tensor on the CPU) for the slices
    ``images`` ``(Z, C, S, S)``."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).to(device)
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        out.append(model(x).float().softmax(1).cpu())
    return torch.cat(out)


def restore_geometry(probs: torch.Tensor, dataset: str, info: dict) -> np.ndarray:
    """The label map ``(Z, Y, X)`` (uint8) on the original grid described by the case's cache
    ``info`` (``orig_shape``, and ``crop_offset`` for BraTS)."""
    z, ny, nx = info["orig_shape"]
    if dataset == "lits":
        labels = np.empty((z, ny, nx), dtype=np.uint8)
        for s in range(0, z, 8):  # a few slices at a time keeps the full-size probabilities small
            full = nn.functional.interpolate(probs[s:s + 8], size=(ny, nx), mode="bilinear",
                                             align_corners=False)
            labels[s:s + 8] = full.argmax(1).numpy().astype(np.uint8)
        return labels
    pred = probs.argmax(1).numpy().astype(np.uint8)
    size = pred.shape[-1]
    y0, x0 = info["crop_offset"]
    labels = np.zeros((z, ny, nx), dtype=np.uint8)
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + size, ny), min(x0 + size, nx)
    labels[:, ys:ye, xs:xe] = pred[:, ys - y0:ye - y0, xs - x0:xe - x0]
    return labels


def evaluate_cases(model: nn.Module, cache: SliceCache, case_ids: list[str], *, metrics=("dice", "hd95"),
                   empty: str | None = None, batch_size: int = 16, device: str = "cpu",
                   channels_last: bool = True) -> list[dict]:
    """Per-case 3D metrics of ``model`` on ``case_ids``, as tidy JSON-able rows.

    The original labels are read again from the dataset files the cache was built from.
    ``empty`` is an empty-mask convention of :mod:`bench.metrics` (``"brats"``, ``"diagonal"``,
    ``"nan"``); ``None`` (default) takes the dataset's rule from :data:`bench.datasets.DATASETS`.
    """
    dataset = cache.meta["config"]["dataset"]
    root = cache.meta["root"]
    cases = {c.case_id: c for c in find_cases(dataset, root)[0]}
    facts = DATASETS[dataset]
    acc = MetricsAccumulator(metrics, regions=facts.region_set, empty=facts.empty if empty is None else empty,
                             scheme=facts.label_scheme)
    for cid in case_ids:
        images, _ = cache.case_volume(cid)
        info = cache.cases[cid]
        probs = predict_probabilities(model, images, batch_size, device, channels_last)
        pred = restore_geometry(probs, dataset, info)
        ref = read_case(cases[cid]).label
        acc(pred, ref, case=cid, spacing=tuple(info["spacing"]))
    return [{k: r[k] for k in ("case", "region", "metric", "value")} for r in acc.rows(nan_as_none=True)]
