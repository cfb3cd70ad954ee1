"""BraTS 2018 (glioma MRI; also the 2019-2023 releases' layouts): everything lfubench knows about it.

Layouts (:data:`LAYOUTS`, one table for the reader and the phantom writer): one folder per case
holding one file per modality and the segmentation; the case id is the folder name.

- ``brats2018``: ``<case>_flair``, ``_t1``, ``_t1ce``, ``_t2``, ``_seg`` (``.nii.gz``), the case
  folders under ``HGG/`` and ``LGG/`` (as BraTS 2018 and 2019 ship them); labels 0/1/2/4.
- ``brats2020``: the same names in flat case folders (BraTS 2020 ``.nii``, 2021 ``.nii.gz``).
- ``brats2023``: ``<case>-t2f``, ``-t1n``, ``-t1c``, ``-t2w``, ``-seg`` (``.nii.gz``), flat; labels
  0/1/2/3.

Channels are always ordered flair, t1, t1ce, t2 (2023: t2f, t1n, t1c, t2w). Internal labels: 0, 1
necrotic / non-enhancing tumor core (NCR/NET), 2 peritumoral edema (ED), 3 enhancing tumor (ET);
scored as the regions WT, TC, ET (the ``brats2023`` scheme of :func:`bench.metrics.brats_regions`),
empty-mask rule ``brats`` (the challenge's).

Preprocessing: the four modalities as channels; each z-scored over the brain mask (voxels
non-zero in any modality), zero outside it; every slice cropped or zero-padded in-plane to
``size`` x ``size`` (default 192, divisible by 16) around the centre of the brain's bounding box.
192 holds every brain of the 240 x 240 BraTS grid at 1 mm (brains span at most ~140 x 175 mm) with
less than two thirds of the pixels of 240 -> 256 padding; the crop offset is kept per case so
predictions (arg-max per slice) are pasted back onto the original grid. The per-modality mean and
standard deviation over the whole brain come first: a first pass accumulates them in ``float64``
(Chan et al.'s pairwise update), the second normalises and crops slab by slab.

Phantom (brain MRI): a skull-stripped brain (zeros outside) with cortex, white matter, deep grey
matter, ventricles and sulcal CSF (about 130 x 160 x 125 mm, 1.3-1.5 l); one tumor per case in one
hemisphere, of BraTS 2018's sizes: tumor core (TC) about 10-90 cm^3, whole tumor (WT) 2-20 % of the
brain, ET 65-85 % of the TC of HGG cases. HGG cases: necrotic core inside an enhancing shell inside
edema; LGG cases (every fourth case): a non-enhancing core and less edema, one in three with a
small enhancing focus. The four modalities give each tissue its own contrast (edema bright on
FLAIR/T2, enhancing tumor bright on T1ce only, CSF dark on FLAIR), with a smooth multiplicative
bias field per modality, Rician noise and a per-modality gain. The grid spans :data:`BRATS_FOV`,
BraTS's 155 mm by its 240 x 240 mm slices cropped to 192 x 192 mm (as preprocessing crops them):
1 mm voxels at 192 x 192 x 155, 1.5 x 1.5 x 3.2 mm at the default 128 x 128 x 48, 3 x 3 x 4.8 mm at
64 x 64 x 32; its fields count mm (at least 1.5 voxels). Files are stored LPS-like (flipped in-plane).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from . import synth as S
from .base import (
    Case,
    Dataset,
    Layout,
    PhantomCase,
    Problem,
    Slab,
    case_sort_key,
    nifti_ext,
    pick,
    visible_files,
)
from .ops import crop_or_pad, paste_slices

log = logging.getLogger(__name__)

#: the modalities, in channel order
MODALITIES = ("flair", "t1", "t1ce", "t2")
#: file-name suffixes of each role: BraTS 2018-2021, and BraTS 2023+
LEGACY_FILES = {"flair": "_flair", "t1": "_t1", "t1ce": "_t1ce", "t2": "_t2", "label": "_seg"}
FILES_2023 = {"flair": "-t2f", "t1": "-t1n", "t1ce": "-t1c", "t2": "-t2w", "label": "-seg"}
#: the official layouts; ``files`` holds the file-name suffixes
LAYOUTS = (
    Layout("brats2018", LEGACY_FILES, gzip=True, file_labels={0: 0, 1: 1, 2: 2, 4: 3}, about="HGG/LGG"),
    Layout("brats2020", LEGACY_FILES, gzip=False, file_labels={0: 0, 1: 1, 2: 2, 4: 3}, about="flat"),
    Layout("brats2023", FILES_2023, gzip=True, file_labels={0: 0, 1: 1, 2: 2, 3: 3}, about="-t2f ... -seg"),
)
#: BraTS 2018's tumor-grade folders
GROUPS = ("HGG", "LGG")
#: default phantom shape, (X, Y, Z) voxels: small enough for CPU training in minutes
PHANTOM_SHAPE = (128, 128, 48)


class BraTS(Dataset):
    """BraTS 2018 (see the module docstring)."""

    kind = "brats"
    title = "BraTS 2018"
    order = 1
    channels = MODALITIES
    in_channels = 4
    num_classes = 4
    labels = ("background", "necrotic/non-enhancing core", "edema", "enhancing tumor")
    regions = ("WT", "TC", "ET")
    region_set = "brats"
    label_scheme = "brats2023"
    default_size = 192
    empty = "brats"
    slice_context = False
    layouts = LAYOUTS
    phantom_shape = PHANTOM_SHAPE
    phantom_about = "brain MRI"
    expected_files = "<case>/<case>_flair.nii[.gz] or <case>/<case>-t2f.nii.gz"

    # -- the official layouts ------------------------------------------------------------------

    def find_cases(self, root: Path) -> tuple[list[Case], list[Problem]]:
        return _find_cases(root), []

    # -- preprocessing and its inverse ---------------------------------------------------------

    def preprocess(self, data, config, slab: int) -> tuple[dict, Iterator[Slab]]:
        stats = brain_statistics(data.image, slab)
        return _info(data, config, stats), _slabs(data, config, stats, slab)

    def restore_slices(self, probs, info: dict, out: np.ndarray, start: int) -> None:
        paste_slices(probs.argmax(1).numpy().astype(np.uint8), info["crop_offset"], out, start)

    # -- the phantom ---------------------------------------------------------------------------

    def phantom_case(self, rng: np.random.Generator, index: int, shape) -> PhantomCase:
        images, label, spacing = brats_case(rng, shape, brats_group(index) == "HGG")
        return PhantomCase(images, label, spacing, flip_xy=True)

    def phantom_files(self, layout: Layout, out: Path, index: int, cases: int, ext: str) -> list[Path]:
        if layout.name == "brats2018":
            case_id = f"Brats18_PHANTOM_{index}_1"
            folder = out / brats_group(index) / case_id
        elif layout.name == "brats2020":
            case_id = f"BraTS20_Training_{index + 1:03d}"
            folder = out / case_id
        else:
            case_id = f"BraTS-GLI-{index:05d}-000"
            folder = out / case_id
        return [folder / f"{case_id}{layout.files[role]}{ext}" for role in (*MODALITIES, "label")]


def brats_group(index: int) -> str:
    """The phantom's tumor grade: ``"LGG"`` for every fourth case (index 3, 7, ...), else ``"HGG"``."""
    return "LGG" if index % 4 == 3 else "HGG"


# ---------------------------------------------------------------------------------------------- finding cases

def _naming(files: dict[str, str]) -> tuple[re.Pattern, dict[str, str]]:
    """The pattern of one file naming and its suffix -> role table."""
    roles = {suffix: role for role, suffix in files.items()}
    return re.compile(rf"(.+)({'|'.join(re.escape(s) for s in roles)})\.nii(\.gz)?"), roles


#: the file namings, tried in this order: BraTS 2018-2021, then 2023+
_NAMINGS = {"legacy": _naming(LEGACY_FILES), "2023": _naming(FILES_2023)}


def _find_cases(root: Path) -> list[Case]:
    folders: dict[Path, dict[str, list[Path]]] = {}
    styles: dict[Path, set[str]] = {}
    for path in visible_files(root):
        for style, (regex, roles) in _NAMINGS.items():
            m = regex.fullmatch(path.name)
            if m:
                folders.setdefault(path.parent, {}).setdefault(roles[m.group(2)], []).append(path)
                styles.setdefault(path.parent, set()).add(style)
                break
    cases = []
    for folder, found in folders.items():
        case_id = folder.name
        problems: list[Problem] = []
        group = folder.parent.name if folder.parent.name in GROUPS else None
        files = FILES_2023 if styles[folder] == {"2023"} else LEGACY_FILES
        layout = LAYOUTS[2] if files is FILES_2023 else LAYOUTS[0] if group else LAYOUTS[1]
        ext = nifti_ext(next(iter(found.values()))[0])
        paths = {}
        for role in (*MODALITIES, "label"):
            suffix = files[role]
            paths[role] = (pick(case_id, suffix[1:], found[role], root, problems) if role in found
                           else folder / f"{case_id}{suffix}{ext}")
        label = paths.pop("label")
        cases.append(Case(case_id, BraTS.kind, layout.name, root, paths, label, group, problems))
    cases.sort(key=lambda c: case_sort_key(c.case_id))
    return cases


# ---------------------------------------------------------------------------------------------- preprocessing

@dataclass
class BrainStatistics:
    """What BraTS normalisation and cropping need from the whole case (:func:`brain_statistics`).

    ``mean``/``std``: per channel over the brain mask (voxels non-zero in any channel);
    ``rows``/``cols``: in-plane bounding box of the mask, ``(first, last)`` or ``None`` when empty;
    ``content``: ``bool`` ``(Z,)``, slices holding brain.
    """

    mean: np.ndarray
    std: np.ndarray
    rows: tuple[int, int] | None
    cols: tuple[int, int] | None
    content: np.ndarray


def brain_statistics(image: np.ndarray, slab: int) -> BrainStatistics:
    """One pass over ``(C, Z, Y, X)`` in slabs: per-channel count, mean and sum of squared deviations
    in ``float64``, merged slab by slab (Chan, Golub and LeVeque's pairwise update)."""
    channels, nz = image.shape[:2]
    count, mean, m2 = 0, np.zeros(channels), np.zeros(channels)
    rows, cols = np.zeros(image.shape[2], bool), np.zeros(image.shape[3], bool)
    content = np.zeros(nz, dtype=bool)
    for z0 in range(0, nz, slab):
        part = image[:, z0:z0 + slab]
        mask = np.any(part != 0, axis=0)
        n = int(mask.sum())
        content[z0:z0 + slab] = mask.any(axis=(1, 2))
        if not n:
            continue
        rows |= mask.any(axis=(0, 2))
        cols |= mask.any(axis=(0, 1))
        for c in range(channels):
            values = part[c][mask].astype(np.float64)
            m = values.mean()
            s = float(((values - m) ** 2).sum())
            delta, total = m - mean[c], count + n
            mean[c] += delta * n / total
            m2[c] += s + delta * delta * count * n / total
        count += n
    std = np.sqrt(m2 / count) if count else np.zeros(channels)

    def span(hit: np.ndarray) -> tuple[int, int] | None:
        idx = np.flatnonzero(hit)
        return (int(idx[0]), int(idx[-1])) if len(idx) else None

    return BrainStatistics(mean, std, span(rows), span(cols), content)


def _zscore(part: np.ndarray, stats: BrainStatistics) -> np.ndarray:
    mask = np.any(part != 0, axis=0)
    out = np.zeros(part.shape, dtype=np.float32)
    for c in range(part.shape[0]):
        values = part[c][mask].astype(np.float32)
        out[c][mask] = (values - np.float32(stats.mean[c])) / np.float32(max(float(stats.std[c]), 1e-6))
    return out


def _center(data, stats: BrainStatistics) -> tuple[float, float]:
    if stats.rows is None:
        return data.image.shape[2] / 2, data.image.shape[3] / 2
    return (stats.rows[0] + stats.rows[1]) / 2, (stats.cols[0] + stats.cols[1]) / 2


def _info(data, cfg, stats: BrainStatistics) -> dict:
    center = _center(data, stats)
    if stats.rows is not None:
        extent = (stats.rows[1] - stats.rows[0] + 1, stats.cols[1] - stats.cols[0] + 1)
        if max(extent) > cfg.size:
            log.warning("case %s: brain extent %dx%d exceeds the crop size %d; the edges are cut",
                        data.case_id, *extent, cfg.size)
    _, offset = crop_or_pad(data.label[:1], cfg.size, center)
    return {"orig_shape": list(data.label.shape), "spacing": list(data.spacing), "crop_offset": offset,
            "slice_spacing": list(data.spacing)}


def _slabs(data, cfg, stats: BrainStatistics, slab: int) -> Iterator[Slab]:
    center = _center(data, stats)
    for z0 in range(0, data.image.shape[1], slab):
        image, _ = crop_or_pad(_zscore(data.image[:, z0:z0 + slab], stats), cfg.size, center)
        label, _ = crop_or_pad(data.label[z0:z0 + slab], cfg.size, center)
        yield Slab(z0, np.transpose(image, (1, 0, 2, 3)).astype(np.float16), label.astype(np.uint8),
                   stats.content[z0:z0 + slab].copy())


# ---------------------------------------------------------------------------------------------- phantom

#: relative intensity per tissue and modality (flair, t1, t1ce, t2)
_TISSUE = {
    "csf": (0.12, 0.25, 0.25, 1.00),
    "gm": (0.62, 0.55, 0.58, 0.70),
    "wm": (0.50, 0.80, 0.82, 0.45),
    "edema": (0.92, 0.50, 0.52, 0.90),
    "necrosis": (0.55, 0.30, 0.32, 0.95),
    "core_lgg": (0.80, 0.45, 0.47, 0.85),
    "enhancing": (0.78, 0.55, 1.35, 0.65),
}
#: the field of view the BraTS phantom's grid spans, (z, y, x) mm: the 155 mm of a BraTS volume and
#: its 240 x 240 mm slices cropped to 192 x 192 mm around the brain (as preprocessing crops them), so
#: a 192 x 192 x 155 phantom has BraTS's 1 mm voxels and smaller shapes sample the same brain coarsely
BRATS_FOV = (155.0, 192.0, 192.0)


@dataclass
class _Brats:
    """Everything random about one brain, drawn before any voxel is made."""

    dims: tuple[int, int, int]
    spacing: tuple[float, float, float]
    radii: tuple[float, float, float]
    hgg: bool
    center: tuple[float, float, float]
    core: np.ndarray
    edema: np.ndarray
    necrosis: float
    focus: float | None
    fields: dict[str, S.SmoothField]
    modalities: list[dict] = field(default_factory=list)


def _brats_plan(rng: np.random.Generator, shape, hgg: bool) -> _Brats:
    nx, ny, nz = shape
    dims = (nz, ny, nx)
    spacing = tuple(fov / n for fov, n in zip(BRATS_FOV, dims, strict=True))

    def smooth(mm):  # correlation length in mm, at least 1.5 voxels
        return S.SmoothField(rng, dims, max(1.5, mm / min(spacing[1:])))

    # a brain of about 130 x 160 x 125 mm (1.3-1.5 l)
    ra, rb, rc = (BRATS_FOV[2] * rng.uniform(0.33, 0.37), BRATS_FOV[1] * rng.uniform(0.4, 0.44),
                  BRATS_FOV[0] * rng.uniform(0.38, 0.43))
    fields = {"brain": smooth(8), "gm": smooth(4)}
    side = rng.choice([-1, 1])
    center = (rng.uniform(-0.3, 0.3) * rc, rng.uniform(-0.45, 0.45) * rb, side * rng.uniform(0.2, 0.45) * ra)
    # tumor core (TC) about 10-90 cm^3, whole tumor (WT) about 3 times that: 2-20 % of the brain, as in
    # BraTS 2018; LGG with less edema
    radius = rng.uniform(13, 28) if hgg else rng.uniform(14, 28)
    core = radius * rng.uniform(0.8, 1.2, size=3)
    fields["core"] = smooth(5)
    edema = radius * (rng.uniform(1.3, 1.7, size=3) if hgg else rng.uniform(1.25, 1.5, size=3))
    fields["edema"] = smooth(7)
    necrosis, focus = 0.0, None
    if hgg:
        necrosis = rng.uniform(0.25, 0.5)
    elif rng.random() < 0.35:
        focus = rng.uniform(3, 6)
    plan = _Brats(dims, spacing, (rc, rb, ra), hgg, center, core, edema, necrosis, focus, fields)
    for _ in MODALITIES:
        plan.modalities.append({"texture": smooth(3), "bias": smooth(40),
                                "sigma": rng.uniform(0.025, 0.045), "seed": int(rng.integers(2 ** 63)),
                                "gain": rng.uniform(300, 1200)})
    return plan


def _brats_layers(p: _Brats, zi, yi, xi) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brain mask, tissue (0 out, 1 csf, 2 gm, 3 wm) and internal labels of the voxels ``zi x yi x xi``."""
    z, y, x = S.mm_grid(zi, yi, xi, p.dims, p.spacing)
    f = p.fields
    rc, rb, ra = p.radii
    rr = S.ellipsoid(z, y, x, (0.0, 0.0, 0.0), (rc, rb, ra)) + 0.05 * f["brain"].sample(zi, yi, xi)
    brain = rr < 1
    tissue = np.zeros(brain.shape, dtype=np.uint8)
    tissue[brain] = 3
    tissue[brain & (rr > 0.74 + 0.07 * f["gm"].sample(zi, yi, xi))] = 2
    tissue[brain & (rr > 0.95)] = 1
    for side in (-1, 1):
        thalamus = S.ellipsoid(z, y, x, (0.1 * rc, -0.12 * rb, side * 0.18 * ra),
                              (0.3 * rc, 0.22 * rb, 0.1 * ra))
        tissue[thalamus < 1] = 2
        ventricle = S.ellipsoid(z, y, x, (0.2 * rc, 0.05 * rb, side * 0.08 * ra),
                               (0.35 * rc, 0.35 * rb, 0.06 * ra))
        tissue[ventricle < 1] = 1
    tissue[~brain] = 0

    core_e = S.ellipsoid(z, y, x, p.center, p.core) + 0.15 * f["core"].sample(zi, yi, xi)
    edema_e = S.ellipsoid(z, y, x, p.center, p.edema) + 0.3 * f["edema"].sample(zi, yi, xi)
    label = np.zeros(brain.shape, dtype=np.uint8)
    label[(edema_e < 1) & brain & (tissue != 1)] = 2
    if p.hgg:
        label[(core_e < 1) & brain] = 3
        label[(core_e < p.necrosis) & brain] = 1
    else:
        label[(core_e < 1) & brain] = 1
        if p.focus is not None:
            label[(S.ellipsoid(z, y, x, p.center, (p.focus,) * 3) < 1) & brain] = 3
    return brain, tissue, label


def _brats_slab(p: _Brats, z0: int, z1: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Slices ``z0 ... z1 - 1`` of the four ``int16`` modalities and the labels."""
    nz, ny, nx = p.dims
    halo = 2  # the blur (sigma 0.6) reaches two slices
    zi = S.reflect(np.arange(z0 - halo, z1 + halo), nz)
    yi, xi = np.arange(ny), np.arange(nx)
    brain, tissue, label = _brats_layers(p, zi, yi, xi)
    inside = slice(halo, halo + z1 - z0)
    images = {}
    for m, (name, mod) in enumerate(zip(MODALITIES, p.modalities, strict=True)):
        signal = np.zeros(brain.shape, dtype=np.float32)
        for value, key in {1: "csf", 2: "gm", 3: "wm"}.items():
            signal[tissue == value] = _TISSUE[key][m]
        signal[label == 2] = _TISSUE["edema"][m]
        signal[label == 1] = _TISSUE["necrosis" if p.hgg else "core_lgg"][m]
        signal[label == 3] = _TISSUE["enhancing"][m]
        signal *= 1 + 0.04 * mod["texture"].sample(zi, yi, xi)
        signal = ndimage.gaussian_filter1d(signal, 0.6, axis=0)[inside]
        for axis in (1, 2):
            ndimage.gaussian_filter1d(signal, 0.6, axis=axis, output=signal)
        signal *= np.exp(0.2 * mod["bias"].sample(zi[inside], yi, xi))
        for k, z in enumerate(range(z0, z1)):  # Rician magnitude noise
            g = np.random.default_rng([mod["seed"], z])
            real = g.standard_normal((ny, nx), dtype=np.float32) * np.float32(mod["sigma"])
            imag = g.standard_normal((ny, nx), dtype=np.float32) * np.float32(mod["sigma"])
            signal[k] = np.sqrt((signal[k] + real) ** 2 + imag ** 2)
        scaled = np.clip(np.rint(signal * np.float32(mod["gain"])), 1, 32767)
        scaled[~brain[inside]] = 0
        images[name] = scaled.astype(np.int16)
    return images, label[inside]


def brats_case(rng: np.random.Generator, shape=PHANTOM_SHAPE, hgg: bool = True):
    """One MRI-like brain with a glioma, made a slab of slices at a time.

    Args:
        rng: the case's random generator.
        shape: ``(X, Y, Z)`` voxels spanning :data:`BRATS_FOV`.
        hgg: high-grade (necrosis + enhancing shell) or low-grade (non-enhancing core) tumor.

    Returns:
        ``(images, label, spacing)``: ``images`` maps flair/t1/t1ce/t2 to ``int16`` arrays in
        canonical ``[z, y, x]`` order (zero outside the brain); ``label`` is ``uint8`` in the
        internal convention (1 necrotic/non-enhancing core, 2 edema, 3 enhancing); spacing ``(z, y, x)``
        in mm (:data:`BRATS_FOV` over the shape).
    """
    plan = _brats_plan(rng, shape, hgg)
    images = {name: np.empty(plan.dims, dtype=np.int16) for name in MODALITIES}
    label = np.empty(plan.dims, dtype=np.uint8)
    step = S.slab_slices(plan.dims)
    for z0 in range(0, plan.dims[0], step):
        z1 = min(plan.dims[0], z0 + step)
        slab, label[z0:z1] = _brats_slab(plan, z0, z1)
        for name in MODALITIES:
            images[name][z0:z1] = slab[name]
    return images, label, plan.spacing



DATASET = BraTS()
