"""LiTS 2017 (liver and liver-tumor CT), also as MSD Task03_Liver: everything lfubench knows about it.

Layouts (:data:`LAYOUTS`, one table for the reader and the phantom writer):

- ``lits``: ``volume-N.nii`` with ``segmentation-N.nii``, anywhere below the root (the official
  download splits them into ``Training Batch 1/`` and ``Training Batch 2/``); case id ``N``.
- ``msd``: ``imagesTr/liver_N.nii.gz`` and ``labelsTr/liver_N.nii.gz`` next to ``dataset.json`` (in
  the root or one folder below it, ``Task03_Liver/``); case id ``liver_N``.

Labels 0 background, 1 liver, 2 tumor, in the files and internally; scored as ``liver`` (label
>= 1) and ``tumor`` (label 2); empty-mask rule ``diagonal``.

Preprocessing: HU clipped to the window ``[-200, 250]`` and scaled to [0, 1]; every axial slice
resized in-plane to ``size`` x ``size`` (bilinear with antialiasing for the image, nearest for
labels). The 2.5D input (``context`` = 3 adjacent slices as channels, edges repeated) is assembled
when reading the cache, so each slice is stored once. Slices are independent, so slab-wise output
equals whole-volume output. Predictions go back by resizing each slice's probabilities bilinearly
to the original in-plane size before the arg-max.

Phantom (CT abdomen): an elliptical body with subcutaneous fat, textured soft tissue with fat and
bowel-gas pockets, spine and spinal canal, paraspinal muscles, aorta and IVC, two kidneys, the
stomach, a spleen whose HU is close to the liver's (the hardest distractor), and a two-lobed
liver (HU 55-68, boundary perturbed by a smooth random field) crossed by contrast-filled vessels
(labelled liver) holding 0-5 hypodense tumors (HU 28-42, radii log-uniform over 5-35 mm, some with
an enhancing rim; about one case in seven is tumor-free; the tumor burden is a few % of the liver
volume in most cases, up to ~15 % in a few, as in LiTS). CT-like correlated noise and partial-volume
blur. Spacing is anisotropic and varies per case (in-plane FOV 330-400 mm, slab 200-260 mm: about
2.6-3.1 x 2.6-3.1 x 4.2-5.4 mm at the default 128 x 128 x 48). Vessels and tumors are placed from
the liver found on a grid no finer than the default shape's. The fields (texture, boundary
perturbations) are defined relative to the body (their correlation lengths count voxels of the
default 128 x 128 x 48 grid), so a 512 x 512 x 987 volume samples the same anatomy more finely.
Even-numbered cases are stored flipped in-plane (LPS-like), odd ones as RAS.
"""

from __future__ import annotations

import json
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
from .ops import resize_slices

#: label values of the files (LiTS and MSD alike) -> internal labels
FILE_LABELS = {0: 0, 1: 1, 2: 2}
#: the official layouts; ``files`` holds the file-name prefixes (lits) and folder names (msd)
LAYOUTS = (
    Layout("lits", {"ct": "volume", "label": "segmentation"}, gzip=False, file_labels=FILE_LABELS,
           about="Training Batch 1/2"),
    Layout("msd", {"ct": "imagesTr", "label": "labelsTr"}, gzip=True, file_labels=FILE_LABELS,
           about="Task03_Liver"),
)
#: the MSD task folder a phantom is written to, and its case-name prefix
MSD_TASK, MSD_PREFIX = "Task03_Liver", "liver_"
#: cases in ``Training Batch 1`` of the official download's 131
BATCH1_OF_131 = 28
#: default phantom shape, (X, Y, Z) voxels: small enough for CPU training in minutes
PHANTOM_SHAPE = (128, 128, 48)
#: slices resized to the original in-plane size at once (restoring): bounds the full-size probabilities
RESIZE_CHUNK = 8
#: the grid the phantom's random fields are defined on (z, y, x): larger volumes sample the
#: same anatomy more finely instead of getting finer texture
_FIELD_GRID = tuple(reversed(PHANTOM_SHAPE))


class LiTS(Dataset):
    """LiTS 2017 / MSD Task03_Liver (see the module docstring)."""

    kind = "lits"
    title = "LiTS 2017"
    order = 0
    channels = ("ct",)
    in_channels = 3
    num_classes = 3
    labels = ("background", "liver", "tumor")
    regions = ("liver", "tumor")
    region_set = "lits"
    label_scheme = "auto"
    default_size = 256
    empty = "diagonal"
    slice_context = True
    layouts = LAYOUTS
    phantom_shape = PHANTOM_SHAPE
    phantom_about = "CT abdomen"
    expected_files = "volume-N.nii[.gz]"

    # -- the official layouts ------------------------------------------------------------------

    def find_cases(self, root: Path) -> tuple[list[Case], list[Problem]]:
        msd = _msd_folder(root)
        if msd is None:
            return _find_lits(root), []
        return _find_msd(root, msd)

    # -- preprocessing and its inverse ---------------------------------------------------------

    def preprocess(self, data, config, slab: int) -> tuple[dict, Iterator[Slab]]:
        _, nz, ny, nx = data.image.shape
        sz, sy, sx = data.spacing
        info = {"orig_shape": [nz, ny, nx], "spacing": [sz, sy, sx],
                "slice_spacing": [sz, sy * ny / config.size, sx * nx / config.size]}
        return info, _slabs(data, config, slab)

    def restore_slices(self, probs, info: dict, out: np.ndarray, start: int) -> None:
        import torch

        _, ny, nx = info["orig_shape"]
        for s in range(0, len(probs), RESIZE_CHUNK):  # full-size probabilities of a few slices at a time
            full = torch.nn.functional.interpolate(probs[s:s + RESIZE_CHUNK], size=(ny, nx), mode="bilinear",
                                                   align_corners=False)
            out[start + s:start + s + len(full)] = full.argmax(1).numpy()

    # -- the phantom ---------------------------------------------------------------------------

    def phantom_case(self, rng: np.random.Generator, index: int, shape) -> PhantomCase:
        hu, label, spacing = lits_case(rng, shape)
        return PhantomCase({"ct": hu}, label, spacing, flip_xy=index % 2 == 0)

    def phantom_files(self, layout: Layout, out: Path, index: int, cases: int, ext: str) -> list[Path]:
        files = layout.files
        if layout.name == "msd":
            task = out / MSD_TASK
            return [task / files[role] / f"{MSD_PREFIX}{index}{ext}" for role in ("ct", "label")]
        batch1 = max(1, round(cases * BATCH1_OF_131 / 131))
        folder = out / ("Training Batch 1" if index < batch1 else "Training Batch 2")
        return [folder / f"{files[role]}-{index}{ext}" for role in ("ct", "label")]

    def phantom_index(self, layout: Layout, out: Path, cases: int, ext: str) -> None:
        if layout.name != "msd":
            return
        training = [{"image": f"./{layout.files['ct']}/{MSD_PREFIX}{i}{ext}",
                     "label": f"./{layout.files['label']}/{MSD_PREFIX}{i}{ext}"} for i in range(cases)]
        meta = {
            "name": "Liver", "description": "lfubench phantom in the MSD Task03_Liver layout",
            "tensorImageSize": "3D", "modality": {"0": "CT"},
            "labels": {"0": "background", "1": "liver", "2": "cancer"},
            "numTraining": cases, "numTest": 0, "training": training, "test": [],
        }
        (out / MSD_TASK / "dataset.json").write_text(json.dumps(meta, indent=4))


# ---------------------------------------------------------------------------------------------- finding cases

_LITS = LAYOUTS[0]
_ROLE_OF_PREFIX = {prefix: role for role, prefix in _LITS.files.items()}
_LITS_RE = re.compile(rf"({'|'.join(_ROLE_OF_PREFIX)})-(\d+)\.nii(\.gz)?")


def _find_lits(root: Path) -> list[Case]:
    found: dict[str, dict[str, list[Path]]] = {}
    for path in visible_files(root):
        m = _LITS_RE.fullmatch(path.name)
        if m:
            found.setdefault(m.group(2), {}).setdefault(_ROLE_OF_PREFIX[m.group(1)], []).append(path)
    cases = []
    for n in sorted(found, key=int):
        problems: list[Problem] = []
        roles = found[n]
        some = next(iter(roles.values()))[0]
        paths = {}
        for role in ("ct", "label"):
            name = _LITS.files[role]
            paths[role] = (pick(n, name, roles[role], root, problems) if role in roles
                           else some.parent / f"{name}-{n}{nifti_ext(some)}")
        cases.append(Case(str(int(n)), LiTS.kind, _LITS.name, root, {"ct": paths["ct"]}, paths["label"],
                          problems=problems))
    return cases


def _msd_folder(root: Path) -> Path | None:
    images = LAYOUTS[1].files["ct"]
    if (root / images).is_dir():
        return root
    below = [d for d in sorted(root.iterdir()) if d.is_dir() and (d / images).is_dir()]
    return below[0] if len(below) == 1 else None


def _find_msd(root: Path, task: Path) -> tuple[list[Case], list[Problem]]:
    layout = LAYOUTS[1]
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
        images = list(visible_files(task / layout.files["ct"]))
        pairs = [(p, task / layout.files["label"] / p.name) for p in images]
    cases = []
    for image, label in pairs:
        case_id = image.name.split(".nii")[0]
        cases.append(Case(case_id, LiTS.kind, layout.name, root, {"ct": image}, label))
    cases.sort(key=lambda c: case_sort_key(c.case_id))
    return cases, problems


# ---------------------------------------------------------------------------------------------- preprocessing

def window(ct: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Clip HU to ``[lo, hi]`` and scale to ``[0, 1]`` (``float32``, computed in ``float32``)."""
    ct = np.asarray(ct, dtype=np.float32)
    return ((np.clip(ct, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def _slabs(data, config, slab: int) -> Iterator[Slab]:
    lo, hi = config.hu_window
    ct = data.image[0]
    for z0 in range(0, len(ct), slab):
        part = ct[z0:z0 + slab]
        image = np.clip(resize_slices(window(part, lo, hi), config.size), 0, 1)
        label = resize_slices(data.label[z0:z0 + slab], config.size, labels=True)
        content = np.count_nonzero(part > -500, axis=(1, 2)) / (part.shape[1] * part.shape[2]) > 0.01
        yield Slab(z0, image[:, None].astype(np.float16), label.astype(np.uint8), content)


# ---------------------------------------------------------------------------------------------- phantom

@dataclass
class _Lits:
    """Everything random about one CT abdomen, drawn before any voxel is made."""

    dims: tuple[int, int, int]
    spacing: tuple[float, float, float]
    zext: float
    a: float
    b: float
    wobble: tuple[float, float]
    fat: float
    ys: float
    liver_hu: float
    spleen_hu: float
    liver: tuple[float, float, float]
    fields: dict[str, S.SmoothField]
    vessels: list[tuple[np.ndarray, np.ndarray, float, float]] = field(default_factory=list)
    tumors: list[dict] = field(default_factory=list)
    noise: tuple[int, float] = (0, 0.0)


def _lits_plan(rng: np.random.Generator, shape) -> _Lits:
    nx, ny, nz = shape
    fov = rng.uniform(330, 400)
    spacing = (rng.uniform(200, 260) / nz, fov / ny, fov / nx)
    dims = (nz, ny, nx)
    a = rng.uniform(0.36, 0.42) * fov
    b = a * rng.uniform(0.62, 0.74)
    wobble = (rng.uniform(25, 45), rng.uniform(0, 6.3))
    fat = rng.uniform(8, 20)

    def smooth(scale):
        return S.SmoothField(rng, dims, scale, _FIELD_GRID)

    fields = {"texture": smooth(6), "fat": smooth(5), "gas": smooth(4)}
    liver_hu = rng.uniform(55, 68)
    spleen_hu = liver_hu + rng.uniform(-8, 6)
    fields["spleen"] = smooth(8)
    zext = nz * spacing[0]
    liver = (rng.uniform(0.02, 0.14) * zext, rng.uniform(0.32, 0.4) * zext, rng.uniform(0.42, 0.5) * a)
    fields["liver_edge"], fields["liver"] = smooth(10), smooth(5)
    plan = _Lits(dims, tuple(float(s) for s in spacing), zext, a, b, wobble, fat, -b * 0.55, liver_hu,
                 spleen_hu, liver, fields)

    # vessels and tumors need the liver: find it on a grid about as fine as the default shape
    step = [-(-n // g) for n, g in zip(dims, _FIELD_GRID, strict=True)]  # at most the default grid
    axes = [np.arange(0, n, s) for n, s in zip(dims, step, strict=True)]
    _, label = _lits_layers(plan, *axes, details=False)
    liver_mask = label == 1
    z, y, x = (S.mm_coords(i, n, sp) for i, n, sp in zip(axes, dims, spacing, strict=True))
    idx = np.nonzero(liver_mask)
    if len(idx[0]):
        hilum = np.array([z[idx[0]].mean(), y[idx[1]].mean(), x[idx[2]].mean() - 0.1 * a])
        for _ in range(rng.integers(3, 6)):
            direction = rng.normal(size=3) * np.array([0.5, 1, 1])
            end = hilum + direction / np.linalg.norm(direction) * rng.uniform(30, 70)
            plan.vessels.append((hilum, end, rng.uniform(2.5, 5), liver_hu + rng.uniform(70, 110)))

    # tumors strictly inside the liver: centres at least their radius + 2 mm from its surface. As in
    # LiTS: 0-5 lesions (about one case in seven without), radii log-uniform over 5-35 mm (lesions
    # of 1-7 cm), a tumor burden of a few % of the liver volume in most cases, more in a few
    n_tumors = rng.choice(6, p=[0.15, 0.3, 0.25, 0.15, 0.1, 0.05])
    depth = ndimage.distance_transform_edt(liver_mask, sampling=[s * k for s, k in zip(spacing, step,
                                                                                        strict=True)])
    for _ in range(n_tumors):
        r = float(np.exp(rng.uniform(np.log(5), np.log(35))))
        candidates = np.argwhere(depth > r + 2)
        if not len(candidates):
            candidates = np.argwhere(depth > max(depth.max() * 0.6, 1e-3))
            r = min(r, max(depth.max() * 0.6, 3.0))
        if not len(candidates):
            break
        cz, cy, cx = candidates[rng.integers(len(candidates))]
        tumor = {"center": (z[cz], y[cy], x[cx]), "radii": r * rng.uniform(0.75, 1.25, size=3),
                 "field": smooth(4), "hu": rng.uniform(28, 42), "rim": None}
        if rng.random() < 0.3:
            tumor["rim"] = liver_hu + rng.uniform(10, 25)
        plan.tumors.append(tumor)
    plan.noise = (int(rng.integers(2 ** 63)), float(rng.uniform(7, 11)))
    return plan


def _lits_layers(p: _Lits, zi, yi, xi, details: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """HU (``float32``, before blur and noise) and labels of the voxels ``zi x yi x xi``."""
    axes = [S.mm_coords(i, n, s) for i, n, s in zip((zi, yi, xi), p.dims, p.spacing, strict=True)]
    z, y, x = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    f = p.fields
    shape = (len(zi), len(yi), len(xi))
    hu = np.full(shape, -1000.0, dtype=np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    a, b, ys = p.a, p.b, p.ys

    # body outline, subcutaneous fat, soft tissue with fat and gas pockets
    wobble = 1 + 0.04 * np.sin(z / p.wobble[0] + p.wobble[1])
    body = (x / (a * wobble)) ** 2 + (y / (b * wobble)) ** 2 < 1
    inner = (x / (a * wobble - p.fat)) ** 2 + (y / (b * wobble - p.fat)) ** 2 < 1
    hu[body] = -100
    np.copyto(hu, 22 + 14 * f["texture"].sample(zi, yi, xi), where=inner)
    hu[inner & (f["fat"].sample(zi, yi, xi) > 0.7)] = -90
    hu[inner & (y > 0) & (f["gas"].sample(zi, yi, xi) > 1.7)] = -750

    # spine, paraspinal muscles, great vessels
    r_spine = np.sqrt(x ** 2 + (y - ys) ** 2)
    np.copyto(hu, 700, where=r_spine < 18)
    np.copyto(hu, 280, where=r_spine < 15)
    np.copyto(hu, 20, where=np.sqrt(x ** 2 + (y - ys + 24) ** 2) < 7)
    for side in (-1, 1):
        np.copyto(hu, 52, where=((x - side * 38) / 24) ** 2 + ((y - ys + 18) / 16) ** 2 < 1)

    def organ(center, radii, reach=1.0):
        """The box around an ellipsoid and its coordinates there."""
        grow = np.asarray(radii) * reach
        box = S.index_box(axes, np.asarray(center) - grow, np.asarray(center) + grow)
        zb, yb, xb = (ax[s] for ax, s in zip(axes, box, strict=True))
        return box, (zb[:, None, None], yb[None, :, None], xb[None, None, :])

    # kidneys, stomach, spleen (HU close to the liver's)
    for side, dz in ((-1, 0.02), (1, -0.05)):
        center, radii = ((dz - 0.18) * p.zext, ys + 8, side * 62), (48, 20, 24)
        box, (zb, yb, xb) = organ(center, radii)
        e = S.ellipsoid(zb, yb, xb, center, radii)
        hu[box][e < 1] = 150
        hu[box][e < 0.3] = 105
    center, radii = (0.12 * p.zext, 0.3 * b, -0.35 * a), (38, 0.3 * b, 0.25 * a)
    box, (zb, yb, xb) = organ(center, radii)
    stomach = S.ellipsoid(zb, yb, xb, center, radii) < 1
    hu[box][stomach] = 15
    hu[box][stomach & (yb > 0.48 * b)] = -800
    center, radii = (0.08 * p.zext, ys + 0.35 * b, -0.68 * a), (45, 0.38 * b, 0.16 * a)
    box, (zb, yb, xb) = organ(center, radii, S.field_reach(f["spleen"], 0.15))
    field_sub = f["spleen"].sample(*(i[s] for i, s in zip((zi, yi, xi), box, strict=True)))
    spleen = (S.ellipsoid(zb, yb, xb, center, radii) + 0.15 * field_sub < 1) & inner[box]
    hu[box][spleen] = p.spleen_hu

    # liver: a large right lobe and a smaller left lobe, perturbed boundary, inside the body wall
    zl, rz, rx = p.liver
    lobes = [((zl, -0.05 * b, 0.42 * a), (rz, 0.72 * b, rx)),
             ((zl + 0.35 * rz, 0.35 * b, -0.12 * a), (0.5 * rz, 0.32 * b, 0.4 * a))]
    reach = S.field_reach(f["liver_edge"], 0.2)
    lo = np.min([np.asarray(c) - np.asarray(r) * reach for c, r in lobes], axis=0)
    hi = np.max([np.asarray(c) + np.asarray(r) * reach for c, r in lobes], axis=0)
    box = S.index_box(axes, lo, hi)
    sub = [i[s] for i, s in zip((zi, yi, xi), box, strict=True)]
    zb, yb, xb = (ax[s] for ax, s in zip(axes, box, strict=True))
    zb, yb, xb = zb[:, None, None], yb[None, :, None], xb[None, None, :]
    right = S.ellipsoid(zb, yb, xb, *lobes[0])
    left = S.ellipsoid(zb, yb, xb, *lobes[1])
    liver = (np.minimum(right, left) + 0.2 * f["liver_edge"].sample(*sub) < 1) & inner[box]
    liver &= ~(np.sqrt(xb ** 2 + (yb - ys) ** 2) < 24)
    np.copyto(hu[box], p.liver_hu + 4 * f["liver"].sample(*sub), where=liver)
    label[box][liver] = 1
    np.copyto(hu, 170, where=np.sqrt((x + 18) ** 2 + (y - ys - 26) ** 2) < 11)  # aorta
    ivc = np.sqrt((x - 22) ** 2 + (y - ys - 30) ** 2) < 10
    np.copyto(hu, 130, where=ivc)
    np.copyto(label, 0, where=ivc)
    if not details:
        return hu, label

    for p0, p1, radius, value in p.vessels:  # contrast-filled, labelled liver
        box = S.index_box(axes, np.minimum(p0, p1) - radius, np.maximum(p0, p1) + radius)
        zb, yb, xb = (ax[s] for ax, s in zip(axes, box, strict=True))
        vessel = (S.segment_distance(zb[:, None, None], yb[None, :, None], xb[None, None, :], p0, p1)
                  < radius) & (label[box] == 1)
        hu[box][vessel] = value
    for t in p.tumors:
        box, (zb, yb, xb) = organ(t["center"], t["radii"], S.field_reach(t["field"], 0.15))
        e = S.ellipsoid(zb, yb, xb, t["center"], t["radii"])
        e = e + 0.15 * t["field"].sample(*(i[s] for i, s in zip((zi, yi, xi), box, strict=True)))
        tumor = (e < 1) & (label[box] == 1)
        hu[box][tumor] = t["hu"]
        if t["rim"] is not None:
            hu[box][tumor & (e > 0.7)] = t["rim"]
        label[box][tumor] = 2
    return hu, label


#: std of the in-plane filtered CT noise before scaling
_CT_NOISE_STD = S.gaussian_std(0.7, 2)


def _lits_slab(p: _Lits, z0: int, z1: int) -> tuple[np.ndarray, np.ndarray]:
    """Slices ``z0 ... z1 - 1``: ``int16`` HU (partial-volume blur, correlated noise) and labels."""
    nz, ny, nx = p.dims
    zi = S.reflect(np.arange(z0 - 1, z1 + 1), nz)  # one slice more each side for the blur across slices
    hu, label = _lits_layers(p, zi, np.arange(ny), np.arange(nx))
    hu = ndimage.gaussian_filter1d(hu, 0.3, axis=0)[1:-1]
    for axis in (1, 2):
        ndimage.gaussian_filter1d(hu, 0.6, axis=axis, output=hu)
    seed, amplitude = p.noise
    for k, z in enumerate(range(z0, z1)):
        noise = np.random.default_rng([seed, z]).standard_normal((ny, nx), dtype=np.float32)
        hu[k] += ndimage.gaussian_filter(noise, 0.7) * np.float32(amplitude / _CT_NOISE_STD)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16), label[1:-1]


def lits_case(rng: np.random.Generator, shape=PHANTOM_SHAPE):
    """One CT-like abdomen, made a slab of slices at a time.

    Args:
        rng: the case's random generator.
        shape: ``(X, Y, Z)`` voxels.

    Returns:
        ``(hu, label, spacing)``: ``int16`` HU and ``uint8`` labels (0/1/2) in canonical ``[z, y, x]``
        order, spacing ``(z, y, x)`` in mm.
    """
    plan = _lits_plan(rng, shape)
    hu = np.empty(plan.dims, dtype=np.int16)
    label = np.empty(plan.dims, dtype=np.uint8)
    step = S.slab_slices(plan.dims)
    for z0 in range(0, plan.dims[0], step):
        z1 = min(plan.dims[0], z0 + step)
        hu[z0:z1], label[z0:z1] = _lits_slab(plan, z0, z1)
    return hu, label, plan.spacing



DATASET = LiTS()
