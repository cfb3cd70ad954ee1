"""Synthetic stand-ins for LiTS 2017 and BraTS, written as NIfTI files in the real layouts.

The phantoms are the embedded default data: they run on a fresh machine (the real data sets
cannot be downloaded at run time) and exercise exactly the readers used for the real data.

CT abdomen (LiTS): an elliptical body with subcutaneous fat, textured soft tissue with fat and
bowel-gas pockets, spine and spinal canal, paraspinal muscles, aorta and IVC, two kidneys, the
stomach, a spleen whose HU is close to the liver's (the hardest distractor), and a two-lobed
liver (HU 55-68, boundary perturbed by a smooth random field) crossed by contrast-filled vessels
(labelled liver) holding 0-3 hypodense tumors (HU 28-42, 6-20 mm radius, some with an enhancing
rim; about one case in five is tumor-free). CT-like correlated noise and partial-volume blur.
Spacing is anisotropic and varies per case (in-plane FOV 330-400 mm, slab 200-260 mm: about
2.6-3.1 x 2.6-3.1 x 4.2-5.4 mm at the default 128 x 128 x 48). Labels 0/1/2.

MRI brain (BraTS): a skull-stripped brain (zeros outside) with cortex, white matter, deep grey
matter, ventricles and sulcal CSF; one tumor per case in one hemisphere. HGG cases: necrotic
core inside an enhancing shell inside edema; LGG cases (every fourth case): a non-enhancing core
and edema, one in three with a small enhancing focus. The four modalities give each tissue its
own contrast (edema bright on FLAIR/T2, enhancing tumor bright on T1ce only, CSF dark on FLAIR),
with a smooth multiplicative bias field per modality, Rician noise and a per-modality gain.
Spacing 1 mm isotropic. BraTS 2018 labels 0/1/2/4 (2023 naming: 0/1/2/3).

Every case is generated from ``numpy.random.default_rng([seed, index])``: deterministic for a seed,
and the first cases do not change when more are asked for.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from tqdm import tqdm

from ..errors import OptionError

log = logging.getLogger(__name__)

#: default phantom shapes, (X, Y, Z) voxels: small enough for CPU training in minutes
DEFAULT_SHAPE = {"lits": (128, 128, 48), "brats": (128, 128, 48)}
LAYOUTS = {"lits": ("lits", "msd"), "brats": ("brats2018", "brats2020", "brats2023")}
_GZIP_DEFAULT = {"lits": False, "msd": True, "brats2018": True, "brats2020": False, "brats2023": True}
_BRATS_FILE_SUFFIX = {
    "brats2018": {"flair": "_flair", "t1": "_t1", "t1ce": "_t1ce", "t2": "_t2", "seg": "_seg"},
    "brats2020": {"flair": "_flair", "t1": "_t1", "t1ce": "_t1ce", "t2": "_t2", "seg": "_seg"},
    "brats2023": {"flair": "-t2f", "t1": "-t1n", "t1ce": "-t1c", "t2": "-t2w", "seg": "-seg"},
}


# ---------------------------------------------------------------------------------------------- helpers

def _grid(shape_zyx, spacing_zyx):
    """Coordinates in mm, centred on the volume, as three broadcastable arrays (z, y, x)."""
    axes = [(np.arange(n, dtype=np.float32) - (n - 1) / 2) * s for n, s in zip(shape_zyx, spacing_zyx,
                                                                              strict=True)]
    return axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]


def _smooth_field(rng, shape, scale: float) -> np.ndarray:
    """A smooth random field of zero mean and unit std with correlation length ``scale`` voxels.

    White noise on a grid two points per ``scale``, blurred there and upsampled trilinearly.
    """
    import torch
    import torch.nn.functional as F

    low = tuple(max(3, int(np.ceil(2 * n / scale)) + 2) for n in shape)
    coarse = ndimage.gaussian_filter(rng.standard_normal(low).astype(np.float32), 1.0, mode="wrap")
    field = F.interpolate(torch.from_numpy(coarse)[None, None], size=tuple(shape), mode="trilinear",
                          align_corners=True)[0, 0].numpy()
    return (field - field.mean()) / (field.std() + 1e-6)


def _ellipsoid(z, y, x, center, radii):
    """Normalised squared radius (< 1 inside) of an axis-aligned ellipsoid; centre/radii in (z, y, x) mm."""
    return (((z - center[0]) / radii[0]) ** 2 + ((y - center[1]) / radii[1]) ** 2
            + ((x - center[2]) / radii[2]) ** 2)


def _segment_distance(z, y, x, p0, p1):
    """Distance (mm) from every voxel to the segment p0-p1 (points in (z, y, x) mm)."""
    p0, d = np.asarray(p0, np.float32), np.asarray(p1, np.float32) - np.asarray(p0, np.float32)
    t = ((z - p0[0]) * d[0] + (y - p0[1]) * d[1] + (x - p0[2]) * d[2]) / float(d @ d + 1e-6)
    t = np.clip(t, 0, 1)
    return np.sqrt((z - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2 + (x - p0[2] - t * d[2]) ** 2)


# ---------------------------------------------------------------------------------------------- CT abdomen

def lits_case(rng: np.random.Generator, shape=DEFAULT_SHAPE["lits"]):
    """One CT-like abdomen.

    Args:
        rng: the case's random generator.
        shape: ``(X, Y, Z)`` voxels.

    Returns:
        ``(hu, label, spacing)``: ``int16`` HU and ``uint8`` labels (0/1/2) in canonical ``[z, y, x]``
        order, spacing ``(z, y, x)`` in mm.
    """
    nx, ny, nz = shape
    fov = rng.uniform(330, 400)
    spacing = (rng.uniform(200, 260) / nz, fov / ny, fov / nx)
    dims = (nz, ny, nx)
    z, y, x = _grid(dims, spacing)
    zext = nz * spacing[0]
    hu = np.full(dims, -1000.0, dtype=np.float32)
    label = np.zeros(dims, dtype=np.uint8)

    # body outline, subcutaneous fat, soft tissue with fat and gas pockets
    a = rng.uniform(0.36, 0.42) * fov
    b = a * rng.uniform(0.62, 0.74)
    wobble = 1 + 0.04 * np.sin(z / rng.uniform(25, 45) + rng.uniform(0, 6.3))
    body = (x / (a * wobble)) ** 2 + (y / (b * wobble)) ** 2 < 1
    fat = rng.uniform(8, 20)
    inner = (x / (a * wobble - fat)) ** 2 + (y / (b * wobble - fat)) ** 2 < 1
    body, inner = np.broadcast_to(body, dims), np.broadcast_to(inner, dims)
    hu[body] = -100
    hu[inner] = (22 + 14 * _smooth_field(rng, dims, 6))[inner]
    hu[inner & (_smooth_field(rng, dims, 5) > 0.7)] = -90
    gas = inner & (y > 0) & (_smooth_field(rng, dims, 4) > 1.7)
    hu[gas] = -750

    # spine, paraspinal muscles, great vessels
    ys = -b * 0.55
    r_spine = np.sqrt(x ** 2 + (y - ys) ** 2)
    hu[np.broadcast_to(r_spine < 18, dims)] = 700
    hu[np.broadcast_to(r_spine < 15, dims)] = 280
    hu[np.broadcast_to(np.sqrt(x ** 2 + (y - ys + 24) ** 2) < 7, dims)] = 20
    for side in (-1, 1):
        hu[np.broadcast_to(((x - side * 38) / 24) ** 2 + ((y - ys + 18) / 16) ** 2 < 1, dims)] = 52

    # kidneys, stomach, spleen (HU close to the liver's)
    liver_hu = rng.uniform(55, 68)
    for side, dz in ((-1, 0.02), (1, -0.05)):
        e = _ellipsoid(z, y, x, ((dz - 0.18) * zext, ys + 8, side * 62), (48, 20, 24))
        hu[e < 1] = 150
        hu[e < 0.3] = 105
    stomach = _ellipsoid(z, y, x, (0.12 * zext, 0.3 * b, -0.35 * a), (38, 0.3 * b, 0.25 * a))
    hu[stomach < 1] = 15
    hu[(stomach < 1) & (y > 0.48 * b)] = -800
    spleen = _ellipsoid(z, y, x, (0.08 * zext, ys + 0.35 * b, -0.68 * a), (45, 0.38 * b, 0.16 * a))
    spleen = (spleen + 0.15 * _smooth_field(rng, dims, 8) < 1) & inner
    hu[spleen] = liver_hu + rng.uniform(-8, 6)

    # liver: a large right lobe and a smaller left lobe, perturbed boundary, inside the body wall
    zl = rng.uniform(0.02, 0.14) * zext
    rz = rng.uniform(0.32, 0.4) * zext
    right = _ellipsoid(z, y, x, (zl, -0.05 * b, 0.42 * a), (rz, 0.72 * b, rng.uniform(0.42, 0.5) * a))
    left = _ellipsoid(z, y, x, (zl + 0.35 * rz, 0.35 * b, -0.12 * a), (0.5 * rz, 0.32 * b, 0.4 * a))
    liver = (np.minimum(right, left) + 0.2 * _smooth_field(rng, dims, 10) < 1) & inner
    liver &= ~np.broadcast_to(r_spine < 24, dims)
    hu[liver] = (liver_hu + 4 * _smooth_field(rng, dims, 5))[liver]
    label[liver] = 1
    hu[np.broadcast_to(np.sqrt((x + 18) ** 2 + (y - ys - 26) ** 2) < 11, dims)] = 170  # aorta
    ivc = np.broadcast_to(np.sqrt((x - 22) ** 2 + (y - ys - 30) ** 2) < 10, dims)
    hu[ivc] = 130
    label[ivc] = 0

    idx = np.argwhere(label == 1)
    if len(idx):
        hilum = np.array([z.ravel()[idx[:, 0]].mean(), y.ravel()[idx[:, 1]].mean(),
                          x.ravel()[idx[:, 2]].mean() - 0.1 * a])
        for _ in range(rng.integers(3, 6)):
            direction = rng.normal(size=3) * np.array([0.5, 1, 1])
            end = hilum + direction / np.linalg.norm(direction) * rng.uniform(30, 70)
            vessel = (_segment_distance(z, y, x, hilum, end) < rng.uniform(2.5, 5)) & (label == 1)
            hu[vessel] = liver_hu + rng.uniform(70, 110)

    # tumors strictly inside the liver
    n_tumors = rng.choice(4, p=[0.2, 0.35, 0.3, 0.15])
    depth = ndimage.distance_transform_edt(label == 1, sampling=spacing)
    for _ in range(n_tumors):
        r = rng.uniform(6, 20)
        candidates = np.argwhere(depth > r + 2)
        if not len(candidates):
            candidates = np.argwhere(depth > max(depth.max() * 0.6, 1e-3))
            r = min(r, max(depth.max() * 0.6, 3.0))
        if not len(candidates):
            break
        cz, cy, cx = candidates[rng.integers(len(candidates))]
        center = (z.ravel()[cz], y.ravel()[cy], x.ravel()[cx])
        e = _ellipsoid(z, y, x, center, r * rng.uniform(0.75, 1.25, size=3))
        e = e + 0.15 * _smooth_field(rng, dims, 4)
        tumor = (e < 1) & (label == 1)
        hu[tumor] = rng.uniform(28, 42)
        if rng.random() < 0.3:
            hu[tumor & (e > 0.7)] = liver_hu + rng.uniform(10, 25)
        label[tumor] = 2

    # partial volume and CT-like correlated noise
    hu = ndimage.gaussian_filter(hu, sigma=(0.3, 0.6, 0.6))
    noise = ndimage.gaussian_filter(rng.standard_normal(dims).astype(np.float32), sigma=(0, 0.7, 0.7))
    hu += noise / (noise.std() + 1e-6) * rng.uniform(7, 11)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16), label, tuple(float(s) for s in spacing)


# ---------------------------------------------------------------------------------------------- MRI brain

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
BRATS_MODALITIES = ("flair", "t1", "t1ce", "t2")


def brats_case(rng: np.random.Generator, shape=DEFAULT_SHAPE["brats"], hgg: bool = True):
    """One MRI-like brain with a glioma.

    Args:
        rng: the case's random generator.
        shape: ``(X, Y, Z)`` voxels (1 mm spacing).
        hgg: high-grade (necrosis + enhancing shell) or low-grade (non-enhancing core) tumor.

    Returns:
        ``(images, label, spacing)``: ``images`` maps flair/t1/t1ce/t2 to ``int16`` arrays in
        canonical ``[z, y, x]`` order (zero outside the brain); ``label`` is ``uint8`` in the
        internal convention (1 necrotic/non-enhancing core, 2 edema, 3 enhancing); spacing (1, 1, 1).
    """
    nx, ny, nz = shape
    dims = (nz, ny, nx)
    spacing = (1.0, 1.0, 1.0)
    z, y, x = _grid(dims, spacing)
    ra, rb, rc = nx * rng.uniform(0.36, 0.4), ny * rng.uniform(0.42, 0.46), nz * rng.uniform(0.42, 0.47)
    rr = _ellipsoid(z, y, x, (0.0, 0.0, 0.0), (rc, rb, ra)) + 0.05 * _smooth_field(rng, dims, 8)
    brain = rr < 1
    tissue = np.zeros(dims, dtype=np.uint8)  # 0 out, 1 csf, 2 gm, 3 wm
    tissue[brain] = 3
    tissue[brain & (rr > 0.74 + 0.07 * _smooth_field(rng, dims, 4))] = 2
    tissue[brain & (rr > 0.95)] = 1
    for side in (-1, 1):
        thalamus = _ellipsoid(z, y, x, (0.1 * rc, -0.12 * rb, side * 0.18 * ra),
                              (0.3 * rc, 0.22 * rb, 0.1 * ra))
        tissue[thalamus < 1] = 2
        ventricle = _ellipsoid(z, y, x, (0.2 * rc, 0.05 * rb, side * 0.08 * ra),
                               (0.35 * rc, 0.35 * rb, 0.06 * ra))
        tissue[ventricle < 1] = 1
    tissue[~brain] = 0

    side = rng.choice([-1, 1])
    center = (rng.uniform(-0.3, 0.3) * rc, rng.uniform(-0.45, 0.45) * rb, side * rng.uniform(0.2, 0.45) * ra)
    radius = rng.uniform(7, 14) if hgg else rng.uniform(8, 15)
    core_e = _ellipsoid(z, y, x, center, radius * rng.uniform(0.8, 1.2, size=3))
    core_e = core_e + 0.15 * _smooth_field(rng, dims, 5)
    edema_e = _ellipsoid(z, y, x, center, radius * rng.uniform(1.5, 2.3, size=3))
    edema_e = edema_e + 0.3 * _smooth_field(rng, dims, 7)
    label = np.zeros(dims, dtype=np.uint8)
    label[(edema_e < 1) & brain & (tissue != 1)] = 2
    if hgg:
        label[(core_e < 1) & brain] = 3
        label[(core_e < rng.uniform(0.25, 0.5)) & brain] = 1
    else:
        label[(core_e < 1) & brain] = 1
        if rng.random() < 0.35:
            focus = _ellipsoid(z, y, x, center, (rng.uniform(2, 4),) * 3) < 1
            label[focus & brain] = 3

    images = {}
    for m, name in enumerate(BRATS_MODALITIES):
        table = {1: "csf", 2: "gm", 3: "wm"}
        signal = np.zeros(dims, dtype=np.float32)
        for value, key in table.items():
            signal[tissue == value] = _TISSUE[key][m]
        signal[label == 2] = _TISSUE["edema"][m]
        signal[label == 1] = _TISSUE["necrosis" if hgg else "core_lgg"][m]
        signal[label == 3] = _TISSUE["enhancing"][m]
        signal *= 1 + 0.04 * _smooth_field(rng, dims, 3)
        signal = ndimage.gaussian_filter(signal, 0.6)
        signal *= np.exp(0.2 * _smooth_field(rng, dims, 40))
        sigma = rng.uniform(0.025, 0.045)
        real, imag = sigma * rng.standard_normal(dims), sigma * rng.standard_normal(dims)
        signal = np.sqrt((signal + real) ** 2 + imag ** 2)  # Rician magnitude noise
        scaled = np.clip(np.rint(signal * rng.uniform(300, 1200)), 1, 32767)
        scaled[~brain] = 0
        images[name] = scaled.astype(np.int16)
    return images, label, spacing


# ---------------------------------------------------------------------------------------------- writing

def _save(path: Path, arr_zyx: np.ndarray, spacing_zyx, flip_xy: bool) -> None:
    """Write a canonical ``[z, y, x]`` array; ``flip_xy`` stores it LPS-like (as DICOM-derived files are)."""
    data = np.transpose(arr_zyx, (2, 1, 0))
    nx, ny, nz = data.shape
    sz, sy, sx = spacing_zyx
    affine = np.diag([sx, sy, sz, 1.0])
    affine[:3, 3] = [-(nx - 1) * sx / 2, -(ny - 1) * sy / 2, -(nz - 1) * sz / 2]
    if flip_xy:
        data = data[::-1, ::-1, :]
        affine[0, 0], affine[1, 1] = -sx, -sy
        affine[0, 3], affine[1, 3] = (nx - 1) * sx / 2, (ny - 1) * sy / 2
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))


def brats_group(index: int) -> str:
    """``"LGG"`` for every fourth case (index 3, 7, ...), else ``"HGG"``."""
    return "LGG" if index % 4 == 3 else "HGG"


def write_phantom(dataset: str, out: Path | str, cases: int, shape=None, seed: int = 0,
                  layout: str | None = None, gzip: bool | None = None, progress: bool = False) -> list[Path]:
    """Write ``cases`` phantom cases under ``out`` in a real dataset layout.

    Args:
        dataset: ``"lits"`` or ``"brats"``.
        out: the dataset root to create (files are added; existing ones with the same names replaced).
        cases: number of cases (>= 1).
        shape: ``(X, Y, Z)`` voxels; default :data:`DEFAULT_SHAPE` (128 x 128 x 48).
        seed: the seed; case ``i`` uses ``default_rng([seed, i])``.
        layout: ``"lits"`` (default; ``Training Batch 1/2/volume-N.nii``, ``segmentation-N.nii``) or
            ``"msd"`` (``Task03_Liver/imagesTr``, ``labelsTr``, ``dataset.json``); for BraTS
            ``"brats2018"`` (default; ``HGG/``/``LGG/`` case folders, ``_flair`` ... ``_seg``,
            labels 0/1/2/4), ``"brats2020"`` (flat case folders, ``.nii``) or ``"brats2023"``
            (``-t2f`` ... ``-seg``, labels 0/1/2/3).
        gzip: write ``.nii.gz`` (default: as the real layout does: LiTS and BraTS 2020 ``.nii``,
            the others ``.nii.gz``).
        progress: show a progress bar.

    Returns:
        the paths written, images before labels, case by case.
    """
    if dataset not in LAYOUTS:
        raise OptionError(f"unknown dataset {dataset!r}; choose one of {', '.join(LAYOUTS)}")
    layout = layout or LAYOUTS[dataset][0]
    if layout not in LAYOUTS[dataset]:
        raise OptionError(f"unknown {dataset} layout {layout!r}; choose one of {', '.join(LAYOUTS[dataset])}")
    if cases < 1:
        raise OptionError(f"--cases must be at least 1, got {cases}")
    shape = tuple(shape or DEFAULT_SHAPE[dataset])
    if len(shape) != 3 or min(shape) < 8:
        raise OptionError(f"--shape must be XxYxZ with every size >= 8, got {shape}")
    out = Path(out)
    ext = ".nii.gz" if (_GZIP_DEFAULT[layout] if gzip is None else gzip) else ".nii"
    written: list[Path] = []
    training = []
    batch1 = max(1, round(cases * 28 / 131))  # the official download: cases 0-27 of 131 in batch 1
    bar = tqdm(range(cases), desc=f"phantom {dataset}", unit="case", disable=None if progress else True,
               leave=False)
    for i in bar:
        rng = np.random.default_rng([seed, i])
        if dataset == "lits":
            hu, label, spacing = lits_case(rng, shape)
            flip = i % 2 == 0
            if layout == "lits":
                folder = out / ("Training Batch 1" if i < batch1 else "Training Batch 2")
                paths = [folder / f"volume-{i}{ext}", folder / f"segmentation-{i}{ext}"]
            else:
                task = out / "Task03_Liver"
                paths = [task / "imagesTr" / f"liver_{i}{ext}", task / "labelsTr" / f"liver_{i}{ext}"]
                training.append({"image": f"./imagesTr/liver_{i}{ext}",
                                 "label": f"./labelsTr/liver_{i}{ext}"})
            _save(paths[0], hu, spacing, flip)
            _save(paths[1], label, spacing, flip)
        else:
            hgg = brats_group(i) == "HGG"
            images, label, spacing = brats_case(rng, shape, hgg)
            if layout == "brats2018":
                case_id = f"Brats18_PHANTOM_{i}_1"
                folder = out / ("HGG" if hgg else "LGG") / case_id
            elif layout == "brats2020":
                case_id = f"BraTS20_Training_{i + 1:03d}"
                folder = out / case_id
            else:
                case_id = f"BraTS-GLI-{i:05d}-000"
                folder = out / case_id
            suffix = _BRATS_FILE_SUFFIX[layout]
            paths = [folder / f"{case_id}{suffix[m]}{ext}" for m in (*BRATS_MODALITIES, "seg")]
            for m, path in zip(BRATS_MODALITIES, paths, strict=False):
                _save(path, images[m], spacing, flip_xy=True)
            file_label = label.copy()
            if layout != "brats2023":
                file_label[label == 3] = 4
            _save(paths[-1], file_label, spacing, flip_xy=True)
        written.extend(paths)
    if dataset == "lits" and layout == "msd":
        meta = {
            "name": "Liver", "description": "lfubench phantom in the MSD Task03_Liver layout",
            "tensorImageSize": "3D", "modality": {"0": "CT"},
            "labels": {"0": "background", "1": "liver", "2": "cancer"},
            "numTraining": cases, "numTest": 0, "training": training, "test": [],
        }
        (out / "Task03_Liver" / "dataset.json").write_text(json.dumps(meta, indent=4))
    log.debug("wrote %d %s phantom case(s) (%s layout, shape %s, seed %d) to %s", cases, dataset, layout,
             "x".join(map(str, shape)), seed, out)
    return written
