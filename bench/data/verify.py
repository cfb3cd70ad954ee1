"""Dataset integrity: check every case and collect every problem (nnU-Net style, fail late, report all)."""

from __future__ import annotations

import logging
from pathlib import Path

from .cache import case_memory
from .layouts import Case, Problem, find_cases
from .nifti import ReadFailure, canonical_shape, load_image, read_dtype
from .parallel import map_cases, progress_bar, resolve_jobs
from .reader import inspect_case

log = logging.getLogger(__name__)


def verify_dataset(kind: str, root: Path | str, progress: bool = False,
                   jobs: int | None = 1) -> tuple[list[Case], list[Problem]]:
    """Check every case of dataset ``kind`` under ``root``; never writes anything.

    Args:
        kind: the dataset's kind (``"lits"``, ``"brats"``).
        root: the dataset folder.
        progress: show a per-case progress bar (in a terminal only).
        jobs: worker processes, one case each (default 1: in this process); ``None``: the
            machine's cores, capped by the available memory. The problems are the same for any
            number of jobs.

    Returns:
        the cases found and every problem (dataset-level first, then per case in case order).
        An empty problem list means every case reads cleanly through :func:`~bench.data.read_case`.
    """
    cases, problems = find_cases(kind, root)
    per_case = max((_memory(case) for case in cases), default=0) if jobs is None else 0
    jobs = resolve_jobs(jobs, max(1, len(cases)), per_case)
    desc = f"verify {kind}" + (f" ({jobs} jobs)" if jobs > 1 else "")
    with progress_bar(len(cases), desc, progress, leave=False) as bar:
        found = map_cases(_problems, cases, jobs, bar)
    for case, case_problems in zip(cases, found, strict=True):
        problems.extend(case_problems)
        log.debug("case %s: %d problem(s)", case.case_id, len(case_problems))
    return cases, problems


def _problems(case: Case) -> list[Problem]:
    return inspect_case(case)[1]


def _memory(case: Case) -> int:
    """:func:`~bench.data.cache.case_memory` from the first image's header (a default if unreadable)."""
    try:
        img = load_image(next(iter(case.images.values())))
        return case_memory(canonical_shape(img), len(case.images), read_dtype(img).itemsize)
    except (ReadFailure, StopIteration):
        return case_memory((0, 0, 0))
