"""Finding the cases of a dataset folder in each official layout.

LiTS 2017: ``volume-N.nii[.gz]`` with ``segmentation-N.nii[.gz]``, anywhere below the root (the
official download splits them into ``Training Batch 1/`` and ``Training Batch 2/``); case id ``N``.
MSD Task03_Liver: ``imagesTr/liver_N.nii.gz`` and ``labelsTr/liver_N.nii.gz`` next to
``dataset.json`` (in the root or one folder below it); case id ``liver_N``.
BraTS 2018-2021: one folder per case holding ``<case>_flair``, ``_t1``, ``_t1ce``, ``_t2`` and
``_seg`` (2018 puts the case folders under ``HGG/`` and ``LGG/``); BraTS 2023+: ``-t2f``, ``-t1n``,
``-t1c``, ``-t2w``, ``-seg``. Case id: the folder name. Channels are always ordered
flair, t1, t1ce, t2 (2023: t2f, t1n, t1c, t2w).

Hidden files (names starting with ``.``, e.g. macOS ``._liver_0.nii.gz``) are ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..datasets import DATASETS

BRATS_CHANNELS = ("flair", "t1", "t1ce", "t2")
_BRATS_2023_SUFFIX = {"flair": "t2f", "t1": "t1n", "t1ce": "t1c", "t2": "t2w"}
_LITS_RE = re.compile(r"(volume|segmentation)-(\d+)\.nii(\.gz)?")
_BRATS_LEGACY_RE = re.compile(r"(.+)_(flair|t1|t1ce|t2|seg)\.nii(\.gz)?")
_BRATS_2023_RE = re.compile(r"(.+)-(t2f|t1n|t1c|t2w|seg)\.nii(\.gz)?")


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
        dataset: ``"lits"`` or ``"brats"``.
        layout: ``"lits"``, ``"msd"``, ``"brats_legacy"`` (2018-2021 naming) or ``"brats_2023"``.
        root: the dataset root; file names in messages are relative to it.
        images: channel name -> path, in channel order; a missing file keeps the path it should have.
        label: the label file path (it may not exist).
        group: ``"HGG"``/``"LGG"`` for BraTS 2018, else ``None``.
        problems: problems found while listing (duplicates, missing files).
    """

    case_id: str
    dataset: str
    layout: str
    root: Path
    images: dict[str, Path]
    label: Path
    group: str | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def label_convention(self) -> str:
        return "lits" if self.dataset == "lits" else self.layout

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def files(self) -> list[tuple[str, Path]]:
        """``(role, path)`` for every image channel, then ``("label", path)``."""
        return [*self.images.items(), ("label", self.label)]


def find_cases(dataset: str, root: Path | str) -> tuple[list[Case], list[Problem]]:
    """List the cases of ``dataset`` under ``root`` in whichever official layout it uses.

    Returns the cases (sorted by id) and the dataset-level problems (no cases, bad dataset.json).
    Reads no voxel data and writes nothing.
    """
    root = Path(root)
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if not root.is_dir():
        return [], [Problem("-", str(root), "dataset folder does not exist")]
    if dataset == "lits":
        msd = _msd_folder(root)
        cases, problems = _find_msd(root, msd) if msd is not None else _find_lits(root)
        expected = "imagesTr/liver_N.nii.gz" if msd is not None else "volume-N.nii[.gz]"
    else:
        cases, problems = _find_brats(root)
        expected = "<case>/<case>_flair.nii[.gz] or <case>/<case>-t2f.nii.gz"
    if not cases and not problems:
        problems.append(Problem("-", ".", f"no cases found (expected {expected} below the root)"))
    return cases, problems


def _visible_files(root: Path):
    for path in sorted(root.rglob("*.nii*")):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts):
            yield path


def _case_sort_key(case_id: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", case_id)]


def _pick(case_id: str, role: str, paths: list[Path], root: Path, problems: list[Problem]) -> Path:
    if len(paths) > 1:
        names = ", ".join(str(p.relative_to(root)) for p in paths)
        problems.append(Problem(case_id, str(paths[0].relative_to(root)),
                                f"{len(paths)} files for the {role}: {names}"))
    return paths[0]


def _find_lits(root: Path) -> tuple[list[Case], list[Problem]]:
    found: dict[str, dict[str, list[Path]]] = {}
    for path in _visible_files(root):
        m = _LITS_RE.fullmatch(path.name)
        if m:
            found.setdefault(m.group(2), {}).setdefault(m.group(1), []).append(path)
    cases = []
    for n in sorted(found, key=int):
        problems: list[Problem] = []
        kinds = found[n]
        some = next(iter(kinds.values()))[0]
        ext = ".nii.gz" if some.name.endswith(".gz") else ".nii"
        vol = kinds.get("volume")
        seg = kinds.get("segmentation")
        vol_path = _pick(n, "volume", vol, root, problems) if vol else some.parent / f"volume-{n}{ext}"
        seg_path = (_pick(n, "segmentation", seg, root, problems) if seg
                    else some.parent / f"segmentation-{n}{ext}")
        cases.append(Case(str(int(n)), "lits", "lits", root, {"ct": vol_path}, seg_path, problems=problems))
    return cases, []


def _msd_folder(root: Path) -> Path | None:
    if (root / "imagesTr").is_dir():
        return root
    below = [d for d in sorted(root.iterdir()) if d.is_dir() and (d / "imagesTr").is_dir()]
    return below[0] if len(below) == 1 else None


def _find_msd(root: Path, task: Path) -> tuple[list[Case], list[Problem]]:
    problems: list[Problem] = []
    pairs: list[tuple[Path, Path]] = []
    meta = task / "dataset.json"
    if meta.is_file():
        try:
            entries = json.loads(meta.read_text())["training"]
            pairs = [(task / e["image"], task / e["label"]) for e in entries]
        except (ValueError, KeyError, TypeError) as err:
            problems.append(Problem("-", str(meta.relative_to(root)),
                                    f"unreadable dataset.json ({type(err).__name__}: {err})"))
    if not pairs:
        images = [p for p in _visible_files(task / "imagesTr")]
        pairs = [(p, task / "labelsTr" / p.name) for p in images]
    cases = []
    for image, label in pairs:
        case_id = image.name.split(".nii")[0]
        cases.append(Case(case_id, "lits", "msd", root, {"ct": image}, label))
    cases.sort(key=lambda c: _case_sort_key(c.case_id))
    return cases, problems


def _find_brats(root: Path) -> tuple[list[Case], list[Problem]]:
    folders: dict[Path, dict[str, list[Path]]] = {}
    styles: dict[Path, set[str]] = {}
    for path in _visible_files(root):
        for style, regex in (("brats_legacy", _BRATS_LEGACY_RE), ("brats_2023", _BRATS_2023_RE)):
            m = regex.fullmatch(path.name)
            if m:
                folders.setdefault(path.parent, {}).setdefault(m.group(2), []).append(path)
                styles.setdefault(path.parent, set()).add(style)
                break
    cases = []
    for folder, kinds in folders.items():
        case_id = folder.name
        problems: list[Problem] = []
        layout = "brats_2023" if styles[folder] == {"brats_2023"} else "brats_legacy"
        some = next(iter(kinds.values()))[0]
        ext = ".nii.gz" if some.name.endswith(".gz") else ".nii"
        sep = "-" if layout == "brats_2023" else "_"
        images = {}
        for channel in BRATS_CHANNELS:
            suffix = _BRATS_2023_SUFFIX[channel] if layout == "brats_2023" else channel
            paths = kinds.get(suffix)
            images[channel] = (_pick(case_id, suffix, paths, root, problems) if paths
                               else folder / f"{case_id}{sep}{suffix}{ext}")
        seg = kinds.get("seg")
        label = _pick(case_id, "seg", seg, root, problems) if seg else folder / f"{case_id}{sep}seg{ext}"
        group = folder.parent.name if folder.parent.name in ("HGG", "LGG") else None
        cases.append(Case(case_id, "brats", layout, root, images, label, group, problems))
    cases.sort(key=lambda c: _case_sort_key(c.case_id))
    return cases, []
