"""HD95 speed and agreement: medpy vs MONAI vs DeepMind ``surface_distance`` vs :mod:`bench.metrics`.

Run ``python benchmarks/metrics_speed.py [--repeats 3] [--seed 0] [--no-medpy]`` (about two
minutes, most of it medpy; ``--no-medpy`` skips medpy's rows and checks). It builds a
LiTS-sized synthetic case deterministically (512 x 512 x 200 voxels, spacing 0.7 x 0.7 x 2.5 mm,
two liver-sized ellipsoids of about 2.7 M voxels with noisy boundaries), times every available
tool on the same masks in one process, and prints a Markdown table: tool, HD95 definition,
seconds, HD95 in mm, speed-up over medpy, and whether the value equals medpy's (1e-6 relative).
Then it scores the WT/TC/ET regions of one synthetic 240 x 240 x 155 BraTS case (Dice + HD95).

MONAI and ``surface_distance`` are optional: a tool whose package is missing gets a
"not installed" row. Their HD95 is the larger of the two directed 95th percentiles on their own
surface definitions, so their values differ from medpy's by design. The exactness ablation rows
(medpy's algorithm on the union-box crop, with scipy's or the ``edt`` package's distance
transform) show where the speed comes from.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

from lfubench.bench.conventions import empty_rule
from lfubench.bench.metrics import MetricsAccumulator, brats_regions, hd95, hd95_max_directed
from lfubench.bench.metrics.surface import border, union_box
from lfubench.reports.text import format_rows

LITS_SHAPE = (512, 512, 200)
LITS_SPACING = (0.7, 0.7, 2.5)
BRATS_SHAPE = (240, 240, 155)
BRATS_SPACING = (1.0, 1.0, 1.0)


def _noisy_ellipsoid(rng, shape, center, radii, rough: float) -> np.ndarray:
    """Ellipsoid ``sum(((x - c) / r)**2) < 1`` with smooth and voxel-level noise on its boundary."""
    lo = [max(0, int(c - 1.3 * r)) for c, r in zip(center, radii, strict=True)]
    hi = [min(n, int(c + 1.3 * r) + 1) for n, c, r in zip(shape, center, radii, strict=True)]
    sub = tuple(h - low for low, h in zip(lo, hi, strict=True))
    coarse = ndi.gaussian_filter(rng.normal(size=tuple(max(4, s // 8) for s in sub)), 1.0)
    smooth = ndi.zoom(coarse / coarse.std(), [s / c for s, c in zip(sub, coarse.shape, strict=True)], order=1)
    smooth = smooth[: sub[0], : sub[1], : sub[2]]
    grid = np.ogrid[tuple(slice(low, h) for low, h in zip(lo, hi, strict=True))]
    f = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radii, strict=True))
    f = f + 0.08 * smooth + rough * rng.normal(size=sub)
    out = np.zeros(shape, bool)
    out[tuple(slice(low, h) for low, h in zip(lo, hi, strict=True))] = f < 1
    return out


def make_lits_case(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(pred, ref) bool masks of 512 x 512 x 200 with liver-sized objects (~2.7 M voxels each)."""
    rng = np.random.default_rng(seed)
    ref = _noisy_ellipsoid(rng, LITS_SHAPE, (256, 256, 100), (110, 90, 65), rough=0.03)
    pred = _noisy_ellipsoid(rng, LITS_SHAPE, (258.5, 254.0, 101.5), (110, 90, 65), rough=0.03)
    return pred, ref


def make_brats_case(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(pred, ref) label maps of 240 x 240 x 155 with BraTS labels 0/1/2/4 (edema, core, enhancing)."""
    rng = np.random.default_rng(seed)

    def labels(shift: float) -> np.ndarray:
        c = (120 + shift, 110 - shift, 80 + shift / 2)
        lab = np.zeros(BRATS_SHAPE, np.uint8)
        lab[_noisy_ellipsoid(rng, BRATS_SHAPE, c, (38, 32, 28), rough=0.03)] = 2  # edema
        lab[_noisy_ellipsoid(rng, BRATS_SHAPE, c, (20, 17, 15), rough=0.05)] = 4  # enhancing rim
        lab[_noisy_ellipsoid(rng, BRATS_SHAPE, c, (13, 11, 10), rough=0.05)] = 1  # necrotic core
        return lab

    ref = labels(0.0)
    return labels(2.0), ref


# --- the tools --------------------------------------------------------------------------------


def _medpy(pred, ref, spacing):
    from medpy.metric.binary import hd95 as medpy_hd95

    return medpy_hd95(pred, ref, voxelspacing=spacing)


def _monai(pred, ref, spacing):
    from monai.metrics import compute_hausdorff_distance

    with warnings.catch_warnings():  # MONAI 1.5+ warns about its own internal use of a deprecated argument
        warnings.simplefilter("ignore", FutureWarning)
        out = compute_hausdorff_distance(
            pred[None, None], ref[None, None], include_background=True, percentile=95, spacing=list(spacing)
        )
    return float(out.item())


def _deepmind(pred, ref, spacing):
    import surface_distance

    dists = surface_distance.compute_surface_distances(ref, pred, spacing)
    return surface_distance.compute_robust_hausdorff(dists, 95)


def _crop_edt(transform: Callable) -> Callable:
    """medpy's algorithm, but on the union-box crop (ablation: exact, shows the crop's share)."""

    def run(pred, ref, spacing):
        box, _, _ = union_box(pred, ref)
        pb, rb = border(pred[box]), border(ref[box])
        d1 = transform(~rb, spacing)[pb]
        d2 = transform(~pb, spacing)[rb]
        return float(np.percentile(np.concatenate((d1, d2)), 95))

    return run


def _scipy_edt(mask, spacing):
    return ndi.distance_transform_edt(mask, sampling=spacing)


def _edt_pkg(mask, spacing):
    import edt

    return edt.edt(np.ascontiguousarray(mask), anisotropy=tuple(spacing), parallel=1).astype(np.float64)


# (name, definition, package needed, function, same definition as medpy)
TOOLS = [
    ("medpy 0.5 `hd95`", "pooled 95th pct, erosion surface", "medpy", _medpy, True),
    ("MONAI `compute_hausdorff_distance`", "max of directed 95th pcts, cube-code edges", "monai",
     _monai, False),
    ("DeepMind `surface_distance`", "max of directed 95th pcts, surfel-area weighted", "surface_distance",
     _deepmind, False),
    ("ablation: crop + scipy EDT", "medpy's", "scipy", _crop_edt(_scipy_edt), True),
    ("ablation: crop + `edt` package EDT", "medpy's (float32 EDT)", "edt", _crop_edt(_edt_pkg), True),
    ("**lfubench `hd95`**", "medpy's: pooled 95th pct", "bench", lambda p, r, s: hd95(p, r, s), True),
    ("lfubench `hd95_max_directed`", "max of directed 95th pcts, erosion surface", "bench",
     lambda p, r, s: hd95_max_directed(p, r, s), False),
]  # fmt: skip


def _version(package: str) -> str | None:
    dist = {"surface_distance": "surface-distance", "bench": "lfubench"}.get(package, package)
    try:
        importlib.import_module(package)
    except ImportError:
        return None
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _time(fn: Callable, repeats: int) -> tuple[float, float]:
    """(median seconds, value) over ``repeats`` runs."""
    times, value = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), float(value)


def run_lits(repeats: int, seed: int, with_medpy: bool) -> list[str]:
    t0 = time.perf_counter()
    pred, ref = make_lits_case(seed)
    lines = [
        f"### HD95 on a LiTS-sized case ({'x'.join(map(str, LITS_SHAPE))} voxels, spacing "
        f"{' x '.join(map(str, LITS_SPACING))} mm, seed {seed})",
        "",
        f"pred {np.count_nonzero(pred):,} voxels, ref {np.count_nonzero(ref):,} voxels, bool arrays; "
        f"surfaces with connectivity 1; both masks non-empty (no empty-mask rule involved). "
        f"Case built in {time.perf_counter() - t0:.1f} s. Seconds: median of {repeats} runs "
        "(medpy: 1 run).",
        "",
    ]
    rows = []
    medpy_s = medpy_v = None
    for name, definition, package, fn, same_def in TOOLS:
        row = {"tool": name, "HD95 definition": definition, "seconds": "", "HD95 (mm)": "",
               "speed-up vs medpy": "", "equals medpy (1e-6 rel.)": ""}
        rows.append(row)
        if package == "medpy" and not with_medpy:
            row["seconds"] = "skipped"
            continue
        if _version(package) is None:
            row["seconds"] = "not installed"
            continue
        seconds, value = _time(
            lambda fn=fn: fn(pred, ref, LITS_SPACING), 1 if package == "medpy" else repeats
        )
        if package == "medpy":
            medpy_s, medpy_v = seconds, value
        speedup = f"{medpy_s / seconds:.1f}x" if medpy_s else "n/a"
        if medpy_v is None:
            same = "n/a"
        else:
            same = "yes" if abs(value - medpy_v) <= 1e-6 * abs(medpy_v) else "no"
            same += "" if same_def else " (other definition)"
        row.update({"seconds": f"{seconds:.3f}", "HD95 (mm)": f"{value:.6f}", "speed-up vs medpy": speedup,
                    "equals medpy (1e-6 rel.)": same})
    return lines + format_rows(rows, "md").splitlines()


def run_brats(seed: int, with_medpy: bool) -> list[str]:
    pred, ref = make_brats_case(seed)
    acc = MetricsAccumulator(("dice", "hd95"), regions="brats", spacing=BRATS_SPACING, empty="brats")
    t0 = time.perf_counter()
    rows = acc(pred, ref, case="synthetic_brats")
    seconds = time.perf_counter() - t0
    values = {(r["region"], r["metric"]): r["value"] for r in rows}
    summary = {(r["region"], r["metric"]): r["mean"] for r in acc.aggregate()}
    lines = [
        "",
        f"### BraTS regions of one {'x'.join(map(str, BRATS_SHAPE))} case "
        f"(labels 0/1/2/4, spacing 1 mm, seed {seed})",
        "",
        f"WT = {{1, 2, 4}}, TC = {{1, 4}}, ET = {{4}}; `brats` rule for {empty_rule('brats')}. "
        f"All three regions, Dice + HD95: {seconds:.3f} s.",
        "",
    ]
    pr, rr = brats_regions(pred), brats_regions(ref)
    rows = []
    for region in ("WT", "TC", "ET"):
        check = ""
        if with_medpy and _version("medpy"):
            check = f"{_medpy(pr[region], rr[region], BRATS_SPACING):.6f}"
        rows.append({"region": region, "Dice": f"{values[region, 'dice']:.4f}",
                     "HD95 (mm)": f"{values[region, 'hd95']:.6f}", "medpy HD95 (mm)": check})
    rows.append({"region": "mean", "Dice": f"{summary['mean', 'dice']:.4f}",
                 "HD95 (mm)": f"{summary['mean', 'hd95']:.6f}", "medpy HD95 (mm)": ""})
    return lines + format_rows(rows, "md").splitlines()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per tool except medpy (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic cases (default 0)")
    parser.add_argument("--no-medpy", action="store_true", help="skip medpy (about 25-40 s)")
    args = parser.parse_args(argv)
    versions = ", ".join(
        f"{p} {_version(p) or 'missing'}"
        for p in ("numpy", "scipy", "medpy", "monai", "surface_distance", "edt")
    )
    header = [
        "## bench.metrics speed benchmark",
        "",
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; {versions}; load average at start "
        f"{os.getloadavg()[0]:.2f} (other processes share these CPUs: compare rows of one run only).",
        "",
    ]
    lines = (
        header
        + run_lits(args.repeats, args.seed, not args.no_medpy)
        + run_brats(args.seed, not args.no_medpy)
    )
    print("\n".join(lines))  # the benchmark's output is this table
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
