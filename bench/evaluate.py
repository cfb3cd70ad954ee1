"""Evaluation: predict every slice of each test volume, put the prediction back on the case's
original voxel grid, and score it in 3D, in mm, against the original label file.

- Back onto the grid by the dataset's :meth:`~bench.datasets.Dataset.restore_slices` (LiTS: the
  softmax probabilities of each slice are resized bilinearly from the network size back to the
  original in-plane size before the arg-max; BraTS: the arg-max of each cropped slice is pasted
  back at the crop offset, voxels outside the crop are background).
- Scored as the dataset's regions (:attr:`~bench.datasets.Dataset.region_set`: LiTS liver
  (label >= 1) and tumor (label 2); BraTS WT, TC, ET from internal labels 1 necrotic/non-enhancing
  core, 2 edema, 3 enhancing).
- Metrics: ``bench.metrics`` (medpy's definitions), voxel spacing of the original header,
  surfaces with connectivity 1, the empty-mask rule of the caller, by default the dataset's
  (:attr:`bench.datasets.Dataset.empty`: LiTS ``diagonal``: one mask empty -> Dice 0, HD95 = the
  diagonal of the case's volume in mm; BraTS ``brats``: one mask empty -> Dice 0, HD95
  373.13 mm; both rules: both empty -> Dice 1, HD95 0).

Memory is bounded by the case, not by the network's output: a case is predicted one slice batch
at a time, straight from the cache's memory-mapped slices, and each batch's probabilities are
turned into labels (resized and arg-maxed, or arg-maxed and pasted) into one preallocated
``uint8`` volume on the original grid, then dropped. Besides that volume and the reference label
(read alone, slab by slab, without the image), evaluation holds a batch of inputs and a batch of
probabilities at a time; the peak beyond that is the metrics' own.

While case k+1 is being predicted, case k's reference is read and its metrics computed in one
background thread (numpy and scipy release the GIL in their heavy parts); cases are scored in
order by one accumulator, so the rows are those of a sequential run.

The model is a ``torch.nn.Module`` or a :data:`Predictor`: any function from a batch of network
inputs to logits, such as a deployment runtime's session (``bench.runtimes.Session.run``; the int8
models of :func:`bench.quantize.int8_predictors`). Both go through the same prediction, restoration
and scoring; only the forward differs (a predictor gets ``float32`` NumPy inputs and ignores
``device``, ``channels_last`` and ``precision``).

Rows are JSON-able: ``{"case", "region", "metric", "value", "ref_empty", "pred_empty"}`` (NaN
written as None; the flags say whether the reference or the prediction has no voxel of the
region).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

from .data import SliceCache, find_cases, read_label
from .data.parallel import progress_bar
from .datasets import get_dataset
from .errors import OptionError
from .latency import PRECISIONS
from .metrics import MetricsAccumulator

#: a model as a function: network inputs ``(B, C, S, S)`` (``float32`` NumPy) -> logits
#: ``(B, classes, S, S)`` (a NumPy array or a tensor)
Predictor = Callable[[np.ndarray], "np.ndarray | torch.Tensor"]


def _autocast(device: torch.device, precision: str):
    """``torch.autocast`` for ``fp16``/``bf16`` on CUDA; nothing for ``fp32`` or off CUDA."""
    dtype = PRECISIONS[precision]
    if dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=dtype)


@torch.no_grad()
def batch_probabilities(model: nn.Module | Predictor, x: np.ndarray, device: str | torch.device = "cpu",
                        channels_last: bool = True, precision: str = "fp32") -> torch.Tensor:
    """Softmax probabilities ``(B, classes, S, S)`` (``float32``, on the CPU) of one batch of
    network inputs ``x`` ``(B, C, S, S)``; ``precision`` as in :func:`evaluate_cases`. A
    :data:`Predictor` gets ``x`` as contiguous ``float32`` and the other settings are not its."""
    if not isinstance(model, nn.Module):
        logits = torch.as_tensor(np.asarray(model(np.ascontiguousarray(x, dtype=np.float32))))
        return logits.float().softmax(1).cpu()
    device = torch.device(device)
    t = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    if channels_last:
        t = t.to(memory_format=torch.channels_last)
    with _autocast(device, precision):
        logits = model(t)
    return logits.float().softmax(1).cpu()


def restore_slices(probs: torch.Tensor, kind: str, info: dict, out: np.ndarray, start: int) -> None:
    """Write the labels of slices ``start .. start + len(probs)`` of a case into ``out``, by the rule
    of dataset ``kind`` (:meth:`bench.datasets.Dataset.restore_slices`).

    Args:
        probs: softmax probabilities ``(B, classes, S, S)`` of consecutive slices.
        kind: the dataset's kind: ``"lits"`` (resize bilinearly to the original in-plane size, then
            arg-max) or ``"brats"`` (arg-max, then paste at the crop offset, clipped to the grid).
        info: the case's cache entry (``orig_shape``, and ``crop_offset`` for BraTS).
        out: the case's label volume ``(Z, Y, X)`` ``uint8`` on the original grid; it must be zero
            where nothing is written (as :func:`new_label_volume` makes it).
        start: the index of the first slice of ``probs`` in the case.
    """
    get_dataset(kind).restore_slices(probs, info, out, start)


def new_label_volume(info: dict) -> np.ndarray:
    """An all-background ``uint8`` label volume on the case's original grid."""
    return np.zeros(tuple(info["orig_shape"]), dtype=np.uint8)


def restore_geometry(probs: torch.Tensor, kind: str, info: dict) -> np.ndarray:
    """The label map ``(Z, Y, X)`` (uint8) on the original grid described by the case's cache
    ``info`` (``orig_shape``, and ``crop_offset`` for BraTS), from the probabilities ``probs``
    ``(Z, classes, S, S)`` of all its slices (:func:`restore_slices` on the whole case)."""
    out = new_label_volume(info)
    restore_slices(probs, kind, info, out, 0)
    return out


def predict_labels(model: nn.Module | Predictor, cache: SliceCache, case_id: str, *, batch_size: int = 16,
                   device: str | torch.device = "cpu", channels_last: bool = True,
                   precision: str = "fp32") -> np.ndarray:
    """The predicted label map ``(Z, Y, X)`` (``uint8``) of one cached case on its original grid.

    Slices are read from the cache, predicted and restored one batch of ``batch_size`` at a time;
    only the label volume grows with the case. Settings as in :func:`evaluate_cases`.
    """
    dataset = get_dataset(cache.kind)
    info = cache.cases[case_id]
    indices = cache.case_indices(case_id)
    out = new_label_volume(info)
    if isinstance(model, nn.Module):
        model.eval()
    for start in range(0, len(indices), batch_size):
        x, _ = cache.read_batch(indices[start:start + batch_size])
        probs = batch_probabilities(model, x, device, channels_last, precision)
        del x
        dataset.restore_slices(probs, info, out, start)
    return out


def evaluate_cases(model: nn.Module | Predictor, cache: SliceCache, case_ids: list[str], *,
                   metrics=("dice", "hd95"), empty: str | None = None, batch_size: int = 16,
                   device: str | torch.device = "cpu", channels_last: bool = True, precision: str = "fp32",
                   progress: bool = False) -> list[dict]:
    """Per-case 3D metrics of ``model`` on ``case_ids``, as tidy JSON-able rows.

    The original labels are read again from the dataset files the cache was built from. Case k's
    reference is read and scored in a background thread while case k+1 is predicted; the rows and
    their order are those of scoring the cases one after the other.

    Args:
        model: returns logits ``(B, classes, S, S)``; put it on ``device`` (and in channels-last
            memory format, if wanted) before calling. Or a :data:`Predictor` (a runtime's session),
            which runs where it runs: ``device``, ``channels_last`` and ``precision`` are not its.
        cache: the prepared cache of the cases.
        case_ids: the cases, scored and reported in this order.
        metrics: names from :data:`bench.metrics.ALL_METRICS`. Default ``("dice", "hd95")``.
        empty: an empty-mask convention of :mod:`bench.metrics` (``"brats"``, ``"diagonal"``,
            ``"nan"``); ``None`` (default) takes the dataset's rule (:attr:`bench.datasets.Dataset.empty`).
        batch_size: slices predicted at once. Default 16.
        device: where the model runs. Default ``"cpu"``.
        channels_last: give the model channels-last inputs. Default True.
        precision: ``"fp32"`` (default), or ``"fp16"`` / ``"bf16"``: the forward runs under
            ``torch.autocast`` on CUDA (weights stay fp32; the softmax and everything after it are
            fp32). On any other device the precision is ignored and the forward runs in fp32.
        progress: show a progress bar over the cases (only in a terminal). Default False.
    """
    if precision not in PRECISIONS:
        raise OptionError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    dataset = get_dataset(cache.kind)
    cases = {c.case_id: c for c in find_cases(dataset.kind, cache.meta["root"])[0]}
    acc = MetricsAccumulator(metrics, regions=dataset.region_set,
                             empty=dataset.empty if empty is None else empty, scheme=dataset.label_scheme)

    def score(cid: str, pred: np.ndarray) -> None:
        acc(pred, read_label(cases[cid]), case=cid, spacing=tuple(cache.cases[cid]["spacing"]))

    bar = progress_bar(len(case_ids), f"evaluate {dataset.kind}", progress, leave=False)
    pending: Future | None = None
    with bar, ThreadPoolExecutor(max_workers=1, thread_name_prefix="lfubench-metrics") as worker:
        for cid in case_ids:
            pred = predict_labels(model, cache, cid, batch_size=batch_size, device=device,
                                  channels_last=channels_last, precision=precision)
            if pending is not None:
                pending.result()  # at most one case in the worker: two predictions in memory at most
                bar.update()
            pending = worker.submit(score, cid, pred)
            del pred
        if pending is not None:
            pending.result()
            bar.update()
    keys = ("case", "region", "metric", "value", "ref_empty", "pred_empty")
    return [{k: r[k] for k in keys} for r in acc.rows(nan_as_none=True)]


#: the test slices kept per case for qualitative figures
OVERLAY_SLICES_PER_CASE = 1


def overlay_slices(model: nn.Module, cache: SliceCache, case_ids: list[str], *,
                   device: str | torch.device = "cpu", channels_last: bool = True,
                   precision: str = "fp32") -> dict[str, np.ndarray]:
    """Test slices at network size for qualitative figures: per case, the slice with the most
    reference foreground (chosen from the reference only, so every model of a dataset shows
    the same slices), with the middle input channel, the reference and the model's arg-max.

    Returns arrays ``case`` (K), ``slice`` (K, the slice's index in its case), ``image``
    (K, S, S float32), ``label`` and ``pred`` (K, S, S uint8 class indices) and ``classes``
    (the names of the class indices).
    """
    cases, slices, images, labels, preds = [], [], [], [], []
    model.eval()
    for cid in case_ids:
        indices = cache.case_indices(cid)
        _, y = cache.read_batch(indices)
        order = np.argsort(-(y > 0).reshape(len(y), -1).sum(1), kind="stable")[:OVERLAY_SLICES_PER_CASE]
        x, y = cache.read_batch(indices[np.sort(order)])
        probs = batch_probabilities(model, x, device, channels_last, precision)
        cases += [cid] * len(order)
        slices += sorted(int(k) for k in order)
        images.append(x[:, x.shape[1] // 2].astype(np.float32))
        labels.append(y.astype(np.uint8))
        preds.append(probs.argmax(1).numpy().astype(np.uint8))
    return {"case": np.array(cases, dtype=str), "slice": np.array(slices, dtype=np.int64),
            "image": np.concatenate(images), "label": np.concatenate(labels), "pred": np.concatenate(preds),
            "classes": np.array(get_dataset(cache.kind).labels, dtype=str)}
