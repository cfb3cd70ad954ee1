"""Evaluation's memory is bounded by the case's label volumes and the metrics, not by the network's output.

Two LiTS-format cases of 160 x 128 x 128 voxels are cached at 256, larger than their in-plane size,
so that the float32 arrays the whole-volume path held on the network grid -- the probabilities and
the network inputs of every slice of a case, ``(classes + in_channels) * Z * S * S * 4`` bytes, 240
MiB here -- stand out from what any evaluation must hold on the original grid. Streaming holds a few
slice batches of them.

Two measures, both as the peak above what was allocated before the call:

- ``tracemalloc`` sees every numpy array (the label volumes, the reference, the metrics' masks and
  temporaries), deterministically, but not torch's CPU tensors;
- the resident set size (``VmHWM`` reset through ``/proc/self/clear_refs``, :class:`bench.latency.PeakRSS`,
  after handing the C heap's free memory back) sees everything, torch included, less exactly: each
  thread's heap keeps its own freed memory, and reused memory reads low. Arrays above glibc's largest
  mmap threshold (32 MiB) are always fresh pages: the whole-volume path's float32 arrays are.

The bounds are made of what evaluation must hold: the metrics' own peak on one case (measured here on
the same prediction and reference), the ``uint8`` label volumes in flight (the prediction being
scored, its reference, the next case's prediction), a few slice batches of float32, room for the
heaps; the whole-volume path exceeds them.
"""

from __future__ import annotations

import ctypes
import gc
import tracemalloc

import numpy as np
import pytest
import torch

from lfubench.bench.data import PreprocessConfig, find_cases, open_cache, prepare_cache, read_label
from lfubench.bench.datasets import DATASETS
from lfubench.bench.evaluate import evaluate_cases, predict_labels
from lfubench.bench.latency import PeakRSS
from lfubench.bench.metrics import MetricsAccumulator

from .evaluate_helpers import (
    LITS_HU,
    LITS_MODEL_LEVELS,
    LevelLookup,
    save_oriented,
    shifted,
    whole_volume_evaluate,
)

SHAPE = (160, 128, 128)  # z, y, x
SPACING = (2.0, 0.8, 0.8)
SIZE = 256
BATCH = 8
CASES = ("0", "1")
MB = 2**20


def planted() -> tuple[np.ndarray, np.ndarray]:
    """A liver with a tumor (the reference) and the same shifted a few voxels (the prediction)."""
    z, y, x = np.ogrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    ref = np.zeros(SHAPE, np.uint8)
    ref[((z - 80) / 60.0) ** 2 + ((y - 60) / 35.0) ** 2 + ((x - 55) / 40.0) ** 2 < 1] = 1
    ref[((z - 75) / 12.0) ** 2 + ((y - 55) / 8.0) ** 2 + ((x - 50) / 10.0) ** 2 < 1] = 2
    return ref, shifted(shifted(ref, 1, 3), 2, -2)


@pytest.fixture(scope="module")
def big_lits(tmp_path_factory):
    root = tmp_path_factory.mktemp("lits_big")
    ref, pred = planted()
    hu = np.array([LITS_HU[k] for k in range(3)], np.int16)[pred]  # the lookup model predicts `pred`
    for cid in CASES:
        save_oriented(root / "Training Batch 1" / f"volume-{cid}.nii", hu, SPACING, "LPS")
        save_oriented(root / "Training Batch 1" / f"segmentation-{cid}.nii", ref, SPACING, "LPS")
    cache = open_cache(prepare_cache("lits", root, tmp_path_factory.mktemp("lits_big_cache"),
                                     PreprocessConfig("lits", size=SIZE)))
    return root, cache


def traced_peak(fn, *args, **kwargs) -> tuple[object, int]:
    """``fn(...)`` and the peak of traced (Python and numpy) memory above what was traced before, bytes."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = fn(*args, **kwargs)
        return out, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _trim() -> None:
    """Give the C heap's free memory back to the system (glibc), so that the next peak counts new pages."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss_peak(fn, *args, **kwargs) -> int:
    """The peak resident set size during ``fn(...)`` above the size before it, bytes."""
    gc.collect()
    _trim()
    rss = PeakRSS().start()
    fn(*args, **kwargs)
    peak = rss.stop()
    if not rss.method.startswith("VmHWM"):
        pytest.skip(f"no resettable peak RSS here ({rss.method})")
    return int((peak - rss.start_mb) * MB)


@pytest.mark.slow  # a few seconds, and the whole-volume reference takes half a GB
def test_evaluation_memory_is_bounded_by_the_case_not_by_the_probabilities(big_lits):
    root, cache = big_lits
    facts = DATASETS["lits"]
    model = LevelLookup(LITS_MODEL_LEVELS, channel=1).to(memory_format=torch.channels_last)
    case = {c.case_id: c for c in find_cases("lits", root)[0]}["0"]
    voxels = int(np.prod(SHAPE))
    whole_f32 = (facts.num_classes + cache.in_channels) * SHAPE[0] * SIZE * SIZE * 4  # per case
    batch_f32 = (facts.num_classes + cache.in_channels) * BATCH * SIZE * SIZE * 4

    expected = whole_volume_evaluate(model, cache, ["0"], batch_size=BATCH)  # also warms every path up

    # what the background thread does, one at a time: read a reference, score a case
    pred = predict_labels(model, cache, "0", batch_size=BATCH)
    ref, read_own = traced_peak(read_label, case)
    acc = MetricsAccumulator(regions=facts.region_set, empty=facts.empty, scheme=facts.label_scheme)
    _, metrics_own = traced_peak(acc, pred, ref, case="0", spacing=SPACING)
    del pred, ref, acc

    # numpy: the larger of the two, three uint8 volumes (the case scored, its reference, the next
    # prediction) and a batch's float16 slices read from the cache (3 MiB) with small things
    rows, numpy_peak = traced_peak(evaluate_cases, model, cache, list(CASES), batch_size=BATCH)
    numpy_bound = max(metrics_own, read_own) + 3 * voxels + 8 * MB
    assert rows[:4] == expected and rows[4:] == [dict(r, case="1") for r in expected]
    assert 0 < rows[0]["value"] < 1  # a real prediction: shifted, not perfect

    # everything: the above, a few slice batches of float32 (a batch's inputs and probabilities, the
    # forward's temporaries), and room for the C heaps of two threads (each keeps its own free memory)
    rss_new = rss_peak(evaluate_cases, model, cache, list(CASES), batch_size=BATCH)
    rss_bound = numpy_bound + 6 * batch_f32 + 64 * MB
    rss_old = rss_peak(whole_volume_evaluate, model, cache, ["0"], batch_size=BATCH)

    report = (f"traced peak {numpy_peak / MB:.1f} MiB (bound {numpy_bound / MB:.1f}; metrics alone "
              f"{metrics_own / MB:.1f}, reading alone {read_own / MB:.1f}); "
              f"RSS peak {rss_new / MB:.1f} MiB (bound {rss_bound / MB:.1f}); "
              f"whole-volume path: RSS peak {rss_old / MB:.1f} MiB, its float32 arrays {whole_f32 / MB:.1f} "
              f"MiB; probabilities on the original grid {facts.num_classes * voxels * 4 / MB:.1f} MiB")
    print(report)
    assert numpy_peak <= numpy_bound, report
    assert rss_new <= rss_bound, report
    assert rss_bound < whole_f32 <= rss_old, report
