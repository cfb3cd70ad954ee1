"""Feeding the training loop: the batch order, loader and pre-loaded feeds, compact storage."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from lfubench.bench import loader as L
from lfubench.bench.loader import (
    LoaderFeed,
    PreloadedFeed,
    ShuffledBatches,
    epoch_order,
    load_all,
    make_feed,
    resolve_workers,
    stored_bytes,
)

CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason="needs a CUDA GPU (none visible to torch here)")


class Slices(Dataset):
    """Like the pipeline's CacheSlices: numpy-backed float32 CxSxS images (fp16-exact values, as
    a float16 cache gives) and int64 SxS labels."""

    def __init__(self, n: int, size: int = 16, channels: int = 3, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.images = rng.standard_normal((n, channels, size, size)).astype(np.float16).astype(np.float32)
        self.labels = rng.integers(0, 3, (n, size, size)).astype(np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return torch.from_numpy(self.images[i]), torch.from_numpy(self.labels[i])


def _epochs(feed, epochs=(1, 2, 3)):
    return [[(x.clone(), y.clone()) for x, y in feed.epoch(e)] for e in epochs]


def _same(a, b) -> bool:
    """Same epochs of the same batches: equal values, equal dtypes."""
    def equal(p, q):
        return all(torch.equal(s, t) and s.dtype == t.dtype for s, t in zip(p, q, strict=True))

    return [len(e) for e in a] == [len(e) for e in b] and all(
        equal(p, q) for ea, eb in zip(a, b, strict=True) for p, q in zip(ea, eb, strict=True))


def test_the_batch_order_depends_on_seed_and_epoch_only():
    assert np.array_equal(epoch_order(10, 0, 1), epoch_order(10, 0, 1))
    assert not np.array_equal(epoch_order(50, 0, 1), epoch_order(50, 0, 2))
    assert not np.array_equal(epoch_order(50, 0, 1), epoch_order(50, 1, 1))
    assert sorted(epoch_order(50, -3, 7)) == list(range(50))  # negative seeds are fine
    batches = ShuffledBatches(10, 4, seed=5)
    batches.set_epoch(2)
    order = epoch_order(10, 5, 2)
    assert list(batches) == [order[:4].tolist(), order[4:8].tolist()]  # the incomplete batch is dropped
    assert len(batches) == 2 and batches.drop_last
    small = ShuffledBatches(3, 4, seed=5)  # no larger than one batch: one batch of all
    assert len(small) == 1 and [sorted(b) for b in small] == [[0, 1, 2]]
    assert len(ShuffledBatches(0, 4, seed=0)) == 0
    with pytest.raises(ValueError, match="batch size"):
        ShuffledBatches(3, 0, seed=0)


def test_workers_default_to_none_on_the_cpu_and_a_few_on_cuda():
    assert resolve_workers(None, "cpu") == 0
    assert resolve_workers(None, "cuda") == min(4, L.cpu_cores())
    assert resolve_workers(3, "cpu") == 3 and resolve_workers(0, "cuda:0") == 0


def test_loader_with_workers_gives_the_batches_of_the_loader_without():
    """Persistent workers would shift DataLoader's own shuffling from the second epoch on; the
    order here does not depend on them, nor on an epoch left early."""
    data = Slices(21)
    plain = LoaderFeed(data, ShuffledBatches(21, 4, seed=1), "cpu", 0, channels_last=False)
    forked = LoaderFeed(data, ShuffledBatches(21, 4, seed=1), "cpu", 2, channels_last=False)
    try:
        next(iter(forked.epoch(1)))  # an epoch left after one batch
        assert _same(_epochs(plain), _epochs(forked))  # epochs 1, 2, 3 in turn: one loader iterator
        assert _same(_epochs(plain, [6, 5]), _epochs(forked, [6, 5]))  # out of turn: restarted
        assert plain.settings == {"feed": "loader", "workers": 0, "pin_memory": False}
    finally:
        forked.close()


def test_preloaded_feed_gives_the_loaders_batches_bitwise():
    data = Slices(21)
    loader = LoaderFeed(data, ShuffledBatches(21, 4, seed=1), "cpu", 0, channels_last=True)
    store = load_all(data, "cpu")
    pre = PreloadedFeed(store, ShuffledBatches(21, 4, seed=1), channels_last=True)
    a, b = _epochs(loader), _epochs(pre)
    assert _same(a, b)
    x, y = b[0][0]
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.is_contiguous(memory_format=torch.channels_last)
    # fp16-exact images and small labels are stored compactly: 2 + 1 bytes a pixel instead of 12 + 8
    assert store.images.data.dtype == torch.float16 and store.labels.data.dtype == torch.uint8
    assert store.nbytes == stored_bytes(data) == 21 * (3 * 16 * 16 * 2 + 16 * 16)


def test_values_a_compact_dtype_cannot_hold_are_stored_in_full(monkeypatch):
    monkeypatch.setattr(L, "READ_BATCH", 4)  # the odd values come after compact chunks
    images = torch.zeros(10, 1, 4, 4)
    images[9, 0, 0, 0] = 1 / 3  # not a float16 value
    labels = torch.zeros(10, 4, 4, dtype=torch.int64)
    labels[7, 1, 1] = 300
    store = load_all(TensorDataset(images, labels), "cpu")
    assert store.images.data.dtype == torch.float32 and store.labels.data.dtype == torch.int64
    x, y = store.take(torch.arange(10))
    assert torch.equal(x, images) and torch.equal(y, labels)
    negative = torch.full((4, 4, 4), -1, dtype=torch.int64)  # an ignore label
    store = load_all(TensorDataset(torch.zeros(4, 1, 4, 4), negative), "cpu")
    assert torch.equal(store.take(torch.arange(4))[1], negative)


def test_a_set_over_the_limit_is_not_preloaded(monkeypatch):
    data = Slices(8)
    need = stored_bytes(data)
    assert load_all(data, "cpu", limit=need - 1) is None
    assert load_all(data, "cpu", limit=need) is not None
    monkeypatch.setattr(L, "READ_BATCH", 4)
    images = torch.zeros(8, 1, 4, 4)
    images[-1, 0, 0, 0] = 1 / 3  # found late: the images column doubles and passes the limit
    odd = TensorDataset(images, torch.zeros(8, 4, 4, dtype=torch.int64))
    assert load_all(odd, "cpu", limit=stored_bytes(odd)) is None


def test_make_feed_chooses_by_the_preload_setting():
    data = Slices(9)
    assert isinstance(make_feed(data, batch_size=4, seed=0, device="cpu"), LoaderFeed)  # auto: never on CPU
    assert isinstance(make_feed(data, batch_size=4, seed=0, device="cpu", preload="never"), LoaderFeed)
    feed = make_feed(data, batch_size=4, seed=0, device="cpu", preload="always")
    assert isinstance(feed, PreloadedFeed) and len(feed) == 2
    assert feed.settings["feed"] == "preloaded" and feed.settings["preloaded_mb"] > 0
    with pytest.raises(ValueError, match="preload must be one of auto, always, never"):
        make_feed(data, batch_size=4, seed=0, device="cpu", preload="sometimes")
    with pytest.raises(ValueError, match="training set is empty"):
        make_feed(Slices(0), batch_size=4, seed=0, device="cpu")


@CUDA
def test_cuda_loader_pins_prefetches_and_matches_the_cpu_batches():
    data = Slices(21)
    cpu = LoaderFeed(data, ShuffledBatches(21, 4, seed=1), "cpu", 0, channels_last=True)
    gpu = LoaderFeed(data, ShuffledBatches(21, 4, seed=1), "cuda", 2, channels_last=True)
    try:
        assert gpu.settings == {"feed": "loader", "workers": 2, "pin_memory": True}
        a = _epochs(cpu)
        b = [[(x.cpu(), y.cpu()) for x, y in epoch] for epoch in _epochs(gpu)]
        assert _same(a, b)
        x, _ = next(iter(gpu.epoch(4)))
        assert x.is_cuda and x.is_contiguous(memory_format=torch.channels_last)
    finally:
        gpu.close()


@CUDA
def test_cuda_auto_preloads_what_fits_and_reads_the_rest():
    data = Slices(21)
    feed = make_feed(data, batch_size=4, seed=1, device="cuda", workers=0)
    assert isinstance(feed, PreloadedFeed) and feed.store.device.type == "cuda"
    cpu = LoaderFeed(data, ShuffledBatches(21, 4, seed=1), "cpu", 0, channels_last=False)
    assert _same(_epochs(cpu), [[(x.cpu(), y.cpu()) for x, y in e] for e in _epochs(feed)])
    free = torch.cuda.mem_get_info()[0]
    assert load_all(data, "cuda", limit=stored_bytes(data) - 1) is None
    assert torch.cuda.mem_get_info()[0] >= free - 2**20  # nothing kept on the device
