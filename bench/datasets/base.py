"""The interface of a dataset module, :class:`Dataset`, and the pieces dataset modules share.

A dataset module subclasses :class:`Dataset`, sets its facts as class attributes, implements the
abstract methods, and ends with ``DATASET = TheClass()``; the package registers it by that name
(:func:`bench.datasets.register_dataset` registers one at run time).
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import numpy as np

from ..errors import OptionError

if TYPE_CHECKING:
    import torch


# ---------------------------------------------------------------------------------------------- cases

@dataclass(frozen=True)
class Problem:
    """One problem in a dataset: the case, the file (relative to the dataset root) and what is wrong."""

    case: str
    file: str
    message: str

    def __str__(self) -> str:
        return f"case {self.case}: {self.file}: {self.message}"


@dataclass
class Case:
    """One case of a dataset as found on disk.

    Attributes:
        case_id: the case name (LiTS ``N``, MSD ``liver_N``, BraTS the folder name).
        kind: the dataset's kind (``"lits"``, ``"brats"``).
        layout: the :class:`Layout` name its files follow (``"lits"``, ``"msd"``, ``"brats2018"``, ...).
        root: the dataset root; file names in messages are relative to it.
        images: channel name -> path, in channel order; a missing file keeps the path it should have.
        label: the label file path (it may not exist).
        group: ``"HGG"``/``"LGG"`` for BraTS 2018, else ``None``.
        problems: problems found while listing (duplicates, missing files).
    """

    case_id: str
    kind: str
    layout: str
    root: Path
    images: dict[str, Path]
    label: Path
    group: str | None = None
    problems: list[Problem] = field(default_factory=list)

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def files(self) -> list[tuple[str, Path]]:
        """``(role, path)`` for every image channel, then ``("label", path)``."""
        return [*self.images.items(), ("label", self.label)]


def visible_files(root: Path) -> Iterator[Path]:
    """The NIfTI files below ``root``, sorted; hidden files and folders (a leading ``.``, e.g. macOS
    ``._liver_0.nii.gz``) are left out."""
    for path in sorted(root.rglob("*.nii*")):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts):
            yield path


def case_sort_key(case_id: str):
    """Natural order of case ids (``case_2`` before ``case_10``)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", case_id)]


def pick(case_id: str, role: str, paths: list[Path], root: Path, problems: list[Problem]) -> Path:
    """The first of the files found for one role; more than one is a problem of the case."""
    if len(paths) > 1:
        names = ", ".join(str(p.relative_to(root)) for p in paths)
        problems.append(Problem(case_id, str(paths[0].relative_to(root)),
                                f"{len(paths)} files for the {role}: {names}"))
    return paths[0]


def nifti_ext(path: Path) -> str:
    """``".nii.gz"`` or ``".nii"``, as ``path`` is written."""
    return ".nii.gz" if path.name.endswith(".gz") else ".nii"


# ---------------------------------------------------------------------------------------------- layouts

@dataclass(frozen=True)
class Layout:
    """One official file layout of a dataset, shared by its reader and the phantom writer.

    Attributes:
        name: the layout's one spelling: :attr:`Case.layout` of the cases found in it and the
            ``layout`` of :func:`bench.data.write_phantom` (``lfubench data phantom --layout``).
        files: role (a channel name, or ``"label"``) -> the part of a file name (or folder) that
            marks the role; the dataset module builds its readers' patterns and its phantom's file
            names from this one table.
        gzip: whether the official files are ``.nii.gz`` (the phantom's default).
        file_labels: label value in the files -> internal label.
        about: one line for help texts.
    """

    name: str
    files: dict[str, str]
    gzip: bool
    file_labels: dict[int, int]
    about: str = ""

    def phantom_labels(self, label: np.ndarray) -> np.ndarray:
        """Internal labels -> the values this layout's files hold (``uint8``)."""
        if all(raw == internal for raw, internal in self.file_labels.items()):
            return label
        lut = np.zeros(max(self.file_labels.values()) + 1, dtype=np.uint8)
        for raw, internal in self.file_labels.items():
            lut[internal] = raw
        return lut[label]


# ---------------------------------------------------------------------------------------------- results

class Slab(NamedTuple):
    """Preprocessed slices ``start ... start + len(label) - 1`` of a case: ``float16`` ``(n, C, S, S)``
    image, ``uint8`` ``(n, S, S)`` internal labels, ``bool`` ``(n,)`` content (body / brain)."""

    start: int
    image: np.ndarray
    label: np.ndarray
    content: np.ndarray


@dataclass
class PhantomCase:
    """One generated case: ``images`` channel -> ``int16`` ``[z, y, x]`` (in channel order),
    ``label`` ``uint8`` internal labels, ``spacing`` ``(z, y, x)`` mm, and whether the files store
    it flipped in-plane (``flip_xy``, LPS-like as DICOM-derived files are)."""

    images: dict[str, np.ndarray]
    label: np.ndarray
    spacing: tuple[float, float, float]
    flip_xy: bool


# ---------------------------------------------------------------------------------------------- the interface

class Dataset(abc.ABC):
    """Everything lfubench knows about one dataset; one subclass per dataset module.

    Facts (class attributes):
        kind: the registry key and module name (``"lits"``); plan kinds are ``kind`` (a real
            folder) and ``"phantom-" + kind`` (generated cases).
        title: the name in reports (the challenge and year).
        order: position in listings (help texts, messages); ties by kind.
        channels: the image files of a case, in channel order (the cache's channels).
        in_channels: input channels of a model (channels x adjacent slices).
        num_classes: output classes including background (internal labels ``0..num_classes-1``).
        labels: the internal label values' meanings, as the cache holds them.
        regions: the scored classes/regions, in table order.
        region_set: the region set of :func:`bench.metrics.split_labels` (``None``: the internal
            labels are one binary mask, scored as ``"foreground"``).
        label_scheme: the label scheme of :func:`bench.metrics.split_labels` for internal labels.
        default_size: default in-plane network input (divisible by 16).
        empty: default empty-mask rule of the evaluation (:mod:`bench.metrics`).
        slice_context: whether adjacent slices are given as channels (2.5D); else the
            preprocessing's ``context`` is 1.
        layouts: the official layouts; the first is the phantom's default.
        phantom_shape: default phantom ``(X, Y, Z)`` voxels.
        phantom_about: what its phantom is, one line for help texts.

    Behaviour (methods): :meth:`find_cases` (the official layouts), :meth:`preprocess` (a read
    case into network-size slices), :meth:`restore_slices` (predictions back onto the case's
    grid), :meth:`phantom_case` and :meth:`phantom_files` (the synthetic stand-in), and
    :meth:`role_name` (how messages name a file of a case).
    """

    kind: ClassVar[str]
    title: ClassVar[str]
    order: ClassVar[int] = 100
    channels: ClassVar[tuple[str, ...]]
    in_channels: ClassVar[int]
    num_classes: ClassVar[int]
    labels: ClassVar[tuple[str, ...]]
    regions: ClassVar[tuple[str, ...]]
    region_set: ClassVar[str | None]
    label_scheme: ClassVar[str] = "auto"
    default_size: ClassVar[int]
    empty: ClassVar[str]
    slice_context: ClassVar[bool] = False
    layouts: ClassVar[tuple[Layout, ...]]
    phantom_shape: ClassVar[tuple[int, int, int]] = (128, 128, 48)
    phantom_about: ClassVar[str] = ""

    def __repr__(self) -> str:
        return f"<dataset {self.kind}>"

    # -- the official layouts ------------------------------------------------------------------

    def layout(self, name: str | None = None) -> Layout:
        """The layout called ``name`` (default: the first, the phantom's)."""
        names = {layout.name: layout for layout in self.layouts}
        if name is None:
            return self.layouts[0]
        if name not in names:
            raise OptionError(f"unknown {self.kind} layout {name!r}; choose one of {', '.join(names)}")
        return names[name]

    @abc.abstractmethod
    def find_cases(self, root: Path) -> tuple[list[Case], list[Problem]]:
        """The cases under the existing folder ``root`` in whichever official layout it uses (sorted
        by id), and the dataset-level problems (``[]`` with no case: the caller says what it
        expected from :attr:`expected_files`). Reads no voxel data."""

    #: the files a root should hold, for the message when no case is found
    expected_files: ClassVar[str] = "its files"

    def for_root(self, root: Path) -> Dataset:
        """The dataset of the folder ``root``: this one, whose facts are fixed; a dataset whose facts
        the folder holds (``nnunet``: ``dataset.json``) returns one of the folder's own, with a kind of
        its own (:func:`bench.datasets.dataset_for` registers it). Raises
        :class:`~bench.errors.OptionError` (one line per problem) when the folder cannot say."""
        return self

    def role_name(self, role: str) -> str:
        """How a message names the file of ``role`` (a channel or ``"label"``)."""
        if role == "label":
            return "label"
        return "image" if len(self.channels) == 1 else f"modality {role}"

    # -- preprocessing and its inverse ---------------------------------------------------------

    @abc.abstractmethod
    def preprocess(self, data, config, slab: int) -> tuple[dict, Iterator[Slab]]:
        """One read case into ``config.size`` x ``config.size`` slices, ``slab`` input slices at a time.

        ``data`` is the case as :func:`bench.data.read_case` gives it (``image`` ``(C, Z, Y, X)`` in
        the files' dtype, ``label`` internal ``uint8``, ``spacing``), ``config`` its
        :class:`bench.data.PreprocessConfig` (``size``, ``hu_window``, ``context``); this package
        does not import :mod:`bench.data`, which builds on it.

        Returns ``(info, slabs)``: the case's geometry, JSON-able (``orig_shape`` ``[Z, Y, X]``,
        ``spacing`` ``[z, y, x]``, ``slice_spacing`` after preprocessing, and whatever
        :meth:`restore_slices` needs), and the :class:`Slab` iterator in z order. The result may not
        depend on ``slab``.
        """

    @abc.abstractmethod
    def restore_slices(self, probs: torch.Tensor, info: dict, out: np.ndarray, start: int) -> None:
        """Write the labels of slices ``start .. start + len(probs)`` of a case into ``out``.

        Args:
            probs: softmax probabilities ``(B, classes, S, S)`` of consecutive slices.
            info: the case's cache entry (the ``info`` of :meth:`preprocess`).
            out: the case's ``uint8`` label volume ``(Z, Y, X)`` on the original grid, zero where
                nothing is written.
            start: the index of the first slice of ``probs`` in the case.
        """

    # -- the phantom ---------------------------------------------------------------------------

    @abc.abstractmethod
    def phantom_case(self, rng: np.random.Generator, index: int, shape: tuple[int, int, int]) -> PhantomCase:
        """Generate case ``index`` of ``shape`` ``(X, Y, Z)`` from its own generator ``rng``."""

    @abc.abstractmethod
    def phantom_files(self, layout: Layout, out: Path, index: int, cases: int, ext: str) -> list[Path]:
        """Where phantom case ``index`` of ``cases`` goes in ``layout`` under ``out``: one path per
        channel in channel order, then the label's (``ext``: ``".nii"`` or ``".nii.gz"``)."""

    def phantom_index(self, layout: Layout, out: Path, cases: int, ext: str) -> None:
        """Write the files a layout keeps beside its cases (an index such as ``dataset.json``); by
        default none."""
        return None
