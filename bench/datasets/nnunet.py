"""nnU-Net v2's raw layout: any dataset prepared for nnU-Net (the MSD tasks once converted) read as it is.

Layout (one folder ``DatasetXXX_Name``, nnU-Net's ``documentation/dataset_format.md``)::

    dataset.json                 channel_names, labels, file_ending, numTraining (regions_class_order)
    imagesTr/CASE_0000.nii.gz    one file per channel, the channel's 4-digit index as suffix
    labelsTr/CASE.nii.gz         integer labels
    imagesTs/                    optional; not read (its cases have no labels)

Unlike LiTS and BraTS, the facts come from the folder: :meth:`NnUNet.for_root` reads
``dataset.json`` and returns a dataset of that folder's own (registered under a kind of its own,
``nnunet-<folder>-<6 hex digits of its path and description>``, by
:func:`bench.datasets.dataset_for`; the kind names the slice cache, so a changed dataset.json
makes a new one):

- channels: ``channel_names`` in index order (``"0": "T2", "1": "ADC"``), any number; the model's
  input channels (no adjacent slices).
- labels: every value of ``labels`` (an integer, or the members of a region's list) is a label value
  of the files; they must be ``0, 1, ..., K`` with ``background`` 0 (nnU-Net's rule). Internally the
  files' values are kept; the model is trained on them as ``K + 1`` mutually exclusive classes.
- scored regions: every non-background entry of ``labels``, under its own name, in the file's order:
  a label (``"PZ": 1``) is that value, a region (``"whole": [1, 2]``) the union of its values.
  nnU-Net trains such regions with one sigmoid each (region-based training); lfubench trains the
  classes with a softmax and scores the regions from the predicted classes.
  ``regions_class_order`` is checked (one entry per region) but not otherwise used.
- empty-mask rule ``diagonal`` (the diagonal of the case's own volume), default size 256.

Preprocessing per channel, by its name as nnU-Net chooses its normalisation (case-insensitive):

- ``CT``: clipped to the 0.5 and 99.5 percentiles of the foreground (label > 0) intensities of all
  cases of ``imagesTr``, then z-scored with their mean and standard deviation (nnU-Net's
  ``CTNormalization``; the statistics are computed once per process, from every
  :data:`CT_SAMPLES` -th foreground voxel; they include the cases lfubench holds out for testing,
  as nnU-Net's include its whole training set -- intensity statistics only);
- ``noNorm``: as stored; ``rescale_to_0_1``: the case's minimum to 0, maximum to 1;
  ``rgb_to_0_1``: divided by 255;
- anything else: z-scored per case (nnU-Net's ``ZScoreNormalization``), over the voxels non-zero in
  some channel (zero elsewhere) when their bounding box holds less than 3/4 of the volume (a
  skull-stripped or padded scan), else over the whole volume. nnU-Net decides this once for the
  dataset from the median over cases; lfubench per case.

Every axial slice is then resized in-plane to ``size`` x ``size`` (bilinear with antialiasing; labels
nearest), and predictions go back as LiTS's do (probabilities resized to the original in-plane size,
then the arg-max).

Phantom (``lfubench data phantom nnunet OUT``): a prostate-like MRI in this layout, two channels
(``T2``, ``ADC``), labels ``background`` 0, ``PZ`` 1 (peripheral zone), ``TZ`` 2 (transition zone)
and the region ``whole`` = [1, 2] (:data:`PHANTOM_JSON`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import OptionError
from ..metrics.regions import REGION_SETS, _check_values, _labels
from . import synth as S
from .base import Case, Dataset, Layout, PhantomCase, Problem, Slab, case_sort_key, visible_files
from .brats import brain_statistics
from .lits import LiTS
from .ops import resize_slices

log = logging.getLogger(__name__)

#: the files and folders of the layout
DATASET_JSON, IMAGES, LABELS = "dataset.json", "imagesTr", "labelsTr"
#: the keys dataset.json must have
REQUIRED_KEYS = ("channel_names", "labels", "file_ending", "numTraining")
#: the file endings read (NIfTI; nnU-Net also reads .nrrd, .mha, .png, .tif)
FILE_ENDINGS = (".nii.gz", ".nii")
#: channel name (case-folded) -> normalisation; any other name is z-scored per case
NORMALISATIONS = {"ct": "ct", "nonorm": "none", "rescale_to_0_1": "rescale", "rgb_to_0_1": "rgb"}
#: the nonzero mask is used for z-scoring when its bounding box holds less than this share of a case
MASK_SHARE = 0.75
#: every CT_SAMPLES-th foreground voxel of each case enters the CT statistics
CT_SAMPLES = 10
#: the phantom's dataset.json, less numTraining and file_ending (written with the cases)
PHANTOM_JSON = {
    "name": "Prostate phantom",
    "description": "lfubench phantom in nnU-Net's raw layout: prostate-like MRI",
    "channel_names": {"0": "T2", "1": "ADC"},
    "labels": {"background": 0, "whole": [1, 2], "PZ": 1, "TZ": 2},
    "regions_class_order": [1, 1, 2],
}
#: the phantom's case-name prefix
PHANTOM_PREFIX = "prostate_"
#: the field of view of the phantom's grid, (z, y, x) mm
PHANTOM_FOV = (80.0, 120.0, 120.0)


# ---------------------------------------------------------------------------------------------- dataset.json

@dataclass(frozen=True)
class Description:
    """What ``dataset.json`` says, checked (:func:`describe`).

    Attributes:
        name: the dataset's name (``name`` of dataset.json, else the folder's).
        channels: one key per channel in index order: the channel name, with ``_<index>`` added
            where a name repeats.
        channel_names: the names as dataset.json gives them, in index order.
        values: the label values of the files, ``0 .. K``.
        value_names: a name per value (its label's, else ``label <value>``).
        regions: scored region -> the label values it unites, in dataset.json's order.
        file_ending: ``".nii.gz"`` or ``".nii"``.
        num_training: ``numTraining``.
    """

    name: str
    channels: tuple[str, ...]
    channel_names: tuple[str, ...]
    values: tuple[int, ...]
    value_names: tuple[str, ...]
    regions: dict[str, tuple[int, ...]]
    file_ending: str
    num_training: int


def _problem(message: str) -> Problem:
    return Problem("-", DATASET_JSON, message)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def describe(meta, name: str) -> tuple[Description | None, list[Problem]]:
    """Check the parsed ``dataset.json`` ``meta`` of the folder called ``name``: the description, or
    ``None`` and one problem per thing wrong."""
    if not isinstance(meta, dict):
        return None, [_problem(f"expected a JSON object, got {type(meta).__name__}")]
    problems = [_problem(f"missing key {key!r}") for key in REQUIRED_KEYS if key not in meta]
    channels, channel_names = _channels(meta.get("channel_names"), problems)
    values, value_names, regions = _labels_of(meta.get("labels"), meta.get("regions_class_order"), problems)
    ending = meta.get("file_ending")
    if "file_ending" in meta and ending not in FILE_ENDINGS:
        problems.append(_problem(f"file_ending {ending!r} is not read by lfubench (NIfTI only: "
                                 f"{', '.join(FILE_ENDINGS)})"))
    n = meta.get("numTraining")
    if "numTraining" in meta and not (_is_int(n) and n >= 1):
        problems.append(_problem(f"numTraining must be a positive integer, got {n!r}"))
    if problems or "labels" not in meta or "channel_names" not in meta:
        return None, problems
    title = meta.get("name") if isinstance(meta.get("name"), str) and meta.get("name") else name
    return Description(title, channels, channel_names, values, value_names, regions, ending, n), []


def _channels(raw, problems: list[Problem]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if raw is None:
        return (), ()
    if not isinstance(raw, dict) or not raw:
        problems.append(_problem(f"channel_names must be a non-empty object (\"0\": \"T2\", ...), "
                                 f"got {raw!r}"))
        return (), ()
    if sorted(raw) != [str(i) for i in range(len(raw))]:
        problems.append(_problem(f"channel_names keys must be 0 .. {len(raw) - 1}, got {', '.join(raw)}"))
        return (), ()
    names = tuple(raw[str(i)] for i in range(len(raw)))
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        problems.append(_problem(f"channel_names values must be non-empty strings, got {bad[0]!r}"))
        return (), ()
    keys = tuple(n if names.count(n) == 1 else f"{n}_{i}" for i, n in enumerate(names))
    return keys, names


def _labels_of(raw, order, problems: list[Problem]):
    empty = ((), (), {})
    if raw is None:
        return empty
    if not isinstance(raw, dict) or not raw:
        problems.append(_problem(f"labels must be a non-empty object (\"background\": 0, ...), got {raw!r}"))
        return empty
    before = len(problems)
    members: dict[str, tuple[int, ...]] = {}
    for name, value in raw.items():
        if name == "ignore":
            problems.append(_problem("labels: the 'ignore' label (sparse annotation) is not supported"))
            continue
        items = value if isinstance(value, list) else [value]
        if not items or not all(_is_int(v) and v >= 0 for v in items):
            problems.append(_problem(f"labels: {name!r} must be a label value (an integer >= 0) or a "
                                     f"non-empty list of them, got {value!r}"))
            continue
        members[name] = tuple(sorted(set(items)))
    if len(problems) > before:
        return empty
    if members.get("background") != (0,):
        problems.append(_problem(f"labels: 'background' must be 0, got {raw.get('background')!r}"))
    elif any(0 in m for n, m in members.items() if n != "background"):
        problems.append(_problem("labels: 0 is the background; no other label or region may hold it"))
    values = tuple(sorted({v for m in members.values() for v in m}))
    if len(problems) == before and values != tuple(range(len(values))):
        problems.append(_problem(f"labels: the values must be consecutive 0, 1, 2, ... (nnU-Net's rule), got "
                                 f"{', '.join(map(str, values))}"))
    regions = {n: m for n, m in members.items() if n != "background"}
    if not regions and len(problems) == before:
        problems.append(_problem("labels: nothing to score besides the background"))
    if any(isinstance(v, list) for v in raw.values()):
        if order is None:
            problems.append(_problem("labels has regions (a name mapped to a list of values) but no "
                                     "regions_class_order"))
        elif not (isinstance(order, list) and len(order) == len(regions) and all(_is_int(v) for v in order)):
            problems.append(_problem(f"regions_class_order must list one label value per region "
                                     f"({len(regions)}), got {order!r}"))
    if len(problems) > before:
        return empty
    names = {m[0]: n for n, m in members.items() if len(m) == 1}
    return values, tuple(names.get(v, f"label {v}") for v in values), regions


def read_description(root: Path) -> tuple[Description | None, list[Problem]]:
    """``root/dataset.json`` read and checked (:func:`describe`)."""
    path = root / DATASET_JSON
    if not path.is_file():
        return None, [_problem("missing file (nnU-Net's dataset.json: channel_names, labels, file_ending, "
                               "numTraining)")]
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        return None, [_problem(f"not valid JSON ({err})")]
    return describe(meta, root.name)


# ---------------------------------------------------------------------------------------------- the dataset

def _region_masks(table: dict[str, tuple[int, ...]], allowed: tuple[int, ...], labels, scheme):
    """The masks of a region table (region -> label values), one region at a time, labels checked first."""
    arr = _labels("labels", labels)
    _check_values("labels", arr, allowed)
    for name, values in table.items():
        yield name, np.isin(arr, values)


def _kind_of(root: Path, description: Description) -> str:
    """A folder's own kind: ``nnunet-<folder name>-<6 hex digits>`` of its resolved path and its
    description, so that a changed dataset.json names another slice cache."""
    resolved = root.resolve()
    tag = re.sub(r"[^\w.-]", "_", resolved.name) or "root"
    key = json.dumps([str(resolved), dataclasses.asdict(description)], sort_keys=True)
    return f"{NnUNet.kind}-{tag}-{hashlib.sha256(key.encode()).hexdigest()[:6]}"


class NnUNet(Dataset):
    """A dataset in nnU-Net v2's raw layout (see the module docstring).

    ``NnUNet()`` is the table's entry, kind ``nnunet``: its facts are its phantom's. A folder's own
    dataset, ``NnUNet.for_root(root)``, has the facts of the folder's ``dataset.json``.
    """

    kind = "nnunet"
    order = 2
    label_scheme = "auto"
    default_size = 256
    empty = "diagonal"
    slice_context = False
    phantom_about = "prostate-like MRI in nnU-Net's raw layout"
    expected_files = f"{DATASET_JSON}, {IMAGES}/CASE_0000.nii.gz, {LABELS}/CASE.nii.gz"

    def __init__(self, description: Description | None = None, root: Path | None = None) -> None:
        if description is None:
            meta = {**PHANTOM_JSON, "file_ending": ".nii.gz", "numTraining": 1}
            description, _ = describe(meta, "phantom")
        self.description, self.root = description, root
        self.kind = _kind_of(root, description) if root is not None else type(self).kind
        self.title = description.name
        self.channels = description.channels
        self.in_channels = len(description.channels)
        self.num_classes = len(description.values)
        self.labels = description.value_names
        self.regions = tuple(description.regions)
        self.region_set = self.kind
        files = {c: f"_{i:04d}" for i, c in enumerate(description.channels)}
        self.layouts = (Layout("nnunet", {**files, "label": LABELS},
                               gzip=description.file_ending == ".nii.gz",
                               file_labels={v: v for v in description.values},
                               about=f"{DATASET_JSON}, {IMAGES}, {LABELS}"),)
        self._ct_stats: dict[int, tuple[float, float, float, float]] | None = None
        self._lock = threading.Lock()
        self._register_regions()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_lock")
        return state

    def __setstate__(self, state: dict) -> None:  # a worker process: the folder's facts come along
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._register_regions()
        from . import register_folder_dataset

        register_folder_dataset(self)

    def _register_regions(self) -> None:
        """The scored regions as the region set named by this dataset's kind (:attr:`region_set`)."""
        d = self.description
        REGION_SETS[self.kind] = functools.partial(_region_masks, dict(d.regions), d.values)

    # -- the folder's own dataset --------------------------------------------------------------

    def for_root(self, root: Path) -> NnUNet:
        root = Path(root)
        description, problems = read_description(root)
        if problems:
            raise OptionError("\n".join(f"{root / DATASET_JSON}: {p.message}" for p in problems))
        return NnUNet(description, root)

    def role_name(self, role: str) -> str:
        if role == "label":
            return "label"
        index = self.channels.index(role)
        return f"channel {index:04d} ({self.description.channel_names[index]})"

    # -- the layout ----------------------------------------------------------------------------

    def find_cases(self, root: Path) -> tuple[list[Case], list[Problem]]:
        if self.root is None or Path(root).resolve() != self.root.resolve():
            description, problems = read_description(Path(root))
            if problems:
                return [], problems
            from . import register_folder_dataset

            return register_folder_dataset(NnUNet(description, Path(root))).find_cases(root)
        return self._find_cases(Path(root))

    def _find_cases(self, root: Path) -> tuple[list[Case], list[Problem]]:
        d = self.description
        ending = d.file_ending
        problems: list[Problem] = []
        image_re = re.compile(rf"(.+)_(\d{{4}}){re.escape(ending)}")
        images: dict[str, dict[int, Path]] = {}
        extra: dict[str, list[Problem]] = {}
        if not (root / IMAGES).is_dir():
            problems.append(Problem("-", IMAGES, "missing folder (one file per case and channel)"))
        if not (root / LABELS).is_dir():
            problems.append(Problem("-", LABELS, "missing folder (one label file per case)"))
        for path in visible_files(root / IMAGES) if (root / IMAGES).is_dir() else ():
            rel = str(path.relative_to(root))
            m = image_re.fullmatch(path.name)
            if not m or path.parent != root / IMAGES:
                problems.append(Problem("-", rel, f"not named {IMAGES}/CASE_XXXX{ending} (XXXX: channel)"))
                continue
            case_id, channel = m.group(1), int(m.group(2))
            if channel >= len(d.channels):
                extra.setdefault(case_id, []).append(Problem(
                    case_id, rel, f"channel {channel:04d} is not in dataset.json's channel_names "
                    f"({', '.join(f'{i:04d} {n}' for i, n in enumerate(d.channel_names))})"))
            images.setdefault(case_id, {})[channel] = path
        labels: dict[str, Path] = {}
        for path in visible_files(root / LABELS) if (root / LABELS).is_dir() else ():
            rel = str(path.relative_to(root))
            if not path.name.endswith(ending) or path.parent != root / LABELS:
                problems.append(Problem("-", rel, f"not named {LABELS}/CASE{ending}"))
                continue
            labels[path.name[:-len(ending)]] = path
        cases = []
        layout = self.layouts[0]
        for case_id in sorted(set(images) | set(labels), key=case_sort_key):
            paths = {c: images.get(case_id, {}).get(i, root / IMAGES / f"{case_id}_{i:04d}{ending}")
                     for i, c in enumerate(d.channels)}
            label = labels.get(case_id, root / LABELS / f"{case_id}{ending}")
            cases.append(FolderCase(case_id, self.kind, layout.name, root, paths, label,
                                    problems=extra.get(case_id, []), dataset=self))
        if cases and len(cases) != d.num_training:
            problems.append(_problem(f"numTraining is {d.num_training}, but {len(cases)} cases were found"))
        return cases, problems

    # -- preprocessing and its inverse ---------------------------------------------------------

    def preprocess(self, data, config, slab: int) -> tuple[dict, Iterator[Slab]]:
        _, nz, ny, nx = data.image.shape
        sz, sy, sx = data.spacing
        info = {"orig_shape": [nz, ny, nx], "spacing": [sz, sy, sx],
                "slice_spacing": [sz, sy * ny / config.size, sx * nx / config.size]}
        return info, self._slabs(data, config, slab)

    #: as LiTS: each slice's probabilities resized back to the original in-plane size, then the arg-max
    restore_slices = LiTS.restore_slices

    def normalisation(self, channel: int) -> str:
        """``"ct"``, ``"none"``, ``"rescale"``, ``"rgb"`` or ``"zscore"``: the rule of channel ``channel``."""
        return NORMALISATIONS.get(self.description.channel_names[channel].casefold(), "zscore")

    def _slabs(self, data, config, slab: int) -> Iterator[Slab]:
        image = data.image
        stats = brain_statistics(image, slab)
        rules = [self.normalisation(c) for c in range(len(image))]
        use_mask = _mask_share(stats, image.shape[1:]) < MASK_SHARE
        scale = {}  # channel -> (lo, hi, offset, divisor): clip to [lo, hi], then (x - offset) / divisor
        for c, rule in enumerate(rules):
            if rule == "ct":
                scale[c] = self.ct_statistics()[c]
            elif rule == "none":
                scale[c] = (-np.inf, np.inf, 0.0, 1.0)
            elif rule == "rgb":
                scale[c] = (-np.inf, np.inf, 0.0, 255.0)
            elif rule == "rescale":
                lo, hi = _extremes(image[c], slab)
                scale[c] = (-np.inf, np.inf, lo, max(hi - lo, 1e-8))
            elif use_mask:
                scale[c] = (-np.inf, np.inf, float(stats.mean[c]), max(float(stats.std[c]), 1e-8))
            else:
                mean, std = _moments(image[c], slab)
                scale[c] = (-np.inf, np.inf, mean, max(std, 1e-8))
        for z0 in range(0, image.shape[1], slab):
            part = image[:, z0:z0 + slab]
            mask = np.any(part != 0, axis=0)
            out = np.empty((len(image), part.shape[1], config.size, config.size), dtype=np.float32)
            for c, (lo, hi, offset, divisor) in scale.items():
                x = np.clip(part[c].astype(np.float32), lo, hi)
                x = (x - np.float32(offset)) / np.float32(divisor)
                if use_mask and rules[c] == "zscore":
                    x[~mask] = 0
                out[c] = resize_slices(x, config.size)
            label = resize_slices(data.label[z0:z0 + slab], config.size, labels=True)
            yield Slab(z0, np.transpose(out, (1, 0, 2, 3)).astype(np.float16), label.astype(np.uint8),
                       stats.content[z0:z0 + slab].copy())

    def ct_statistics(self) -> dict[int, tuple[float, float, float, float]]:
        """Per CT channel (by index): ``(p0.5, p99.5, mean, std)`` of the foreground intensities of all
        cases, clipped to the percentiles before the mean and std as nnU-Net's ``CTNormalization``
        applies them; computed once per process."""
        with self._lock:
            if self._ct_stats is None:
                self._ct_stats = self._compute_ct_statistics()
            return self._ct_stats

    def _compute_ct_statistics(self) -> dict[int, tuple[float, float, float, float]]:
        import nibabel as nib

        channels = [c for c in range(len(self.channels)) if self.normalisation(c) == "ct"]
        if self.root is None:
            raise OptionError(f"dataset {self.kind}: CT statistics need the dataset folder")
        cases, _ = self.find_cases(self.root)
        samples: dict[int, list[np.ndarray]] = {c: [] for c in channels}
        for case in cases:
            foreground = np.asarray(nib.load(str(case.label)).dataobj).reshape(-1) > 0
            index = np.flatnonzero(foreground)[::CT_SAMPLES]
            for c in channels:
                path = case.images[self.channels[c]]
                voxels = np.asarray(nib.load(str(path)).dataobj, dtype=np.float64).reshape(-1)
                samples[c].append(voxels[index])
        stats = {}
        for c in channels:
            values = np.concatenate(samples[c]) if samples[c] else np.zeros(0)
            if not len(values):
                raise OptionError(f"dataset {self.kind}: no foreground voxel in any case for the CT "
                                  f"statistics of channel {c:04d}")
            lo, hi = np.percentile(values, [0.5, 99.5])
            clipped = np.clip(values, lo, hi)
            stats[c] = (float(lo), float(hi), float(clipped.mean()), float(clipped.std()))
        log.info("dataset %s: CT statistics over %d cases: %s", self.kind, len(cases), stats)
        return stats

    # -- the phantom ---------------------------------------------------------------------------

    def phantom_case(self, rng: np.random.Generator, index: int, shape) -> PhantomCase:
        images, label, spacing = prostate_case(rng, shape)
        return PhantomCase(images, label, spacing, flip_xy=index % 2 == 0)

    def phantom_files(self, layout: Layout, out: Path, index: int, cases: int, ext: str) -> list[Path]:
        case = f"{PHANTOM_PREFIX}{index:03d}"
        return [*(out / IMAGES / f"{case}{layout.files[c]}{ext}" for c in self.channels),
                out / LABELS / f"{case}{ext}"]

    def phantom_index(self, layout: Layout, out: Path, cases: int, ext: str) -> None:
        meta = {**PHANTOM_JSON, "numTraining": cases, "file_ending": ext}
        (out / DATASET_JSON).write_text(json.dumps(meta, indent=4))


@dataclass
class FolderCase(Case):
    """A case of a folder's own dataset; it brings the dataset along to worker processes (whose
    table has only the dataset modules), where unpickling it registers the dataset."""

    dataset: NnUNet | None = field(default=None, repr=False, compare=False)


def _mask_share(stats, shape) -> float:
    """The share of the volume inside the bounding box of the voxels non-zero in some channel."""
    if stats.rows is None:
        return 1.0
    z = np.flatnonzero(stats.content)
    box = (z[-1] - z[0] + 1) * (stats.rows[1] - stats.rows[0] + 1) * (stats.cols[1] - stats.cols[0] + 1)
    return float(box / np.prod(shape))


def _moments(channel: np.ndarray, slab: int) -> tuple[float, float]:
    """Mean and standard deviation of a ``(Z, Y, X)`` channel, in ``float64``, slab by slab."""
    n, total, squares = 0, 0.0, 0.0
    for z0 in range(0, len(channel), slab):
        part = channel[z0:z0 + slab].astype(np.float64)
        n, total, squares = n + part.size, total + float(part.sum()), squares + float((part * part).sum())
    mean = total / n
    return mean, float(np.sqrt(max(squares / n - mean * mean, 0.0)))


def _extremes(channel: np.ndarray, slab: int) -> tuple[float, float]:
    lo = min(float(channel[z0:z0 + slab].min()) for z0 in range(0, len(channel), slab))
    hi = max(float(channel[z0:z0 + slab].max()) for z0 in range(0, len(channel), slab))
    return lo, hi


# ---------------------------------------------------------------------------------------------- phantom

#: relative intensity per tissue and channel (T2, ADC): body, peripheral zone, transition zone
_TISSUE = {"body": (0.45, 0.55), "pz": (0.85, 0.9), "tz": (0.35, 0.5)}


def prostate_case(rng: np.random.Generator, shape=(128, 128, 48)):
    """One prostate-like MRI: an elliptic body (zero outside it) holding an ellipsoid gland, its
    central transition zone (TZ, label 2) inside the peripheral zone (PZ, label 1), with a smooth
    texture, a bias field and Gaussian noise per channel.

    Returns ``(images, label, spacing)``: ``images`` maps ``T2``/``ADC`` to ``int16`` ``[z, y, x]``,
    ``label`` ``uint8``, spacing ``(z, y, x)`` mm (:data:`PHANTOM_FOV` over the shape).
    """
    nx, ny, nz = shape
    dims = (nz, ny, nx)
    spacing = tuple(fov / n for fov, n in zip(PHANTOM_FOV, dims, strict=True))
    body = (PHANTOM_FOV[1] * rng.uniform(0.36, 0.42), PHANTOM_FOV[2] * rng.uniform(0.42, 0.47))
    center = (rng.uniform(-6, 6), rng.uniform(-8, 8), rng.uniform(-8, 8))
    gland = (rng.uniform(14, 20), rng.uniform(14, 20), rng.uniform(18, 26))
    tz = tuple(r * rng.uniform(0.5, 0.65) for r in gland)
    tz_center = (center[0], center[1] - 0.3 * gland[1], center[2])  # anterior: the PZ wraps it behind

    def smooth(mm):
        return S.SmoothField(rng, dims, max(1.5, mm / min(spacing[1:])))

    edge = smooth(6)
    fields = [(smooth(3), smooth(40), rng.uniform(0.02, 0.04), rng.uniform(500, 1500))
              for _ in _TISSUE["body"]]
    noise_seed = int(rng.integers(2 ** 63))
    images = {name: np.empty(dims, dtype=np.int16) for name in PHANTOM_JSON["channel_names"].values()}
    label = np.empty(dims, dtype=np.uint8)
    step = S.slab_slices(dims)
    for z0 in range(0, nz, step):
        zi, yi, xi = np.arange(z0, min(nz, z0 + step)), np.arange(ny), np.arange(nx)
        z, y, x = S.mm_grid(zi, yi, xi, dims, spacing)
        inside = ((y / body[0]) ** 2 + (x / body[1]) ** 2 < 1) & np.ones_like(z, dtype=bool)
        wobble = 0.12 * edge.sample(zi, yi, xi)
        whole = S.ellipsoid(z, y, x, center, gland) + wobble < 1
        inner = (S.ellipsoid(z, y, x, tz_center, tz) + wobble < 1) & whole
        part = np.zeros(inside.shape, dtype=np.uint8)
        part[whole] = 1
        part[inner] = 2
        label[zi] = part
        for c, (name, (texture, bias, sigma, gain)) in enumerate(zip(images, fields, strict=True)):
            signal = np.zeros(inside.shape, dtype=np.float32)
            signal[inside] = _TISSUE["body"][c]
            signal[part == 1] = _TISSUE["pz"][c]
            signal[part == 2] = _TISSUE["tz"][c]
            signal *= (1 + 0.05 * texture.sample(zi, yi, xi)) * np.exp(0.15 * bias.sample(zi, yi, xi))
            for k, zk in enumerate(zi):  # per slice: the same noise whatever the slab
                noise = np.random.default_rng([noise_seed, c, int(zk)]).standard_normal((ny, nx), np.float32)
                signal[k] += noise * np.float32(sigma)
            scaled = np.clip(np.rint(signal * np.float32(gain)), 1, 32767)
            scaled[~inside] = 0
            images[name][zi] = scaled.astype(np.int16)
    return images, label, spacing


DATASET = NnUNet()
