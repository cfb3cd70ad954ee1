"""Synthetic stand-ins for the real datasets, written as NIfTI files in their official layouts.

The phantoms are the embedded default data: they run on a fresh machine (the real data sets
cannot be downloaded at run time) and exercise exactly the readers used for the real data. What
each phantom looks like is its dataset module's (:meth:`bench.datasets.Dataset.phantom_case`:
a CT abdomen for LiTS, a brain MRI for BraTS), and so are the file names of each layout
(:meth:`~bench.datasets.Dataset.phantom_files`), the same table its reader uses. Here is the
writing: case by case, one worker process per case (``jobs``), the same files for any number of
jobs.

Every case is generated from ``numpy.random.default_rng([seed, index])``: deterministic for a seed,
and the first cases do not change when more are asked for. Memory is bounded at any size (see
:mod:`bench.datasets.synth`): a case costs its own arrays plus a slab.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..datasets import DATASETS
from ..datasets import synth as S
from ..errors import OptionError
from .parallel import map_cases, progress_bar, resolve_jobs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Case:
    """One phantom case to generate and the files to write it to (images first, the label last)."""

    kind: str
    index: int
    seed: int
    shape: tuple[int, int, int]
    layout: str
    paths: tuple[Path, ...]


def _write_case(task: _Case) -> None:
    """Generate case ``task.index`` from ``default_rng([seed, index])`` and write its files."""
    dataset = DATASETS[task.kind]
    case = dataset.phantom_case(np.random.default_rng([task.seed, task.index]), task.index, task.shape)
    for channel, path in zip(dataset.channels, task.paths, strict=False):
        S.save_nifti(path, case.images.pop(channel), case.spacing, case.flip_xy)  # each freed once written
    label = dataset.layout(task.layout).phantom_labels(case.label)
    S.save_nifti(task.paths[-1], label, case.spacing, case.flip_xy)


def case_memory(kind: str, shape) -> int:
    """Estimated peak bytes of generating one case of ``shape`` (X, Y, Z): its ``int16`` image(s) and
    ``uint8`` labels, the work arrays of a slab and the interpreter."""
    voxels = int(np.prod(shape))
    per_voxel = 2 * len(DATASETS[kind].channels) + 1
    return voxels * per_voxel + 40 * S.SLAB_VOXELS * 4 + (256 << 20)


def write_phantom(kind: str, out: Path | str, cases: int, shape=None, seed: int = 0,
                  layout: str | None = None, gzip: bool | None = None, progress: bool = False,
                  jobs: int | None = 1) -> list[Path]:
    """Write ``cases`` phantom cases under ``out`` in a real dataset layout.

    Args:
        kind: the dataset's kind (``"lits"``, ``"brats"``).
        out: the dataset root to create (files are added; existing ones with the same names replaced).
        cases: number of cases (>= 1).
        shape: ``(X, Y, Z)`` voxels; default the dataset's
            :attr:`~bench.datasets.Dataset.phantom_shape` (128 x 128 x 48).
        seed: the seed; case ``i`` uses ``default_rng([seed, i])``.
        layout: a name of the dataset's :attr:`~bench.datasets.Dataset.layouts`, default the first:
            ``"lits"`` (default; ``Training Batch 1/2/volume-N.nii``, ``segmentation-N.nii``) or
            ``"msd"`` (``Task03_Liver/imagesTr``, ``labelsTr``, ``dataset.json``); for BraTS
            ``"brats2018"`` (default; ``HGG/``/``LGG/`` case folders, ``_flair`` ... ``_seg``,
            labels 0/1/2/4), ``"brats2020"`` (flat case folders, ``.nii``) or ``"brats2023"``
            (``-t2f`` ... ``-seg``, labels 0/1/2/3).
        gzip: write ``.nii.gz`` (default: as the real layout does, :attr:`~bench.datasets.Layout.gzip`:
            LiTS and BraTS 2020 ``.nii``, the others ``.nii.gz``).
        progress: show a per-case progress bar (in a terminal only).
        jobs: worker processes, one case each (default 1: in this process); ``None``: the
            machine's cores, capped by the available memory over :func:`case_memory`. The files
            are the same for any number of jobs.

    Returns:
        the paths written, images before labels, case by case.
    """
    if kind not in DATASETS:
        raise OptionError(f"unknown dataset {kind!r}; choose one of {', '.join(DATASETS)}")
    dataset = DATASETS[kind]
    chosen = dataset.layout(layout)
    if cases < 1:
        raise OptionError(f"--cases must be at least 1, got {cases}")
    shape = tuple(int(n) for n in (shape or dataset.phantom_shape))
    if len(shape) != 3 or min(shape) < 8:
        raise OptionError(f"--shape must be XxYxZ with every size >= 8, got {shape}")
    jobs = resolve_jobs(jobs, cases, case_memory(kind, shape))
    out = Path(out)
    ext = ".nii.gz" if (chosen.gzip if gzip is None else gzip) else ".nii"
    files = [tuple(dataset.phantom_files(chosen, out, i, cases, ext)) for i in range(cases)]
    tasks = [_Case(kind, i, seed, shape, chosen.name, paths) for i, paths in enumerate(files)]
    desc = f"phantom {kind}" + (f" ({jobs} jobs)" if jobs > 1 else "")
    with progress_bar(cases, desc, progress, leave=False) as bar:
        map_cases(_write_case, tasks, jobs, bar)
    dataset.phantom_index(chosen, out, cases, ext)
    log.debug("wrote %d %s phantom case(s) (%s layout, shape %s, seed %d, %d jobs) to %s", cases, kind,
              chosen.name, "x".join(map(str, shape)), seed, jobs, out)
    return [path for task in tasks for path in task.paths]
