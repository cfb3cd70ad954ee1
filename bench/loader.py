"""Feeding the training loop: the batch order, the DataLoader, and the pre-loaded training set.

**Batch order.** Epoch ``e`` of a run seeded ``s`` visits the ``n`` training items in the order
``numpy.random.default_rng([s mod 2**64, e]).permutation(n)``, cut into batches of
``batch_size``. When there is more than one batch the last, incomplete one is dropped, so every
step sees the same batch shape (CUDA graphs need it); a set no larger than one batch is one
batch. The order depends on the seed and the epoch only: not on the number of workers, on
whether the set is pre-loaded, or on how far an earlier epoch got.

**Two feeds** give the same batches in that order, as device tensors (images in channels-last
memory format when asked):

- :class:`LoaderFeed` reads through a ``DataLoader``: ``workers`` processes (``None``: 0 on the
  CPU, ``min(4, cores)`` on CUDA), forked on Linux (the dataset may hold memory maps that must
  be shared, not pickled) and kept from one epoch to the next, which they read ahead into
  without a pause; on CUDA pinned host memory, and each batch copied with ``non_blocking`` on a
  side stream while the previous one is computed.
- :class:`PreloadedFeed` reads the whole training set once (:func:`load_all`) into device tensors,
  images as float16 and labels as uint8 where that is exact (else in the dataset's dtypes), and
  gathers each batch by index on the device, converted back to the dataset's dtypes: the values
  are bitwise those the loader gives.

**Preload decision** (``preload``): ``"never"``; ``"always"``: on any device, the CPU included,
without a size check; ``"auto"``: on CUDA when the set's size as stored is at most
:data:`PRELOAD_SHARE` of the device memory free at that moment (the rest is left for
activations, optimizer state and workspaces), never on the CPU.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import sys
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

log = logging.getLogger(__name__)

#: the choices of ``TrainConfig.preload``
PRELOAD = ("auto", "always", "never")
#: "auto" pre-loads when the stored set takes at most this share of the free device memory
PRELOAD_SHARE = 0.5
#: items per read while pre-loading
READ_BATCH = 256
#: how a dataset dtype is stored when pre-loaded, where the values allow it exactly
COMPACT = {torch.float32: torch.float16, torch.int64: torch.uint8, torch.int32: torch.uint8,
           torch.int16: torch.uint8}
MB = 2**20

Batch = tuple[torch.Tensor, torch.Tensor]


def is_cuda(device: str | torch.device) -> bool:
    return torch.device(device).type == "cuda"


def cpu_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int | None, device: str | torch.device) -> int:
    """Loader processes: ``workers`` if given, else 0 on the CPU and ``min(4, cores)`` on CUDA."""
    if workers is not None:
        return workers
    return min(4, cpu_cores()) if is_cuda(device) else 0


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The visiting order of epoch ``epoch`` (see the module docstring)."""
    return np.random.default_rng([seed % 2**64, epoch]).permutation(n)


class ShuffledBatches(Sampler[list[int]]):
    """The batches of one epoch in the documented order; :meth:`set_epoch` picks the epoch."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0
        self.drop_last = n > batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.n == 0:
            return 0
        return self.n // self.batch_size if self.drop_last else 1

    def bounds(self) -> list[tuple[int, int]]:
        """``(start, stop)`` of each batch in the epoch's order."""
        size = self.batch_size if self.drop_last else self.n
        return [(k * size, (k + 1) * size) for k in range(len(self))]

    def order(self, epoch: int | None = None) -> np.ndarray:
        return epoch_order(self.n, self.seed, self.epoch if epoch is None else epoch)

    def of_epoch(self, epoch: int) -> list[list[int]]:
        order = self.order(epoch)
        return [order[start:stop].tolist() for start, stop in self.bounds()]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.of_epoch(self.epoch))


class EpochStream(Sampler[list[int]]):
    """The batches of epoch ``start``, then of ``start + 1``, ... without end: a batch sampler
    that lets the loader's workers read the next epoch's first batches while this one ends."""

    def __init__(self, batches: ShuffledBatches, start: int = 1) -> None:
        self.batches, self.start = batches, start

    def __iter__(self) -> Iterator[list[int]]:
        if len(self.batches) == 0:
            return
        epoch = self.start
        while True:
            yield from self.batches.of_epoch(epoch)
            epoch += 1


def make_loader(dataset: Dataset, *, workers: int, pin_memory: bool, batch_sampler: Sampler | None = None,
                batch_size: int = 1, persistent: bool = True, seed: int = 0) -> DataLoader:
    """A ``DataLoader`` in the given order (``batch_sampler``, else ``batch_size`` in item order).

    Workers are persistent (when ``persistent``) and forked on Linux. A private generator seeds
    the workers, so reading never draws from torch's global random state.
    """
    kwargs = {}
    if workers > 0:
        kwargs["persistent_workers"] = persistent
        if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
            kwargs["multiprocessing_context"] = "fork"
    if batch_sampler is not None:
        kwargs["batch_sampler"] = batch_sampler
    else:
        kwargs.update(batch_size=batch_size, shuffle=False)
    return DataLoader(dataset, num_workers=workers, pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(seed), **kwargs)


def to_device(image: torch.Tensor, label: torch.Tensor, device: str | torch.device, channels_last: bool,
              non_blocking: bool = False) -> Batch:
    image = image.to(device, non_blocking=non_blocking)
    label = label.to(device, non_blocking=non_blocking)
    if channels_last and image.dim() == 4:
        image = image.contiguous(memory_format=torch.channels_last)
    return image, label


def cuda_prefetch(batches: Iterable[Batch], device: str | torch.device,
                  channels_last: bool) -> Iterator[Batch]:
    """Copy each (pinned) batch to ``device`` on a side stream while the previous one is computed.

    The current stream waits for a batch's copy before it is handed out, and the tensors are
    recorded on it so the caching allocator does not reuse their memory too early.
    """
    device = torch.device(device)
    main = torch.cuda.current_stream(device)
    side = torch.cuda.Stream(device)

    def copy(batch: Batch) -> Batch:
        with torch.cuda.stream(side):
            return tuple(t.to(device, non_blocking=True) for t in batch)

    def ready(batch: Batch) -> Batch:
        main.wait_stream(side)
        for t in batch:
            t.record_stream(main)
        image, label = batch
        if channels_last and image.dim() == 4:
            image = image.contiguous(memory_format=torch.channels_last)
        return image, label

    ahead = None
    for batch in batches:
        current = ready(ahead) if ahead is not None else None  # wait for the earlier copy only
        ahead = copy(batch)
        if current is not None:
            yield current
    if ahead is not None:
        yield ready(ahead)


class LoaderFeed:
    """Batches read through a ``DataLoader`` (see the module docstring).

    One loader iterator runs through the epochs one after another (:class:`EpochStream`), so
    there is no pause at an epoch's start; asking for an epoch out of turn, or after leaving the
    previous one early, restarts it at that epoch.
    """

    kind = "loader"

    def __init__(self, dataset: Dataset, batches: ShuffledBatches, device: str | torch.device, workers: int,
                 channels_last: bool) -> None:
        self.batches, self.device, self.channels_last = batches, device, channels_last
        self.cuda = is_cuda(device)
        self.workers = workers
        self.stream = EpochStream(batches)
        self.loader = make_loader(dataset, workers=workers, pin_memory=self.cuda, batch_sampler=self.stream,
                                  seed=batches.seed)
        self._iterator = None
        self._next_epoch = None  # the epoch the iterator stands at, when at an epoch's start

    def __len__(self) -> int:
        return len(self.batches)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        if self._iterator is None or self._next_epoch != epoch:
            self.stream.start = epoch
            self._iterator = iter(self.loader)
        self._next_epoch = None
        batches = itertools.islice(self._iterator, len(self.batches))
        if self.cuda:
            yield from cuda_prefetch(batches, self.device, self.channels_last)
        else:
            for image, label in batches:
                yield to_device(image, label, self.device, self.channels_last)
        self._next_epoch = epoch + 1

    @property
    def settings(self) -> dict:
        return {"feed": self.kind, "workers": self.workers, "pin_memory": self.cuda}

    def close(self) -> None:
        """Let the workers go (they end with the loader's last reference)."""
        self._iterator = self.loader = None


class _Column:
    """One pre-loaded tensor: stored compactly while that is exact, handed out in ``dtype``."""

    def __init__(self, n: int, example: torch.Tensor, device: str | torch.device) -> None:
        self.dtype = example.dtype
        self.data = torch.empty((n, *example.shape), dtype=COMPACT.get(example.dtype, example.dtype),
                                device=device)

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()

    def put(self, start: int, chunk: torch.Tensor) -> None:
        if chunk.dtype != self.dtype or chunk.shape[1:] != self.data.shape[1:]:
            raise ValueError(f"dataset items differ: {tuple(chunk.shape[1:])} {chunk.dtype} after "
                             f"{tuple(self.data.shape[1:])} {self.dtype}")
        if self.data.dtype != self.dtype and not _exact(chunk, self.data.dtype):
            self.data = self.data.to(self.dtype)  # what is stored so far was exact
        self.data[start:start + len(chunk)] = chunk

    def take(self, index: torch.Tensor) -> torch.Tensor:
        return self.data.index_select(0, index).to(self.dtype)


def _exact(chunk: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether ``chunk`` survives a round trip through ``dtype`` unchanged."""
    if chunk.numel() == 0:
        return True
    if dtype == torch.uint8:
        return bool((chunk.min() >= 0) & (chunk.max() <= 255))
    return torch.equal(chunk.to(dtype).to(chunk.dtype), chunk)


class Preloaded:
    """A whole dataset as device tensors; ``take(index)`` gathers items like a loader batch."""

    def __init__(self, images: _Column, labels: _Column) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images.data)

    @property
    def nbytes(self) -> int:
        return self.images.nbytes + self.labels.nbytes

    @property
    def device(self) -> torch.device:
        return self.images.data.device

    def take(self, index: torch.Tensor) -> Batch:
        return self.images.take(index), self.labels.take(index)


def stored_bytes(dataset: Dataset) -> int:
    """Bytes the pre-loaded set takes at the compact dtypes (its size if every value fits them)."""
    image, label = (torch.as_tensor(t) for t in dataset[0])
    per_item = sum(t.numel() * torch.empty(0, dtype=COMPACT.get(t.dtype, t.dtype)).element_size()
                   for t in (image, label))
    return len(dataset) * per_item


def load_all(dataset: Dataset, device: str | torch.device, *, workers: int = 0,
             limit: int | None = None) -> Preloaded | None:
    """Read ``dataset`` (items ``(image, label)``) once into tensors on ``device``.

    Returns None, with nothing kept on the device, when ``limit`` (bytes) is given and the set
    as stored exceeds it (a value that is not exact in the compact dtype makes its column
    full-size) or the device runs out of memory while loading.
    """
    n = len(dataset)
    if n == 0:
        raise ValueError("cannot pre-load an empty dataset")
    cuda = is_cuda(device)
    if limit is not None and stored_bytes(dataset) > limit:
        return None
    try:
        store = _fill(dataset, device, workers, limit)
    except torch.cuda.OutOfMemoryError:
        if limit is None:
            raise
        store = None
    if store is None and cuda:
        torch.cuda.empty_cache()  # give a dropped store's memory back at once
    return store


def _fill(dataset: Dataset, device: str | torch.device, workers: int, limit: int | None) -> Preloaded | None:
    cuda = is_cuda(device)
    image, label = (torch.as_tensor(t) for t in dataset[0])
    store = Preloaded(_Column(len(dataset), image, device), _Column(len(dataset), label, device))
    loader = make_loader(dataset, workers=workers, pin_memory=cuda, batch_size=READ_BATCH, persistent=False)
    start = 0
    for images, labels in loader:
        images, labels = to_device(images, labels, device, False, non_blocking=cuda)
        store.images.put(start, images)
        store.labels.put(start, labels)
        start += len(images)
        if limit is not None and store.nbytes > limit:
            return None
    if start != len(dataset):
        raise ValueError(f"the dataset gave {start} items, its length is {len(dataset)}")
    return store


class PreloadedFeed:
    """Batches gathered from a :class:`Preloaded` set on its device (see the module docstring)."""

    kind = "preloaded"

    def __init__(self, store: Preloaded, batches: ShuffledBatches, channels_last: bool) -> None:
        if len(store) != batches.n:
            raise ValueError(f"pre-loaded set has {len(store)} items, the batch order {batches.n}")
        self.store, self.batches, self.channels_last = store, batches, channels_last

    def __len__(self) -> int:
        return len(self.batches)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        order = torch.from_numpy(self.batches.order(epoch)).to(self.store.device)
        for start, stop in self.batches.bounds():
            image, label = self.store.take(order[start:stop])
            if self.channels_last and image.dim() == 4:
                image = image.contiguous(memory_format=torch.channels_last)
            yield image, label

    @property
    def settings(self) -> dict:
        return {"feed": self.kind, "workers": 0, "pin_memory": False,
                "preloaded_mb": round(self.store.nbytes / MB, 3)}

    def close(self) -> None:
        self.store = None


def make_feed(dataset: Dataset, *, batch_size: int, seed: int, device: str | torch.device,
              workers: int | None = None, preload: str = "auto",
              channels_last: bool = False) -> LoaderFeed | PreloadedFeed:
    """The feed of a training run (see the module docstring for the order and the choice)."""
    if preload not in PRELOAD:
        raise ValueError(f"preload must be one of {', '.join(PRELOAD)}, got {preload!r}")
    if len(dataset) == 0:
        raise ValueError("the training set is empty")
    workers = resolve_workers(workers, device)
    batches = ShuffledBatches(len(dataset), batch_size, seed)
    cuda = is_cuda(device)
    if preload == "always" or (preload == "auto" and cuda):
        limit = None
        if preload == "auto":
            limit = int(PRELOAD_SHARE * torch.cuda.mem_get_info(torch.device(device))[0])
        store = load_all(dataset, device, workers=workers, limit=limit)
        if store is not None:
            log.info("training set pre-loaded on %s: %d items, %.0f MiB", device, len(store),
                     store.nbytes / MB)
            return PreloadedFeed(store, batches, channels_last)
        log.info("training set (about %.0f MiB) exceeds %.0f MiB (%.0f%% of the free memory of %s); "
                 "reading it through the loader", stored_bytes(dataset) / MB, limit / MB,
                 100 * PRELOAD_SHARE, device)
    return LoaderFeed(dataset, batches, device, workers, channels_last)
