"""Helpers of the evaluation tests: NIfTI files written with any axis orientation, a stand-in
model that decodes a planted prediction from the image, and the whole-volume evaluation that
streaming evaluation must match bit for bit.

The whole-volume path is the evaluation as it was before it streamed: every slice's probabilities
of a case concatenated, then the whole volume restored and scored. It lives here, not in the
library, so the library has one path.
"""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import torch
from torch import nn

from lfubench.bench.data import find_cases, read_case
from lfubench.bench.datasets import DATASETS
from lfubench.bench.metrics import MetricsAccumulator

#: axis code -> (world axis of RAS: 0 x, 1 y, 2 z; direction)
_CODES = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}


def save_oriented(path, canon_zyx: np.ndarray, spacing_zyx, codes: str) -> None:
    """Write a canonical ``[z, y, x]`` RAS array to a NIfTI file whose array axes point along ``codes``.

    ``codes="PSL"``: file axis 0 runs posterior (y reversed), axis 1 superior (z), axis 2 left
    (x reversed). Voxel ``[z, y, x]`` of ``canon_zyx`` lies at the same world point whatever the
    codes, so the readers must bring every file back to ``canon_zyx``.
    """
    world = [_CODES[c] for c in codes]
    assert sorted(w for w, _ in world) == [0, 1, 2]
    ras = np.transpose(canon_zyx, (2, 1, 0))  # [x, y, z]
    data = np.transpose(ras, [w for w, _ in world])
    spacing_xyz = tuple(spacing_zyx)[::-1]
    affine = np.zeros((4, 4))
    affine[3, 3] = 1.0
    for axis, (w, sign) in enumerate(world):
        base = -7.0 * (w + 1)  # world coordinate of canonical index 0 (any origin will do)
        if sign < 0:
            data = np.flip(data, axis=axis)
        affine[w, axis] = sign * spacing_xyz[w]
        affine[w, 3] = base if sign > 0 else base + spacing_xyz[w] * (ras.shape[w] - 1)
    assert nib.aff2axcodes(affine) == tuple(codes)
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))


class LevelLookup(nn.Module):
    """A stand-in model: class ``k`` wins where channel ``channel`` is nearest one of ``levels[k]``.

    Logits ``-100 * min_l |x - l|``: a per-pixel lookup, so its arg-max is the planted label map.
    """

    def __init__(self, levels: dict[int, list[float]], channel: int) -> None:
        super().__init__()
        self.channel = channel
        self.levels = [torch.tensor(levels.get(k, [math.inf]), dtype=torch.float32)
                       for k in range(max(levels) + 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x[:, self.channel].float()
        dist = [(v[..., None] - lv).abs().amin(-1) for lv in self.levels]
        return -100.0 * torch.stack(dist, 1)


#: windowed CT (HU window [-200, 250] -> [0, 1]) that encodes each label: exactly 0, 0.5, 1
LITS_HU = {0: -200, 1: 25, 2: 250}
LITS_MODEL_LEVELS = {0: [0.0], 1: [0.5], 2: [1.0]}


def shifted(lab: np.ndarray, axis: int, k: int) -> np.ndarray:
    """``lab`` moved ``k`` voxels up ``axis`` (the objects stay clear of the edges: no wrap)."""
    out = np.roll(lab, k, axis=axis)
    assert out.sum() == lab.sum()
    return out


@torch.no_grad()
def whole_volume_probabilities(model: nn.Module, images: np.ndarray, batch_size: int,
                               channels_last: bool) -> torch.Tensor:
    """``(Z, classes, S, S)`` softmax probabilities of all slices of a case, concatenated."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size]))
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        out.append(model(x).float().softmax(1).cpu())
    return torch.cat(out)


def whole_volume_restore(probs: torch.Tensor, dataset: str, info: dict) -> np.ndarray:
    """The label map on the original grid from the probabilities of the whole case."""
    z, ny, nx = info["orig_shape"]
    if dataset == "lits":
        labels = np.empty((z, ny, nx), dtype=np.uint8)
        for s in range(0, z, 8):
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


def whole_volume_labels(model, cache, cid: str, batch_size: int = 16,
                        channels_last: bool = True) -> np.ndarray:
    images, _ = cache.case_volume(cid)
    probs = whole_volume_probabilities(model, images, batch_size, channels_last)
    return whole_volume_restore(probs, cache.meta["config"]["dataset"], cache.cases[cid])


def whole_volume_evaluate(model, cache, case_ids, *, empty=None, batch_size: int = 16,
                          channels_last: bool = True) -> list[dict]:
    """Sequential, whole-volume evaluation: predict, restore, read the case (image and label), score."""
    dataset = cache.meta["config"]["dataset"]
    cases = {c.case_id: c for c in find_cases(dataset, cache.meta["root"])[0]}
    facts = DATASETS[dataset]
    acc = MetricsAccumulator(("dice", "hd95"), regions=facts.region_set,
                             empty=facts.empty if empty is None else empty, scheme=facts.label_scheme)
    for cid in case_ids:
        pred = whole_volume_labels(model, cache, cid, batch_size, channels_last)
        ref = read_case(cases[cid]).label
        acc(pred, ref, case=cid, spacing=tuple(cache.cases[cid]["spacing"]))
    return [{k: r[k] for k in ("case", "region", "metric", "value", "ref_empty", "pred_empty")}
            for r in acc.rows(nan_as_none=True)]
