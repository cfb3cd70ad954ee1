"""The preprocessed slice cache: built once per (dataset, preprocessing config), memory-mapped to read.

Format (one folder ``<out>/<kind>-s<size>-<key>/``, ``key`` a hash of the config, the resolved
dataset root, and every input file's name, size and mtime, plus :data:`CACHE_VERSION`):

- ``images.npy``: ``float16`` ``(N, C, S, S)``, all N axial slices of all cases, case after case,
  one channel per image file of a case (LiTS C = 1: windowed CT in [0, 1]; BraTS C = 4: z-scored
  flair, t1, t1ce, t2);
- ``labels.npy``: ``uint8`` ``(N, S, S)``, internal labels (``bench.data.labels``);
- ``slices.npy``: ``int32`` ``(N, 4)``: case index, slice index z, has foreground, has content
  (body / brain);
- ``meta.json``: version, config (the dataset's kind as ``dataset``), dataset root, per case id /
  group / first slice / slice count / the dataset's geometry ``info`` (original shape, spacing,
  in-plane spacing after preprocessing, BraTS crop offset); ``"complete": true``;
- ``splits-s<seed>-t<test>-f<folds>.json`` (:func:`bench.data.splits.write_splits`): case-level
  splits, one file per split setting.

Writing is atomic: everything goes to a hidden ``.tmp-...-<pid>-...`` sibling folder, ``meta.json``
last, and the folder is renamed into place only when complete. A half-written cache (a killed
writer, an exception) is never found under the final name; stale temporary folders whose writer
is gone are removed by the next :func:`prepare_cache`. :func:`open_cache` re-checks shapes and
sizes against ``meta.json`` and refuses anything that does not match.

Cases are prepared one per worker process (``jobs``) and slab by slab: each worker reads its
case, preprocesses a few slices at a time and writes them straight into its own rows of the
memory-mapped ``images.npy`` and ``labels.npy`` (a window mapped per slab), so a process holds
one case's image and labels in their stored dtype plus a slab, however many cases there are.
The files do not depend on the number of jobs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..datasets import get_dataset
from ..errors import LfubenchError
from .layouts import Case, find_cases
from .nifti import DataError, ReadFailure, canonical_shape, load_image, read_dtype
from .parallel import map_cases, progress_bar, resolve_jobs
from .preprocess import PreprocessConfig, preprocess_slabs
from .reader import read_case

log = logging.getLogger(__name__)

CACHE_VERSION = 1
ARRAYS = ("images.npy", "labels.npy", "slices.npy")


def cache_name(cases: list[Case], root: Path, config: PreprocessConfig) -> str:
    """The cache folder name: ``<kind>-s<size>-<12 hex digits of the key>``."""
    files = []
    for case in cases:
        for _, path in case.files():
            st = path.stat() if path.exists() else None
            files.append([case.case_id, case.rel(path), st.st_size if st else -1,
                          st.st_mtime_ns if st else -1])
    key = {"version": CACHE_VERSION, "config": config.to_dict(), "root": str(root), "files": files}
    blob = json.dumps(key, sort_keys=True)
    return f"{config.kind}-s{config.size}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def prepare_cache(kind: str, root: Path | str, out: Path | str, config: PreprocessConfig | None = None,
                  *, force: bool = False, progress: bool = False, jobs: int | None = 1) -> Path:
    """Build (or find) the cache of dataset ``kind`` under ``root`` and return its folder.

    Args:
        kind: the dataset's kind (``"lits"``, ``"brats"``).
        root: the dataset folder (only read).
        out: the folder holding caches; must not be inside ``root``.
        config: preprocessing; default ``PreprocessConfig(kind)``.
        force: rebuild even when a complete cache exists.
        progress: show a progress bar over cases (in a terminal only).
        jobs: worker processes, one case each (default 1: in this process); ``None``: the
            machine's cores, capped by the available memory over :func:`case_memory`. The cache
            files are the same for any number of jobs.

    Raises:
        DataError: a case cannot be read (the message names the case and file).
    """
    root, out = Path(root).resolve(), Path(out).resolve()
    if out == root or root in out.parents:
        raise LfubenchError(f"cache folder {out} is inside the dataset folder {root}; choose another --out "
                            "(nothing is written into a dataset folder)")
    config = config or PreprocessConfig(kind)
    if config.kind != kind:
        raise ValueError(f"config is for {config.kind!r}, not {kind!r}")
    cases, problems = find_cases(kind, root)
    if problems:
        raise DataError(str(problems[0]), problems)
    final = out / cache_name(cases, root, config)
    if not force and _check(final) is None:
        log.info("cache is up to date: %s", final)
        return final
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(out)
    headers = [_header(case) for case in cases]
    counts = [count for count, _ in headers]
    jobs = resolve_jobs(jobs, len(cases), max(memory for _, memory in headers))
    tmp = out / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _write(tmp, root, cases, counts, config, progress, jobs)
        _publish(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("cache written: %s (%d cases, %d slices)", final, len(cases), sum(counts))
    return final


#: memory of one case beyond its image and labels: a slab's work arrays, torch, the interpreter
CASE_OVERHEAD = 768 << 20


def case_memory(shape_zyx, channels: int = 1, itemsize: int = 2) -> int:
    """Estimated peak bytes of preparing one case: its image (``channels`` x ``itemsize`` bytes per
    voxel) and ``uint8`` labels, a slab being read, and :data:`CASE_OVERHEAD`."""
    voxels = int(np.prod(shape_zyx))
    return voxels * (channels * itemsize + 1) + CASE_OVERHEAD


def _header(case: Case) -> tuple[int, int]:
    """Number of canonical axial slices and :func:`case_memory`, from the first image's header."""
    path = next(iter(case.images.values()))
    try:
        img = load_image(path)
        shape = canonical_shape(img)
        itemsize = read_dtype(img).itemsize
    except ReadFailure as err:
        raise DataError(f"case {case.case_id}: {case.rel(path)}: {err}") from err
    return shape[0], case_memory(shape, len(case.images), itemsize)


@dataclass(frozen=True)
class _Task:
    """One case to prepare into rows ``start ... start + count - 1`` of the cache in ``folder``."""

    case: Case
    start: int
    count: int
    config: PreprocessConfig
    folder: Path


class _Rows:
    """Writes rows of an ``.npy`` file through a memory map of just those rows, unmapped after."""

    def __init__(self, path: Path) -> None:
        whole = np.load(path, mmap_mode="r")
        self.path, self.dtype, self.offset = path, whole.dtype, whole.offset
        self.row_bytes = int(np.prod(whole.shape[1:])) * whole.dtype.itemsize
        del whole

    def write(self, row: int, values: np.ndarray) -> None:
        window = np.memmap(self.path, dtype=self.dtype, mode="r+", offset=self.offset + row * self.row_bytes,
                           shape=values.shape)
        window[...] = values
        del window  # unmapped: the pages stay in the page cache, not in this process


def _prepare_case(task: _Task) -> tuple[dict, np.ndarray, np.ndarray]:
    """Read, preprocess and write one case; return its geometry and per-slice foreground / content."""
    case = task.case
    data = read_case(case)
    if data.label.shape[0] != task.count:
        raise DataError(f"case {case.case_id}: {case.rel(next(iter(case.images.values())))}: "
                        f"{data.label.shape[0]} slices read, header says {task.count}")
    images, labels = _Rows(task.folder / "images.npy"), _Rows(task.folder / "labels.npy")
    foreground = np.zeros(task.count, dtype=bool)
    content = np.zeros(task.count, dtype=bool)
    info, slabs = preprocess_slabs(data, task.config)
    for slab in slabs:
        n = len(slab.label)
        images.write(task.start + slab.start, slab.image)
        labels.write(task.start + slab.start, slab.label)
        foreground[slab.start:slab.start + n] = slab.label.reshape(n, -1).any(axis=1)
        content[slab.start:slab.start + n] = slab.content
    return info, foreground, content


def _write(tmp: Path, root: Path, cases: list[Case], counts: list[int], config: PreprocessConfig,
           progress: bool, jobs: int = 1) -> None:
    total, size = sum(counts), config.size
    channels = len(get_dataset(config.kind).channels)
    for name, dtype, shape in (("images.npy", np.float16, (total, channels, size, size)),
                               ("labels.npy", np.uint8, (total, size, size))):
        created = np.lib.format.open_memmap(tmp / name, mode="w+", dtype=dtype, shape=shape)
        del created  # the header and the (sparse) size only; the rows are written case by case
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int)
    tasks = [_Task(case, int(start), count, config, tmp)
             for case, start, count in zip(cases, starts, counts, strict=True)]
    desc = f"prepare {config.kind}" + (f" ({jobs} jobs)" if jobs > 1 else "")
    with progress_bar(len(cases), desc, progress) as bar:
        results = map_cases(_prepare_case, tasks, jobs, bar)
    table = np.zeros((total, 4), dtype=np.int32)
    meta_cases = []
    for k, (task, (info, foreground, content)) in enumerate(zip(tasks, results, strict=True)):
        rows = slice(task.start, task.start + task.count)
        table[rows, 0] = k
        table[rows, 1] = np.arange(task.count)
        table[rows, 2] = foreground
        table[rows, 3] = content
        meta_cases.append({"id": task.case.case_id, "group": task.case.group, "start": task.start,
                           "count": task.count, **info})
    np.save(tmp / "slices.npy", table)
    meta = {"version": CACHE_VERSION, "config": config.to_dict(), "root": str(root), "slices": total,
            "channels": channels, "size": size, "cases": meta_cases, "complete": True}
    for name in ARRAYS:
        _fsync(tmp / name)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    _fsync(tmp / "meta.json")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, final: Path) -> None:
    if final.exists():
        trash = final.with_name(f".tmp-old-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        os.rename(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.rename(tmp, final)
    except OSError:
        if _check(final) is not None:  # the name is taken by something that is not a complete cache
            raise
        log.info("another process published %s first; keeping it", final)
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_stale_tmp(out: Path) -> None:
    for tmp in out.glob(".tmp-*"):
        try:
            pid = int(tmp.name.rsplit("-", 2)[-2])
        except (ValueError, IndexError):
            continue
        if pid == os.getpid() or not _alive(pid):
            log.info("removing an interrupted cache write: %s", tmp)
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check(path: Path) -> str | None:
    """``None`` when ``path`` is a complete cache, else why not."""
    try:
        meta = json.loads((path / "meta.json").read_text())
    except FileNotFoundError:
        return "no meta.json"
    except ValueError as err:
        return f"unreadable meta.json ({err})"
    if meta.get("version") != CACHE_VERSION or meta.get("complete") is not True:
        return "meta.json is from another version or marks an incomplete write"
    n, c, s = meta["slices"], meta["channels"], meta["size"]
    expected = {"images.npy": ((n, c, s, s), np.float16), "labels.npy": ((n, s, s), np.uint8),
                "slices.npy": ((n, 4), np.int32)}
    for name, (shape, dtype) in expected.items():
        try:
            arr = np.load(path / name, mmap_mode="r")
        except (OSError, ValueError) as err:
            return f"{name} is missing or truncated ({err})"
        if arr.shape != shape or arr.dtype != dtype:
            return f"{name} has shape {arr.shape} {arr.dtype}, expected {shape} {np.dtype(dtype)}"
    return None


class SliceCache:
    """Read access to a prepared cache (memory-mapped; safe to share between DataLoader workers).

    ``cache[i]`` returns ``(x, y)``: ``x`` ``float32`` ``(context * C, S, S)`` (LiTS: slices
    i-1, i, i+1 of the same case, edges repeated), ``y`` ``uint8`` ``(S, S)``.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        why = _check(self.path)
        if why is not None:
            raise DataError(f"cache {self.path}: {why}; rebuild it with lfubench data prepare")
        self.meta = json.loads((self.path / "meta.json").read_text())
        self.images = np.load(self.path / "images.npy", mmap_mode="r")
        self.labels = np.load(self.path / "labels.npy", mmap_mode="r")
        self.table = np.load(self.path / "slices.npy")
        self.context = int(self.meta["config"]["context"])
        self.cases = {c["id"]: c for c in self.meta["cases"]}
        starts = np.array([c["start"] for c in self.meta["cases"]], dtype=np.int64)
        counts = np.array([c["count"] for c in self.meta["cases"]], dtype=np.int64)
        self._lo = starts[self.table[:, 0]]
        self._hi = self._lo + counts[self.table[:, 0]] - 1
        self._offsets = np.arange(self.context) - self.context // 2

    def __len__(self) -> int:
        return len(self.table)

    def __reduce__(self):
        """Pickled by its path: a worker process re-opens the memory maps instead of receiving a
        copy of the arrays (DataLoader workers started by ``spawn`` or ``forkserver``)."""
        return (type(self), (self.path,))

    @property
    def kind(self) -> str:
        """The dataset's kind (``meta.json`` holds it as ``config.dataset``)."""
        return self.meta["config"]["dataset"]

    @property
    def case_ids(self) -> list[str]:
        return list(self.cases)

    @property
    def in_channels(self) -> int:
        return self.context * int(self.meta["channels"])

    @property
    def foreground(self) -> np.ndarray:
        return self.table[:, 2].astype(bool)

    @property
    def content(self) -> np.ndarray:
        return self.table[:, 3].astype(bool)

    def case_indices(self, case_id: str) -> np.ndarray:
        """Global slice indices of one case, in z order."""
        c = self.cases[case_id]
        return np.arange(c["start"], c["start"] + c["count"])

    def read_batch(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` for many slices: ``x`` ``float32`` ``(B, context * C, S, S)``, ``y`` ``uint8``."""
        idx = np.asarray(indices, dtype=np.int64)
        if self.context == 1:
            rows = idx
        else:
            rows = np.clip(idx[:, None] + self._offsets, self._lo[idx, None], self._hi[idx, None]).ravel()
        x = _to_float32(self.images[rows]).reshape(len(idx), -1, *self.images.shape[2:])
        return x, np.asarray(self.labels[idx])

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.read_batch([int(i)])
        return x[0], y[0]

    def case_volume(self, case_id: str) -> tuple[np.ndarray, np.ndarray]:
        """All slices of one case as network inputs and labels (for 3D evaluation)."""
        return self.read_batch(self.case_indices(case_id))


def _to_float32(half: np.ndarray) -> np.ndarray:
    """float16 -> float32; torch's vectorised conversion is several times faster than numpy's."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(half)).float().numpy()


def open_cache(path: Path | str) -> SliceCache:
    """Open a prepared cache; raise :class:`DataError` if it is incomplete or corrupt."""
    return SliceCache(path)
