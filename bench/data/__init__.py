"""Data machinery: finding, checking and reading cases, phantoms, preprocessing, the
memory-mapped slice cache and case-level splits, for any dataset of :mod:`bench.datasets`.

What is particular to a dataset (its layouts, label values, preprocessing, phantom) is its module
in :mod:`bench.datasets`; the modules here ask it and never branch on a dataset.

Modules: ``layouts`` (finding cases), ``nifti`` (canonical reading, :class:`DataError`),
``reader`` (checking and reading a case), ``verify`` (a whole dataset), ``labels`` (file label
values; the evaluation regions are :func:`bench.metrics.split_labels`), ``phantom`` (writing
synthetic data), ``preprocess``, ``cache``, ``splits``, ``selection`` (training slices),
``parallel`` (one worker process per case: ``jobs``).

Memory is bounded per case: files are read slab by slab in their stored dtype, preprocessing and
phantom generation work a slab of slices at a time, and the cache is written row by row.
"""

from .cache import CACHE_VERSION, SliceCache, open_cache, prepare_cache
from .labels import map_labels
from .layouts import Case, Problem, find_cases
from .nifti import DataError
from .phantom import write_phantom
from .preprocess import PreprocessConfig, preprocess_case
from .reader import CaseData, inspect_case, read_case, read_label
from .selection import training_slices
from .splits import make_splits, read_splits, splits_path, write_splits
from .verify import verify_dataset

__all__ = [
    "CACHE_VERSION", "Case", "CaseData", "DataError", "PreprocessConfig",
    "Problem",
    "SliceCache", "find_cases", "inspect_case", "make_splits", "map_labels", "open_cache",
    "prepare_cache", "preprocess_case", "read_case", "read_label", "read_splits", "splits_path",
    "training_slices", "verify_dataset", "write_phantom", "write_splits",
]
