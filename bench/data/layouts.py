"""Finding the cases of a dataset folder, in whichever of the dataset's official layouts it uses.

The layouts themselves -- file names, folders, label values -- are the dataset modules'
(:mod:`bench.datasets.lits`, :mod:`bench.datasets.brats`), shared with the phantom writer.
Hidden files (names starting with ``.``, e.g. macOS ``._liver_0.nii.gz``) are ignored.
"""

from __future__ import annotations

from pathlib import Path

from ..datasets import get_dataset
from ..datasets.base import Case, Problem

__all__ = ["Case", "Problem", "find_cases"]


def find_cases(kind: str, root: Path | str) -> tuple[list[Case], list[Problem]]:
    """List the cases of dataset ``kind`` under ``root`` in whichever official layout it uses.

    Returns the cases (sorted by id) and the dataset-level problems (no cases, bad dataset.json).
    Reads no voxel data and writes nothing.
    """
    root = Path(root)
    dataset = get_dataset(kind)
    if not root.is_dir():
        return [], [Problem("-", str(root), "dataset folder does not exist")]
    cases, problems = dataset.find_cases(root)
    if not cases and not problems:
        expected = dataset.expected_files
        problems.append(Problem("-", ".", f"no cases found (expected {expected} below the root)"))
    return cases, problems
