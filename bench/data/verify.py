"""Dataset integrity: check every case and collect every problem (nnU-Net style, fail late, report all)."""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm import tqdm

from .layouts import Case, Problem, find_cases
from .reader import inspect_case

log = logging.getLogger(__name__)


def verify_dataset(dataset: str, root: Path | str,
                   progress: bool = False) -> tuple[list[Case], list[Problem]]:
    """Check every case of ``dataset`` under ``root``; never writes anything.

    Returns:
        the cases found and every problem (dataset-level first, then per case in case order).
        An empty problem list means every case reads cleanly through :func:`~bench.data.read_case`.
    """
    cases, problems = find_cases(dataset, root)
    bar = tqdm(cases, desc=f"verify {dataset}", unit="case", disable=None if progress else True, leave=False)
    for case in bar:
        _, case_problems = inspect_case(case)
        problems.extend(case_problems)
        log.debug("case %s: %d problem(s)", case.case_id, len(case_problems))
    return cases, problems
