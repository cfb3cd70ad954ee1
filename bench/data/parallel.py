"""Running one function per case in worker processes: the job count, the pool, the progress bar.

``lfubench data prepare`` and ``lfubench data phantom`` treat each case on its own (its own
reader, its own random generator, its own rows of the cache), so the cases can go to as many
processes as the machine has cores and memory for. The results come back in case order and do
not depend on the number of jobs. Workers are started with the ``spawn`` method (no copy of
the parent's threads or locks) and share the cores between them (``torch`` and OpenMP threads).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from tqdm import tqdm

from ..errors import OptionError

log = logging.getLogger(__name__)

#: memory assumed free when the system does not say (no ``/proc/meminfo``)
FALLBACK_MEMORY = 4 << 30


def cpu_count() -> int:
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def available_memory() -> int:
    """Bytes of memory available to new processes (``MemAvailable``), or :data:`FALLBACK_MEMORY`."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return FALLBACK_MEMORY


def resolve_jobs(jobs: int | None, cases: int, per_case_bytes: int) -> int:
    """The number of worker processes: ``jobs`` (at most one per case), or for ``None`` the cores,
    capped by the available memory divided by ``per_case_bytes`` (at least 1)."""
    if jobs is None:
        by_memory = max(1, available_memory() // max(1, per_case_bytes))
        jobs = min(cpu_count(), by_memory)
        log.debug("jobs: %d (cores %d, memory for %d cases of %.2f GB)", jobs, cpu_count(), by_memory,
                  per_case_bytes / 1e9)
    elif jobs < 1:
        raise OptionError(f"--jobs must be at least 1, got {jobs}")
    return max(1, min(jobs, cases))


def progress_bar(total: int, desc: str, progress: bool, leave: bool = True) -> tqdm:
    """A per-case bar with elapsed time and an estimate of the rest; shown only in a terminal."""
    return tqdm(total=total, desc=desc, unit="case", disable=None if progress else True, leave=leave,
                dynamic_ncols=True)


def map_cases(fn: Callable[[Any], Any], tasks: Sequence[Any], jobs: int, bar: tqdm | None = None) -> list:
    """``[fn(task) for task in tasks]``, in ``jobs`` worker processes when ``jobs > 1``.

    ``fn`` must be a module-level function and the tasks picklable. ``jobs == 1`` runs in this
    process, one task after the other. The first failure stops the pool: tasks not started are
    cancelled, running ones finish, and the error of the earliest failed task is raised.
    """
    if jobs <= 1:
        results = []
        for task in tasks:
            results.append(fn(task))
            if bar is not None:
                bar.update()
        return results
    threads = max(1, cpu_count() // jobs)
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads,))
    futures: list[Future] = []
    try:
        futures = [pool.submit(fn, task) for task in tasks]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            if bar is not None:
                bar.update(len(done))
            if any(f.exception() is not None for f in done):
                break
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    for future in futures:
        if future.done() and not future.cancelled() and future.exception() is not None:
            raise future.exception()
    return [future.result() for future in futures]


def _init_worker(threads: int) -> None:
    """Share the cores: each worker's thread pools get ``threads`` threads."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
