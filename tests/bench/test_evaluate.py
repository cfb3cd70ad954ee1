"""bench.evaluate end to end with known predictions: files -> cache -> model -> original grid -> metrics.

Each dataset is written in its real layout with NIfTI headers whose array axes are permuted and
flipped away from RAS and whose spacing is anisotropic. The "model" is a fixed lookup: the image
files encode a chosen prediction ``P`` in their intensities and the lookup decodes it slice by
slice, so whatever ``evaluate_cases`` scores must be ``P`` placed back on the original grid. The
expected numbers come from ``P`` and the reference as written (canonical ``[z, y, x]`` RAS arrays
and the header spacing), through medpy (the reference implementation, independent of
``bench.metrics``) and, where the geometry is simple, by hand.
"""

from __future__ import annotations

import io
import math
import sys
import threading

import nibabel as nib
import numpy as np
import pytest
import torch
from medpy.metric import binary as mb
from torch import nn

import lfubench.bench.evaluate as bench_evaluate
from lfubench.bench.data import (
    Case,
    DataError,
    PreprocessConfig,
    find_cases,
    open_cache,
    prepare_cache,
    read_case,
    read_label,
    write_phantom,
)
from lfubench.bench.datasets import DATASETS
from lfubench.bench.errors import OptionError
from lfubench.bench.evaluate import evaluate_cases, predict_labels, restore_geometry
from lfubench.bench.metrics import BRATS_MAX_DISTANCE_MM

from .evaluate_helpers import (
    LITS_HU,
    LITS_MODEL_LEVELS,
    LevelLookup,
    save_oriented,
    shifted,
    whole_volume_evaluate,
    whole_volume_labels,
)

REL = 1e-9

# --------------------------------------------------------------------------------------- helpers

def rows_by_key(rows: list[dict]) -> dict[tuple[str, str, str], float | None]:
    return {(r["case"], r["region"], r["metric"]): r["value"] for r in rows}


def medpy_scores(pred: np.ndarray, ref: np.ndarray, spacing) -> dict[str, float]:
    """Dice and HD95 of two non-empty binary masks, by medpy (the reference implementation)."""
    return {"dice": mb.dc(pred, ref), "hd95": mb.hd95(pred, ref, voxelspacing=spacing)}


def assert_scores(values: dict, case: str, expected: dict[str, dict[str, float]]) -> None:
    for region, metrics in expected.items():
        for metric, want in metrics.items():
            got = values[case, region, metric]
            assert got == pytest.approx(want, rel=REL, abs=1e-12), (case, region, metric, got, want)


# ------------------------------------------------------------------------------------------- LiTS
#
# Canonical grid (z, y, x) = 6 x 32 x 32 voxels of 2.5 x 0.75 x 1.25 mm: every axis has its own
# spacing, so a shift along an axis scored with another axis's spacing gives a different HD95.
# The cache size is 32, the in-plane size: the preprocessing resize (32 -> 32) and the evaluation's
# bilinear resize of the probabilities back (32 -> 32, align_corners=False) are then exact
# identities, so the prediction reaches the original grid voxel for voxel and Dice/HD95 can be
# exact. (Case "5" is 40 x 48 in-plane and is resized; see there.) The images encode the planted
# prediction as ``evaluate_helpers.LITS_HU``, which ``LITS_MODEL_LEVELS`` decodes.

LITS_SHAPE = (6, 32, 32)
LITS_SPACING = (2.5, 0.75, 1.25)
LITS_SIZE = 32


def lits_reference() -> np.ndarray:
    """Liver: a box plus a lobe (no symmetry under flips or a y/x swap); tumor: a box inside it."""
    lab = np.zeros(LITS_SHAPE, np.uint8)
    lab[1:5, 6:22, 5:23] = 1
    lab[2:4, 22:27, 5:10] = 1
    lab[2:4, 9:13, 14:18] = 2
    return lab


def lits_cases() -> dict[str, tuple[np.ndarray, np.ndarray, tuple, str]]:
    """case id -> (reference, planted prediction, spacing, file axis codes)."""
    ref = lits_reference()
    missed = ref.copy()
    missed[missed == 2] = 1  # the tumor is predicted as liver: no tumor in the prediction
    wide_ref = np.zeros((6, 40, 48), np.uint8)
    wide_ref[1:4] = 1  # whole slices: constant in-plane, so the 40x48 -> 32x32 -> 40x48 resizes are exact
    wide_ref[4] = 2
    return {
        "0": (ref, ref.copy(), LITS_SPACING, "PSL"),  # perfect
        "1": (ref, shifted(ref, 2, 3), LITS_SPACING, "IRP"),  # 3 voxels along x (1.25 mm)
        "2": (ref, shifted(ref, 1, 2), LITS_SPACING, "ASL"),  # 2 voxels along y (0.75 mm)
        "3": (ref, shifted(ref, 0, 1), LITS_SPACING, "SPL"),  # 1 voxel along z (2.5 mm)
        "4": (ref, missed, LITS_SPACING, "RPI"),  # tumor missed
        "5": (wide_ref, wide_ref.copy(), (2.0, 0.75, 0.5), "LIP"),  # resized in-plane
    }


@pytest.fixture(scope="module")
def lits(tmp_path_factory):
    root = tmp_path_factory.mktemp("lits_eval")
    cases = lits_cases()
    for cid, (ref, pred, spacing, codes) in cases.items():
        hu = np.vectorize(LITS_HU.get)(pred).astype(np.int16)
        save_oriented(root / "Training Batch 1" / f"volume-{cid}.nii", hu, spacing, codes)
        save_oriented(root / "Training Batch 1" / f"segmentation-{cid}.nii", ref, spacing, codes)
    cache = open_cache(prepare_cache("lits", root, tmp_path_factory.mktemp("lits_cache"),
                                     PreprocessConfig("lits", size=LITS_SIZE)))
    return root, cache, cases


def lits_expected(ref: np.ndarray, pred: np.ndarray, spacing) -> dict:
    """Scores of the planted prediction, by medpy: liver = label >= 1, tumor = label 2."""
    p, r = {"liver": pred >= 1, "tumor": pred == 2}, {"liver": ref >= 1, "tumor": ref == 2}
    return {region: medpy_scores(p[region], r[region], spacing) for region in ("liver", "tumor")}


def test_lits_fixture_files_are_permuted_and_read_back_canonical(lits):
    """The files are stored in non-RAS axis orders; the reader returns our canonical arrays."""
    root, _, cases = lits
    found = {c.case_id: c for c in find_cases("lits", root)[0]}
    assert sorted(found) == sorted(cases)
    for cid, (ref, pred, spacing, codes) in cases.items():
        img = nib.load(str(found[cid].label))
        assert "".join(nib.aff2axcodes(img.affine)) == codes != "RAS"
        data = read_case(found[cid])
        np.testing.assert_array_equal(data.label, ref)
        np.testing.assert_array_equal(data.image[0], np.vectorize(LITS_HU.get)(pred))
        assert data.spacing == spacing
    assert nib.load(str(found["0"].label)).shape == (32, 6, 32)  # P, S, L: not the canonical 6 x 32 x 32


def test_lits_known_predictions_score_exactly(lits):
    _, cache, cases = lits
    rows = evaluate_cases(LevelLookup(LITS_MODEL_LEVELS, channel=1), cache, ["0", "1", "2", "3", "5"])
    values = rows_by_key(rows)
    assert len(rows) == 5 * 2 * 2
    assert set(rows[0]) == {"case", "region", "metric", "value", "ref_empty", "pred_empty"}
    assert not any(r["ref_empty"] or r["pred_empty"] for r in rows if r["case"] == "0")  # both present

    # perfect prediction under a permuted + flipped affine: every voxel in place
    assert_scores(values, "0", {r: {"dice": 1.0, "hd95": 0.0} for r in ("liver", "tumor")})
    assert_scores(values, "5", {r: {"dice": 1.0, "hd95": 0.0} for r in ("liver", "tumor")})

    # shifts: the tumor box (2 x 4 x 4 voxels, all on its surface) moved k voxels along one axis
    # has surface distances 0, s, ..., k*s along that axis; the largest, k * spacing, fills at least
    # a quarter of the pooled list, so HD95 = k * spacing; Dice = (n - k) / n on an n-voxel side.
    by_hand = {"1": (0.25, 3 * 1.25), "2": (0.5, 2 * 0.75), "3": (0.5, 1 * 2.5)}
    for cid, (dice, hd95) in by_hand.items():
        ref, pred, spacing, _ = cases[cid]
        expected = lits_expected(ref, pred, spacing)
        assert expected["tumor"] == pytest.approx({"dice": dice, "hd95": hd95}, rel=REL)  # medpy agrees
        assert expected["liver"]["hd95"] == pytest.approx(hd95, rel=REL)  # a translation too
        assert_scores(values, cid, expected)


def test_lits_empty_rule_is_the_datasets_or_the_callers(lits):
    """Tumor in the reference, none predicted: LiTS's default rule ``diagonal`` gives the case's own
    diagonal, (6 * 2.5, 32 * 0.75, 32 * 1.25) = (15, 24, 40) mm -> sqrt(2401) = 49 mm."""
    _, cache, _ = lits
    model = LevelLookup(LITS_MODEL_LEVELS, channel=1)
    perfect_liver = {"dice": 1.0, "hd95": 0.0}
    for empty, hd95 in ((None, 49.0), ("diagonal", 49.0), ("brats", BRATS_MAX_DISTANCE_MM)):
        values = rows_by_key(evaluate_cases(model, cache, ["4"], empty=empty))
        assert_scores(values, "4", {"liver": perfect_liver, "tumor": {"dice": 0.0, "hd95": hd95}})
    values = rows_by_key(evaluate_cases(model, cache, ["4", "0"], empty="nan"))
    assert values["4", "tumor", "dice"] == 0.0 and values["4", "tumor", "hd95"] is None  # NaN -> None (JSON)
    assert_scores(values, "4", {"liver": perfect_liver})
    assert_scores(values, "0", {"tumor": {"dice": 1.0, "hd95": 0.0}})


# ------------------------------------------------------------------------------------------ BraTS
#
# Crop size 32. The brain (voxels non-zero in any modality) decides the crop: a 32 x 32 window
# centred on its bounding box, clamped inside the slice when the slice is larger, centred and
# zero-padded when it is smaller. Each case's window is worked out by hand below.

BRATS_SIZE = 32
BRATS_SPACING = (1.5, 1.0, 1.25)
#: flair (and, scaled, the other modalities) inside the brain per planted internal label
BRATS_FLAIR = {0: 100, 1: 2000, 2: 3000, 3: 4000}


def brats_tumor(shape_yx=(15, 19)) -> np.ndarray:
    """Reference inside a 4 x 15 x 19 brain block: edema box, necrotic core, enhancing tumor."""
    lab = np.zeros((4, *shape_yx), np.uint8)
    lab[0:4, 2:13, 2:17] = 2
    lab[1:3, 4:8, 4:9] = 1
    lab[1:4, 8:11, 10:15] = 3
    return lab


def brats_cases() -> dict[str, dict]:
    """case id -> volume shape, brain box, reference, planted prediction, the window by hand."""
    out = {}
    # A: off-centre in a 40 x 48 slice. Brain y 12..26, x 20..38 -> centre (19, 29) -> window
    # starts (19 - 16, 29 - 16) = (3, 13), inside the slice: no clamping, no padding.
    # Prediction: the enhancing tumor moved 2 voxels along y (still inside the edema).
    ref = np.zeros((4, 40, 48), np.uint8)
    ref[:, 12:27, 20:39] = brats_tumor()
    pred = ref.copy()
    pred[pred == 3] = 2
    pred[1:4, 12 + 10:12 + 13, 20 + 10:20 + 15] = 3
    out["Brats18_LFU_A_1"] = dict(ref=ref, pred=pred, brain=(slice(12, 27), slice(20, 39)),
                                  offset=[3, 13], codes="LPS")
    # B: a 20 x 24 slice, smaller than the crop: window (-(32 - 20) // 2, -(32 - 24) // 2) = (-6, -4).
    # Prediction: the enhancing tumor labelled necrotic core (WT, TC exact; ET missed).
    ref = np.zeros((4, 20, 24), np.uint8)
    ref[:, 3:18, 2:21] = brats_tumor()
    pred = ref.copy()
    pred[pred == 3] = 1
    out["Brats18_LFU_B_1"] = dict(ref=ref, pred=pred, brain=(slice(3, 18), slice(2, 21)),
                                  offset=[-6, -4], codes="PIR")
    # C: a 24 x 48 slice: padded along y (-4), and along x a brain 39 voxels wide (x 4..42), wider
    # than the crop: centre 23 -> start 7, window x 7..38; the prediction outside it is lost.
    # Prediction: the reference itself, whose edema (x 5..37) and enhancing tumor (x 36..40) cross
    # the window's edges.
    ref = np.zeros((4, 24, 48), np.uint8)
    ref[0:4, 6:16, 5:38] = 2
    ref[1:3, 8:12, 20:26] = 1
    ref[1:4, 9:13, 36:41] = 3
    out["Brats18_LFU_C_1"] = dict(ref=ref, pred=ref.copy(), brain=(slice(4, 19), slice(4, 43)),
                                  offset=[-4, 7], codes="SAL")
    return out


def brats_regions_by_hand(lab: np.ndarray) -> dict[str, np.ndarray]:
    """BraTS regions of internal labels (1 NCR/NET, 2 ED, 3 ET)."""
    return {"WT": np.isin(lab, (1, 2, 3)), "TC": np.isin(lab, (1, 3)), "ET": lab == 3}


def brats_model(case: dict) -> LevelLookup:
    """The lookup for one case: the flair levels after the brain z-score, worked out from the file.

    Outside the brain (and in the crop's padding) the preprocessed input is exactly 0: background.
    """
    flair = np.zeros(case["ref"].shape)
    flair[(slice(None), *case["brain"])] = 1  # brain
    brain = flair > 0
    for label, value in BRATS_FLAIR.items():
        flair[brain & (case["pred"] == label)] = value
    values = flair[brain]
    mean, std = values.mean(), values.std()
    levels = {k: [(v - mean) / std] for k, v in BRATS_FLAIR.items()}
    levels[0].append(0.0)
    flat = sorted(v for lv in levels.values() for v in lv)
    assert min(np.diff(flat)) > 0.1  # far apart next to float16 storage (~1e-3)
    return LevelLookup(levels, channel=0)


@pytest.fixture(scope="module")
def brats(tmp_path_factory):
    root = tmp_path_factory.mktemp("brats_eval")
    cases = brats_cases()
    for cid, case in cases.items():
        brain = np.zeros(case["ref"].shape, bool)
        brain[(slice(None), *case["brain"])] = True
        assert not (case["ref"] & ~brain).any() and not (case["pred"] & ~brain).any()
        flair = np.where(brain, np.vectorize(BRATS_FLAIR.get)(case["pred"]), 0).astype(np.int16)
        folder = root / "HGG" / cid
        for m, scale in (("flair", 1.0), ("t1", 0.5), ("t1ce", 0.25), ("t2", 2.0)):
            save_oriented(folder / f"{cid}_{m}.nii.gz", (flair * scale).astype(np.int16), BRATS_SPACING,
                          case["codes"])
        seg = case["ref"].copy()
        seg[seg == 3] = 4  # BraTS 2018 files: enhancing tumor is 4
        save_oriented(folder / f"{cid}_seg.nii.gz", seg, BRATS_SPACING, case["codes"])
    cache = open_cache(prepare_cache("brats", root, tmp_path_factory.mktemp("brats_cache"),
                                     PreprocessConfig("brats", size=BRATS_SIZE)))
    return root, cache, cases


def brats_expected(case: dict) -> dict:
    """Scores of the planted prediction cut to the crop window (background outside), by medpy."""
    y0, x0 = case["offset"]
    pred = np.zeros_like(case["pred"])
    ys, xs = slice(max(y0, 0), y0 + BRATS_SIZE), slice(max(x0, 0), x0 + BRATS_SIZE)
    pred[:, ys, xs] = case["pred"][:, ys, xs]
    p, r = brats_regions_by_hand(pred), brats_regions_by_hand(case["ref"])
    return {region: medpy_scores(p[region], r[region], BRATS_SPACING) for region in ("WT", "TC", "ET")
            if p[region].any() and r[region].any()}  # empty masks: see test_brats_missed_region_...


def test_brats_crops_off_centre_padded_and_cut(brats):
    root, cache, cases = brats
    found = {c.case_id: c for c in find_cases("brats", root)[0]}
    for cid, case in cases.items():
        info = cache.cases[cid]
        assert info["crop_offset"] == case["offset"] and info["orig_shape"] == list(case["ref"].shape)
        np.testing.assert_array_equal(read_case(found[cid]).label, case["ref"])  # 4 -> 3, canonical
        values = rows_by_key(evaluate_cases(brats_model(case), cache, [cid]))
        assert_scores(values, cid, brats_expected(case))

    a = rows_by_key(evaluate_cases(brats_model(cases["Brats18_LFU_A_1"]), cache, ["Brats18_LFU_A_1"]))
    assert a["Brats18_LFU_A_1", "WT", "dice"] == 1.0 and a["Brats18_LFU_A_1", "WT", "hd95"] == 0.0
    assert a["Brats18_LFU_A_1", "ET", "dice"] == pytest.approx(1 / 3)  # 3 rows, 1 shared
    assert a["Brats18_LFU_A_1", "ET", "hd95"] == pytest.approx(2.0)  # 2 voxels x 1.0 mm along y

    # C, by hand: the window x 7..38 loses columns x 5, 6 (edema) and x 39, 40 (enhancing tumor,
    # 2 of its 5 columns); the prediction is a subset of the reference, Dice = 2 kept / (2 all - lost)
    c = rows_by_key(evaluate_cases(brats_model(cases["Brats18_LFU_C_1"]), cache, ["Brats18_LFU_C_1"]))
    ref = cases["Brats18_LFU_C_1"]["ref"]
    wt, et = int((ref > 0).sum()), int((ref == 3).sum())
    wt_lost = int((ref[:, :, 5:7] > 0).sum() + (ref[:, :, 39:41] > 0).sum())
    et_lost = int((ref[:, :, 39:41] == 3).sum())
    assert c["Brats18_LFU_C_1", "WT", "dice"] == pytest.approx(2 * (wt - wt_lost) / (2 * wt - wt_lost))
    assert c["Brats18_LFU_C_1", "ET", "dice"] == pytest.approx(2 * (et - et_lost) / (2 * et - et_lost))
    assert et_lost == 2 * 4 * 3 and c["Brats18_LFU_C_1", "ET", "dice"] == pytest.approx(2 * 36 / 96)


def test_brats_missed_region_follows_the_empty_rule(brats):
    """Case B: no enhancing tumor predicted. BraTS's default rule gives 373.13 mm; ``diagonal``
    the case's own, (4 * 1.5, 20 * 1.0, 24 * 1.25) = (6, 20, 30) mm -> sqrt(1336) mm."""
    _, cache, cases = brats
    cid = "Brats18_LFU_B_1"
    model = brats_model(cases[cid])
    exact = {"dice": 1.0, "hd95": 0.0}
    for empty, hd95 in ((None, BRATS_MAX_DISTANCE_MM), ("brats", BRATS_MAX_DISTANCE_MM),
                        ("diagonal", math.sqrt(1336.0))):
        values = rows_by_key(evaluate_cases(model, cache, [cid], empty=empty))
        assert_scores(values, cid, {"WT": exact, "TC": exact, "ET": {"dice": 0.0, "hd95": hd95}})
    assert BRATS_MAX_DISTANCE_MM == pytest.approx(373.1287, abs=1e-4)


# ------------------------------------------------------------------------------- restore_geometry


def test_restore_geometry_pastes_each_crop_at_its_offset():
    """One-hot slices with a single marked pixel land at (row + y0, col + x0), clipped to the grid."""
    size, z = 16, 2
    probs = torch.zeros(z, 4, size, size)
    probs[:, 0] = 1.0
    marks = {(0, 0, 0): 1, (1, 15, 15): 3, (0, 5, 9): 2, (1, 3, 2): 1}  # (1, 3, 2) hits (0, 0) at (-3, -2)
    for (s, y, x), label in marks.items():
        probs[s, :, y, x] = 0.0
        probs[s, label, y, x] = 1.0
    for orig, offset in (((2, 20, 30), [2, 9]), ((2, 10, 12), [-3, -2]), ((2, 12, 40), [-2, 24])):
        out = restore_geometry(probs, "brats", {"orig_shape": list(orig), "crop_offset": offset})
        assert out.shape == orig and out.dtype == np.uint8
        want = np.zeros(orig, np.uint8)
        for (s, y, x), label in marks.items():
            gy, gx = y + offset[0], x + offset[1]
            if 0 <= gy < orig[1] and 0 <= gx < orig[2]:
                want[s, gy, gx] = label
        np.testing.assert_array_equal(out, want)


def test_restore_geometry_lits_resizes_back_to_the_original_in_plane_size():
    probs = torch.zeros(3, 3, 16, 16)
    probs[:, 0] = 1.0
    probs[1, :, :, 8:] = torch.tensor([0.0, 0.0, 1.0])[:, None, None]  # right half of slice 1: tumor
    out = restore_geometry(probs, "lits", {"orig_shape": [3, 20, 24]})
    assert out.shape == (3, 20, 24)
    want = np.zeros((3, 20, 24), np.uint8)
    want[1, :, 12:] = 2  # the half-way edge scales with the width: 8/16 of 24
    np.testing.assert_array_equal(out, want)


# -------------------------------------------------- streaming == the whole-volume path, bit for bit
#
# The reference is the whole-volume path of ``evaluate_helpers`` (the evaluation as it was before it
# streamed). The model is a random convolutional net: its probabilities are nowhere one-hot, so the
# bilinear resize of LiTS and the arg-max see real ties and edges.


def random_net(in_channels: int, classes: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, classes, 3, padding=1)).eval()


@pytest.fixture(scope="module")
def phantom_lits(tmp_path_factory):
    """Phantom CT, 40 x 48 in-plane, cached at 32: the probabilities are resized back up."""
    root = tmp_path_factory.mktemp("phantom_lits")
    write_phantom("lits", root, cases=3, shape=(48, 40, 11), seed=3)
    cache = open_cache(prepare_cache("lits", root, tmp_path_factory.mktemp("phantom_lits_cache"),
                                     PreprocessConfig("lits", size=32)))
    return root, cache, None


@pytest.fixture(scope="module")
def phantom_brats(tmp_path_factory):
    """Phantom MRI, 40 x 44 in-plane, cropped to 32 off-centre (brains wider than the crop are cut)."""
    root = tmp_path_factory.mktemp("phantom_brats")
    write_phantom("brats", root, cases=3, shape=(44, 40, 9), seed=3)
    cache = open_cache(prepare_cache("brats", root, tmp_path_factory.mktemp("phantom_brats_cache"),
                                     PreprocessConfig("brats", size=32)))
    return root, cache, None


@pytest.mark.parametrize(("data", "batch_size", "channels_last"), [
    ("lits", 16, True),  # 32 x 32 cases and the 40 x 48 case "5"
    ("phantom_lits", 5, True),  # batches that do not line up with the resize's 8-slice chunks
    ("phantom_lits", 16, False),
    ("brats", 3, True),  # off-centre, padded and cut crops
    ("phantom_brats", 4, True),
])
def test_streaming_matches_the_whole_volume_path_bit_for_bit(data, batch_size, channels_last, request):
    _, cache, _ = request.getfixturevalue(data)
    dataset = cache.meta["config"]["dataset"]
    model = random_net(cache.in_channels, DATASETS[dataset].num_classes)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    ids = cache.case_ids
    for cid in ids:
        want = whole_volume_labels(model, cache, cid, batch_size, channels_last)
        got = predict_labels(model, cache, cid, batch_size=batch_size, channels_last=channels_last)
        assert got.dtype == np.uint8 and got.shape == tuple(cache.cases[cid]["orig_shape"])
        np.testing.assert_array_equal(got, want)
        assert len(np.unique(got)) > 1  # a real prediction, not one class everywhere
    for order in (ids, ids[::-1]):
        rows = evaluate_cases(model, cache, order, batch_size=batch_size, channels_last=channels_last)
        assert rows == whole_volume_evaluate(model, cache, order, batch_size=batch_size,
                                             channels_last=channels_last)  # values, and the order of rows
        assert [r["case"] for r in rows[::len(rows) // len(order)]] == list(order)
        assert any(r["value"] not in (0.0, 1.0, None) for r in rows)


def test_read_label_is_read_case_label(phantom_brats, brats):
    """The reference read alone is the label of the full read: canonical, 4 -> 3, uint8."""
    for root, _, _ in (phantom_brats, brats):
        for case in find_cases("brats", root)[0]:
            ref = read_label(case)
            assert ref.dtype == np.uint8
            np.testing.assert_array_equal(ref, read_case(case).label)


def test_read_label_names_the_case_and_file(tmp_path):
    case = Case("7", "lits", "lits", tmp_path, {"ct": tmp_path / "volume-7.nii"},
                tmp_path / "segmentation-7.nii")
    with pytest.raises(DataError, match=r"case 7: segmentation-7.nii: missing file"):
        read_label(case)


# ------------------------------------------------------------- overlap, progress, precision


def test_metrics_of_a_case_run_in_the_background_while_the_next_is_predicted(phantom_lits, monkeypatch):
    """Case k's reference is read (and scored) in a worker thread after case k+1's prediction has
    begun; a sequential evaluation would read case 0 before predicting case 1 and time out here."""
    _, cache, _ = phantom_lits
    model = random_net(cache.in_channels, 3)
    ids = cache.case_ids
    events, started = [], {cid: threading.Event() for cid in ids}
    real_predict, real_read = bench_evaluate.predict_labels, bench_evaluate.read_label

    def predict(model, cache, cid, **kw):
        events.append(("predict", cid, threading.current_thread() is threading.main_thread()))
        started[cid].set()
        return real_predict(model, cache, cid, **kw)

    def read(case):
        later = ids[ids.index(case.case_id) + 1:]
        overlapped = started[later[0]].wait(timeout=30) if later else True
        main = threading.current_thread() is threading.main_thread()
        events.append(("read", case.case_id, main, overlapped))
        return real_read(case)

    monkeypatch.setattr(bench_evaluate, "predict_labels", predict)
    monkeypatch.setattr(bench_evaluate, "read_label", read)
    rows = evaluate_cases(model, cache, ids)
    assert [e for e in events if e[0] == "predict"] == [("predict", cid, True) for cid in ids]
    assert [e for e in events if e[0] == "read"] == [("read", cid, False, True) for cid in ids]
    monkeypatch.undo()
    assert rows == whole_volume_evaluate(model, cache, ids)


def test_an_error_in_the_background_reaches_the_caller(phantom_lits, monkeypatch):
    _, cache, _ = phantom_lits

    def read(case):
        raise DataError(f"case {case.case_id}: segmentation-{case.case_id}.nii: truncated")

    monkeypatch.setattr(bench_evaluate, "read_label", read)
    with pytest.raises(DataError, match="case 0: segmentation-0.nii: truncated"):
        evaluate_cases(random_net(cache.in_channels, 3), cache, cache.case_ids)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("progress", [False, True])
def test_progress_bar_over_cases(phantom_lits, monkeypatch, progress):
    _, cache, _ = phantom_lits
    bars = []
    real_bar = bench_evaluate.progress_bar

    def recorded(*args, **kwargs):
        bars.append(real_bar(*args, **kwargs))
        return bars[-1]

    err = _Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(bench_evaluate, "progress_bar", recorded)
    evaluate_cases(random_net(cache.in_channels, 3), cache, cache.case_ids, progress=progress)
    (bar,) = bars
    assert bar.total == 3
    if progress:
        assert bar.n == 3 and "evaluate lits" in err.getvalue() and "/3 [" in err.getvalue()
    else:
        assert bar.n == 0 and err.getvalue() == ""  # a disabled bar does not count


def test_progress_bar_is_off_when_not_a_terminal(phantom_lits, monkeypatch):
    _, cache, _ = phantom_lits
    err = io.StringIO()  # isatty() is False: a log file, CI
    monkeypatch.setattr(sys, "stderr", err)
    evaluate_cases(random_net(cache.in_channels, 3), cache, ["0"], progress=True)
    assert err.getvalue() == ""


class _AutocastProbe(nn.Module):
    """Records whether autocast was on during its forward (on the input's device type)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.seen = net, []

    def forward(self, x):
        self.seen.append(torch.is_autocast_enabled(x.device.type))
        return self.net(x)


def test_precision_is_ignored_on_the_cpu(phantom_lits):
    _, cache, _ = phantom_lits
    probe = _AutocastProbe(random_net(cache.in_channels, 3))
    fp32 = evaluate_cases(probe, cache, ["0", "1"])
    for precision in ("fp16", "bf16"):
        assert evaluate_cases(probe, cache, ["0", "1"], precision=precision) == fp32
    assert probe.seen and not any(probe.seen)
    with pytest.raises(OptionError, match="unknown precision 'fp8'; choose one of fp32, fp16, bf16"):
        evaluate_cases(probe, cache, ["0"], precision="fp8")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_precision_autocasts_on_cuda(phantom_lits, precision):
    _, cache, _ = phantom_lits
    probe = _AutocastProbe(random_net(cache.in_channels, 3)).cuda().to(memory_format=torch.channels_last)
    fp32 = evaluate_cases(probe, cache, cache.case_ids, device="cuda")
    assert probe.seen and not any(probe.seen)
    probe.seen.clear()
    low = evaluate_cases(probe, cache, cache.case_ids, device="cuda", precision=precision)
    assert probe.seen and all(probe.seen)
    assert [(r["case"], r["region"], r["metric"]) for r in low] == [(r["case"], r["region"], r["metric"])
                                                                    for r in fp32]
    dice = [(a["value"], b["value"]) for a, b in zip(low, fp32, strict=True) if a["metric"] == "dice"]
    assert all(abs(a - b) < 0.05 for a, b in dice)  # the same prediction up to rounding at the edges


@pytest.mark.parametrize("data", ["phantom_lits", "phantom_brats"])
def test_a_predictor_is_scored_exactly_as_the_module_it_wraps(data, request):
    """The adapter for deployment runtimes (a function from float32 arrays to logits) adds nothing:
    the same labels and rows as the module; the settings of the torch forward are not its."""
    _, cache, _ = request.getfixturevalue(data)
    model = random_net(cache.in_channels, DATASETS[cache.kind].num_classes, seed=2)
    seen = []

    def predict(x: np.ndarray) -> np.ndarray:
        seen.append((x.dtype.type, x.flags.c_contiguous, len(x)))
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    want = evaluate_cases(model, cache, cache.case_ids, batch_size=4, channels_last=False)
    got = evaluate_cases(predict, cache, cache.case_ids, batch_size=4, channels_last=True, precision="bf16")
    assert got == want and any(r["value"] not in (0.0, 1.0, None) for r in got)
    assert {s[:2] for s in seen} == {(np.float32, True)} and max(s[2] for s in seen) == 4
    cid = cache.case_ids[0]
    np.testing.assert_array_equal(predict_labels(predict, cache, cid, batch_size=3),
                                  predict_labels(model, cache, cid, batch_size=3, channels_last=False))
