"""Datasets: one module per dataset, behind one interface, in one table.

Everything lfubench knows about a dataset -- its facts, its official file layouts (read by
:mod:`bench.data` and written by its phantom), how a case is preprocessed and predictions are put
back, how its phantom is generated, what is scored and the empty-mask rule -- lives in that
dataset's module, a subclass of :class:`~bench.datasets.base.Dataset`. The machinery in
:mod:`bench.data` and :mod:`bench.evaluate` asks the table and never branches on a dataset.

==========  ===========  =======  ===============  ======================  =====  =====================
kind        in channels  classes  scored regions   internal labels         size   empty-mask rule
==========  ===========  =======  ===============  ======================  =====  =====================
``lits``    3 (2.5D)     3        liver, tumor     0 bg, 1 liver, 2 tumor  256    ``diagonal``
``brats``   4 (MRI)      4        WT, TC, ET       0, 1 NCR/NET, 2 ED,     192    ``brats``
                                                   3 ET
``nnunet``  its          its      its labels and   its files' values       256    ``diagonal``
            channels     labels   regions
==========  ===========  =======  ===============  ======================  =====  =====================

``nnunet`` is any folder in nnU-Net v2's raw layout: its row is the folder's ``dataset.json``
(:meth:`Dataset.for_root`; :func:`dataset_for` registers the folder's own dataset in :data:`FOLDERS`
under a kind of its own, ``nnunet-<folder>-<hash>``); the table's ``nnunet`` entry holds its
phantom's facts (channels T2, ADC; regions whole, PZ, TZ).

``size`` is the default in-plane network input (LiTS: resize target; BraTS: crop/pad size).
The empty-mask rules are those of :mod:`bench.metrics`: ``brats`` is the BraTS challenge's
(one mask empty: HD95 373.13 mm, the diagonal of its 240 x 240 x 155 mm volume); ``diagonal``
penalises with the diagonal of the case's own volume in mm, the right scale for any other
dataset; ``nan`` leaves such cases undefined and counts them.

Glossary (one name per concept):

- **dataset**: one of the datasets lfubench knows, a :class:`Dataset` object in :data:`DATASETS`
  (:func:`get_dataset`).
- **kind**: a dataset's key, the name of its module: ``lits``, ``brats``, ``nnunet``, or a folder's
  own (``nnunet-Dataset005_Prostate-1a2b3c``) (:attr:`Dataset.kind`,
  :attr:`Case.kind <bench.datasets.base.Case>`, ``kind`` arguments of :mod:`bench.data`; the
  slice cache's ``meta.json`` stores it as ``config.dataset``, the key it has always had).
- **plan kind**: the ``kind`` of a plan's ``[[datasets]]`` entry (``DatasetSpec.kind``): a dataset
  kind (cases read from ``root``) or ``phantom-`` + a dataset kind (cases generated); :data:`KINDS`
  maps each to its dataset kind (``DatasetSpec.dataset``).
- **name**: a plan dataset entry's own label, used in item ids and tables (``DatasetSpec.name``);
  it may be anything, ``lits2017-full`` as well as ``lits``.
- **layout**: one official arrangement of a dataset's files (:class:`Layout`): ``lits``, ``msd``
  (LiTS); ``brats2018``, ``brats2020``, ``brats2023`` (BraTS); ``nnunet``. One spelling for the cases found
  (``Case.layout``) and the phantoms written (``lfubench data phantom --layout``).
- **channel**: one image file of a case (``ct``; ``flair``, ``t1``, ``t1ce``, ``t2``); a **role**
  is a channel or ``label``.
- **region**: what is scored (``liver``, ``tumor``; ``WT``, ``TC``, ``ET``); a **region set**
  names how :func:`bench.metrics.split_labels` makes them from internal labels.

Modules: ``base`` (the interface, :class:`Dataset`, and :class:`Layout`, :class:`Case`), one module
per dataset (``lits``, ``brats``, ``nnunet``), and what they share: ``synth`` (phantom building blocks: smooth
random fields, geometry, slabs, NIfTI writing) and ``ops`` (resizing, cropping, pasting back).
This package imports nothing of :mod:`bench.data`, which builds on it.

Adding a dataset is one new module in this folder: subclass :class:`Dataset`, end with
``DATASET = TheDataset()``; the package registers every module's ``DATASET`` when imported.
:func:`register_dataset` registers one at run time (from any module).
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from ..errors import OptionError
from .base import Case, Dataset, Layout, PhantomCase, Problem, Slab

__all__ = ["DATASETS", "FOLDERS", "KINDS", "PHANTOM_PREFIX", "Case", "Dataset", "Layout", "PhantomCase",
           "Problem", "Slab", "dataset_for", "get_dataset", "register_dataset", "register_folder_dataset",
           "unregister_dataset"]

#: kind -> dataset, in listing order (:attr:`Dataset.order`)
DATASETS: dict[str, Dataset] = {}
#: plan kinds (``phantom-<kind>`` first, then ``<kind>``) -> kind
KINDS: dict[str, str] = {}
#: the prefix of a plan kind whose cases are generated
PHANTOM_PREFIX = "phantom-"


def register_dataset(dataset: Dataset) -> Dataset:
    """Add ``dataset`` to :data:`DATASETS` (replacing one of the same kind) and its plan kinds to
    :data:`KINDS`; return it."""
    if not isinstance(dataset, Dataset):
        raise TypeError(f"{dataset!r} is not a bench.datasets.Dataset")
    DATASETS[dataset.kind] = dataset
    _reorder()
    return dataset


def unregister_dataset(kind: str) -> None:
    """Remove the dataset ``kind`` and its plan kinds."""
    DATASETS.pop(kind, None)
    _reorder()


def _reorder() -> None:
    ordered = sorted(DATASETS.values(), key=lambda d: (d.order, d.kind))
    DATASETS.clear()
    DATASETS.update((d.kind, d) for d in ordered)
    KINDS.clear()  # updated in place: modules holding the table see every dataset
    KINDS.update({PHANTOM_PREFIX + kind: kind for kind in DATASETS})
    KINDS.update({kind: kind for kind in DATASETS})


def get_dataset(kind: str) -> Dataset:
    """The dataset of ``kind`` (or of a plan kind such as ``phantom-lits``, or a folder's own kind in
    :data:`FOLDERS`)."""
    key = KINDS.get(kind, kind)
    if key in FOLDERS:
        return FOLDERS[key]
    if key not in DATASETS:
        raise OptionError(f"unknown dataset {kind!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[key]


#: a folder's own datasets (:meth:`Dataset.for_root`), by their kinds; not listed among the kinds
FOLDERS: dict[str, Dataset] = {}


def register_folder_dataset(dataset: Dataset) -> Dataset:
    """Add a folder's own dataset to :data:`FOLDERS` (replacing one of the same kind); return it."""
    FOLDERS[dataset.kind] = dataset
    return dataset


def dataset_for(kind: str, root: str | Path | None = None) -> Dataset:
    """The dataset of the plan kind ``kind`` whose cases are in ``root``.

    For most kinds, the table's entry. A dataset whose facts the folder holds (``nnunet``: its
    ``dataset.json``) gives a dataset of the folder's own (:meth:`Dataset.for_root`), registered in
    :data:`FOLDERS` under its own kind, so that everything keyed by a kind (cases, the cache, the
    evaluation) finds it; phantom kinds and ``root=None`` give the table's entry.

    Raises:
        OptionError: unknown kind, or the folder's description cannot be read (one line per problem).
    """
    dataset = get_dataset(kind)
    if root is None or kind.startswith(PHANTOM_PREFIX):
        return dataset
    own = dataset.for_root(Path(root))
    if own is dataset:
        return dataset
    if own.kind in FOLDERS:  # a folder's kind names its facts: keep the one in use (and what it computed)
        return FOLDERS[own.kind]
    return register_folder_dataset(own)



def _register_modules() -> None:
    for module in pkgutil.iter_modules(__path__):
        dataset = getattr(importlib.import_module(f"{__name__}.{module.name}"), "DATASET", None)
        if isinstance(dataset, Dataset):
            register_dataset(dataset)


_register_modules()
