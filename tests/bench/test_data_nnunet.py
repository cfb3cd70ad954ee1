"""nnU-Net v2's raw layout (kind ``nnunet``): a phantom written in it and read back exactly, the facts
of a folder from its dataset.json, each normalisation, and every bad input in one line naming the
case or file."""

from __future__ import annotations

import json
import pickle
import shutil

import nibabel as nib
import numpy as np
import pytest

import lfubench.cli as cli
from lfubench.bench.data import PreprocessConfig, find_cases, read_case, verify_dataset, write_phantom
from lfubench.bench.data.reader import CaseData
from lfubench.bench.datasets import DATASETS, FOLDERS, dataset_for, get_dataset
from lfubench.bench.datasets import nnunet as N
from lfubench.bench.datasets.ops import resize_slices
from lfubench.bench.errors import OptionError
from lfubench.bench.metrics import MetricsAccumulator
from lfubench.bench.metrics.regions import REGION_SETS

SHAPE = (24, 20, 8)  # X, Y, Z


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("nnunet") / "Dataset901_Phantom"
    write_phantom("nnunet", root, cases=5, shape=SHAPE, seed=3)
    return root


@pytest.fixture()
def root(tmp_path, clean):
    copy = tmp_path / "Dataset901_Phantom"
    shutil.copytree(clean, copy)
    return copy


def _meta(root):
    return json.loads((root / "dataset.json").read_text())


def _write_meta(root, meta):
    (root / "dataset.json").write_text(json.dumps(meta))


def test_phantom_is_written_in_the_raw_layout(clean):
    names = sorted(str(p.relative_to(clean)) for p in clean.rglob("*") if p.is_file())
    assert names == ["dataset.json",
                     *[f"imagesTr/prostate_{i:03d}_{c:04d}.nii.gz" for i in range(5) for c in (0, 1)],
                     *[f"labelsTr/prostate_{i:03d}.nii.gz" for i in range(5)]]
    meta = _meta(clean)
    assert meta["channel_names"] == {"0": "T2", "1": "ADC"} and meta["file_ending"] == ".nii.gz"
    assert meta["labels"] == {"background": 0, "whole": [1, 2], "PZ": 1, "TZ": 2}
    assert meta["regions_class_order"] == [1, 1, 2] and meta["numTraining"] == 5


def test_a_folder_gives_its_own_dataset_from_dataset_json(clean):
    dataset = dataset_for("nnunet", clean)
    assert dataset is not DATASETS["nnunet"] and dataset.kind.startswith("nnunet-Dataset901_Phantom-")
    assert get_dataset(dataset.kind) is dataset and FOLDERS[dataset.kind] is dataset
    assert dataset.kind not in DATASETS  # the table lists the dataset modules only
    assert dataset.channels == ("T2", "ADC") and dataset.in_channels == 2 and dataset.num_classes == 3
    assert dataset.labels == ("background", "PZ", "TZ")
    assert dataset.regions == ("whole", "PZ", "TZ") and dataset.region_set == dataset.kind
    assert dataset.layout().file_labels == {0: 0, 1: 1, 2: 2} and dataset.empty == "diagonal"
    assert dataset_for("nnunet", clean) is dataset  # read again, unchanged: the same object
    assert dataset_for("phantom-nnunet", clean) is DATASETS["nnunet"]


def test_a_changed_dataset_json_is_another_kind(root):
    """The kind names the slice cache: a cache made under other facts is never reused."""
    before = dataset_for("nnunet", root)
    meta = _meta(root)
    meta["channel_names"]["1"] = "noNorm"
    _write_meta(root, meta)
    after = dataset_for("nnunet", root)
    assert after.kind != before.kind and after.kind.startswith("nnunet-Dataset901_Phantom-")
    assert (before.normalisation(1), after.normalisation(1)) == ("zscore", "none")


def test_cases_read_back_exactly(clean):
    cases, problems = verify_dataset("nnunet", clean)
    assert problems == [] and [c.case_id for c in cases] == [f"prostate_{i:03d}" for i in range(5)]
    dataset = DATASETS["nnunet"]
    for i, case in enumerate(cases):
        data = read_case(case)
        made = dataset.phantom_case(np.random.default_rng([3, i]), i, SHAPE)
        assert data.image.shape == (2, 8, 20, 24) and data.channels == ("T2", "ADC")
        np.testing.assert_array_equal(data.image[0], made.images["T2"])
        np.testing.assert_array_equal(data.image[1], made.images["ADC"])
        np.testing.assert_array_equal(data.label, made.label)
        assert np.allclose(data.spacing, made.spacing)
    assert {int(v) for case in cases for v in np.unique(read_case(case).label)} == {0, 1, 2}


def test_regions_are_scored_under_their_names(clean):
    dataset = dataset_for("nnunet", clean)
    ref = np.zeros((4, 6, 6), np.uint8)
    ref[1:3, 1:5, 1:5] = 1  # 32 PZ voxels
    ref[1:3, 2:4, 2:4] = 2  # of which 8 are TZ
    pred = ref.copy()
    pred[pred == 2] = 1  # TZ predicted as PZ: the whole gland is right
    acc = MetricsAccumulator(("dice",), regions=dataset.region_set, empty="nan")
    rows = {r["region"]: r["value"] for r in acc(pred, ref)}
    assert list(rows) == ["whole", "PZ", "TZ"]
    assert rows["whole"] == 1.0 and rows["PZ"] == pytest.approx(2 * 24 / (24 + 32)) and rows["TZ"] == 0.0


def _case(image, label, channels):
    return CaseData("c", "nnunet", image, label, (2.0, 1.0, 1.0), channels)


def _folder_dataset(meta_changes, tmp_path):
    meta = {**N.PHANTOM_JSON, "file_ending": ".nii.gz", "numTraining": 1, **meta_changes}
    description, problems = N.describe(meta, "x")
    assert problems == []
    return N.NnUNet(description, tmp_path)


def test_zscore_over_the_whole_case_or_the_nonzero_region(tmp_path):
    dataset = _folder_dataset({"channel_names": {"0": "T2", "1": "noNorm"}}, tmp_path)
    rng = np.random.default_rng(0)
    full = rng.normal(100, 20, (2, 4, 16, 16)).astype(np.float32)
    label = np.zeros((4, 16, 16), np.uint8)
    config = PreprocessConfig("nnunet", size=16)  # the in-plane size: no resizing
    info, slabs = dataset.preprocess(_case(full, label, dataset.channels), config, slab=3)
    out = np.concatenate([s.image for s in slabs]).astype(np.float32)  # (Z, C, S, S)
    assert info["orig_shape"] == [4, 16, 16]
    z = (full[0] - full[0].astype(np.float64).mean()) / full[0].astype(np.float64).std()
    np.testing.assert_allclose(out[:, 0], z, atol=3e-3)  # whole volume: nothing is zero
    np.testing.assert_allclose(out[:, 1], full[1], rtol=1e-3)  # noNorm: as stored (float16)

    padded = np.zeros_like(full)
    padded[:, 1:3, 4:10, 5:11] = full[:, 1:3, 4:10, 5:11]  # a small nonzero box: < 3/4 of the volume
    _, slabs = dataset.preprocess(_case(padded, label, dataset.channels), config, slab=2)
    out = np.concatenate([s.image for s in slabs]).astype(np.float32)
    inside = padded[0][padded[0] != 0].astype(np.float64)
    expected = np.where(padded[0] != 0, (padded[0] - inside.mean()) / inside.std(), 0)
    np.testing.assert_allclose(out[:, 0], expected, atol=3e-3)
    assert dataset.normalisation(0) == "zscore" and dataset.normalisation(1) == "none"


def test_ct_is_clipped_and_scaled_with_the_datasets_foreground_statistics(root, monkeypatch):
    monkeypatch.setattr(N, "CT_SAMPLES", 1)  # every foreground voxel
    meta = _meta(root)
    meta["channel_names"] = {"0": "CT", "1": "ADC"}
    _write_meta(root, meta)
    dataset = dataset_for("nnunet", root)
    assert dataset.normalisation(0) == "ct"
    cases, _ = find_cases(dataset.kind, root)
    datas = [read_case(c) for c in cases]
    config = PreprocessConfig(dataset.kind, size=16)
    fg = np.concatenate([d.image[0][d.label > 0].astype(np.float64) for d in datas])
    lo, hi = np.percentile(fg, [0.5, 99.5])
    assert dataset.ct_statistics()[0][:2] == pytest.approx((lo, hi))
    clipped = np.clip(fg, lo, hi)
    mean, std = dataset.ct_statistics()[0][2:]
    assert (mean, std) == pytest.approx((clipped.mean(), clipped.std()))
    assert std > 0 and lo < mean < hi

    # the same map for every case: (clip(x) - mean) / std, resized (bilinear: within its range)
    d = datas[0]
    info, slabs = dataset.preprocess(d, config, slab=8)
    out = np.concatenate([s.image for s in slabs]).astype(np.float32)
    assert out.shape == (8, 2, 16, 16) and info["slice_spacing"][1:] == pytest.approx(
        [d.spacing[1] * 20 / 16, d.spacing[2] * 24 / 16])
    assert out[:, 0].min() >= (lo - mean) / std - 1e-2 and out[:, 0].max() <= (hi - mean) / std + 1e-2
    expected = (resize_slices(np.clip(d.image[0].astype(np.float32), lo, hi), 16) - mean) / std  # linear
    np.testing.assert_allclose(out[:, 0], expected, atol=5e-3, rtol=2e-3)


# --------------------------------------------------------------------------------------- bad inputs

def _first_image(root, case, channel=0):
    return root / "imagesTr" / f"{case}_{channel:04d}.nii.gz"


def _label(root, case):
    return root / "labelsTr" / f"{case}.nii.gz"


def _set_label(path, value):
    img = nib.load(str(path))
    arr = np.asanyarray(img.dataobj).copy()
    arr[0, 0, 0] = value
    nib.save(nib.Nifti1Image(arr, img.affine), str(path))


def _crop_label(path):
    img = nib.load(str(path))
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj)[:, :, :7].copy(), img.affine), str(path))


#: each fault in its own case, and the one line it must give
CASE_FAULTS = {
    "prostate_000": (lambda r: _set_label(_label(r, "prostate_000"), 3),
                     "case prostate_000: labelsTr/prostate_000.nii.gz: unexpected label values 3 "
                     "(expected 0, 1, 2)"),
    "prostate_001": (lambda r: _first_image(r, "prostate_001", 1).unlink(),
                     "case prostate_001: imagesTr/prostate_001_0001.nii.gz: missing file "
                     "(channel 0001 (ADC))"),
    "prostate_002": (lambda r: _crop_label(_label(r, "prostate_002")),
                     "case prostate_002: labelsTr/prostate_002.nii.gz: shape 24x20x7 differs from "
                     "imagesTr/prostate_002_0000.nii.gz (24x20x8)"),
    "prostate_003": (lambda r: _first_image(r, "prostate_003").write_bytes(b"not a nifti" * 50),
                     "case prostate_003: imagesTr/prostate_003_0000.nii.gz: unreadable NIfTI header"),
    "prostate_004": (lambda r: shutil.copy(_first_image(r, "prostate_004"),
                                           _first_image(r, "prostate_004", 2)),
                     "case prostate_004: imagesTr/prostate_004_0002.nii.gz: channel 0002 is not in "
                     "dataset.json's channel_names (0000 T2, 0001 ADC)"),
}


def test_every_bad_case_is_one_line_naming_case_and_file(root):
    for plant, _ in CASE_FAULTS.values():
        plant(root)
    cases, problems = verify_dataset("nnunet", root)
    lines = [str(p) for p in problems]
    assert len(cases) == 5 and len(lines) == len(CASE_FAULTS)
    for (case, (_, expected)), line in zip(CASE_FAULTS.items(), lines, strict=True):
        assert line.startswith(expected), (case, line)
        assert "\n" not in line


def test_verify_command_lists_each_problem_and_fails(root, capsys):
    _set_label(_label(root, "prostate_000"), 3)
    _first_image(root, "prostate_001", 1).unlink()
    assert cli.main(["data", "verify", "nnunet", str(root)]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines() == [CASE_FAULTS["prostate_000"][1], CASE_FAULTS["prostate_001"][1]]
    assert "2 problem(s) in 2 of 5 case(s)" in err


def test_verify_command_on_a_bad_dataset_json(root, capsys):
    meta = _meta(root)
    meta["file_ending"] = ".mha"
    _write_meta(root, meta)
    assert cli.main(["data", "verify", "nnunet", str(root)]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines() == ["case -: dataset.json: file_ending '.mha' is not read by lfubench "
                                "(NIfTI only: .nii.gz, .nii)"]
    assert f"1 problem(s) in the dataset's files under {root}" in err


#: a change to dataset.json, and the one line it must give
JSON_FAULTS = {
    "missing key": (lambda m: m.pop("file_ending"), "missing key 'file_ending'"),
    "channels": (lambda m: m.update(channel_names={"0": "T2", "2": "ADC"}),
                 "channel_names keys must be 0 .. 1, got 0, 2"),
    "background": (lambda m: m["labels"].update(background=1), "labels: 'background' must be 0, got 1"),
    "gap": (lambda m: m["labels"].update(TZ=3, whole=[1, 3]),
            "labels: the values must be consecutive 0, 1, 2, ... (nnU-Net's rule), got 0, 1, 3"),
    "regions": (lambda m: m.pop("regions_class_order"),
                "labels has regions (a name mapped to a list of values) but no regions_class_order"),
    "order": (lambda m: m.update(regions_class_order=[1, 2]),
              "regions_class_order must list one label value per region (3), got [1, 2]"),
    "ending": (lambda m: m.update(file_ending=".mha"),
               "file_ending '.mha' is not read by lfubench (NIfTI only: .nii.gz, .nii)"),
    "count": (lambda m: m.update(numTraining=7), "numTraining is 7, but 5 cases were found"),
    "value": (lambda m: m["labels"].update(PZ="one"),
              "labels: 'PZ' must be a label value (an integer >= 0) or a non-empty list of them, got 'one'"),
}


@pytest.mark.parametrize("fault", list(JSON_FAULTS))
def test_a_bad_dataset_json_is_one_line(root, fault):
    change, expected = JSON_FAULTS[fault]
    meta = _meta(root)
    change(meta)
    _write_meta(root, meta)
    _, problems = find_cases("nnunet", root)
    assert [str(p) for p in problems] == [f"case -: dataset.json: {expected}"]
    if fault != "count":  # a description that cannot be read stops a plan or a cache
        with pytest.raises(OptionError) as err:
            dataset_for("nnunet", root)
        assert str(err.value) == f"{root / 'dataset.json'}: {expected}"


def test_missing_or_malformed_dataset_json(root):
    (root / "dataset.json").write_text("{not json")
    _, problems = find_cases("nnunet", root)
    assert len(problems) == 1 and str(problems[0]).startswith("case -: dataset.json: not valid JSON (")
    (root / "dataset.json").unlink()
    _, problems = find_cases("nnunet", root)
    assert [p.message for p in problems] == [
        "missing file (nnU-Net's dataset.json: channel_names, labels, file_ending, numTraining)"]


def test_a_case_brings_its_dataset_to_a_worker_process(clean):
    """Worker processes start with the table of dataset modules only: unpickling a case registers its
    folder's dataset (and its region set) there."""
    cases, _ = find_cases("nnunet", clean)
    kind = cases[0].kind
    blob = pickle.dumps(cases[0])
    FOLDERS.pop(kind)
    REGION_SETS.pop(kind)
    case = pickle.loads(blob)
    assert get_dataset(kind).regions == ("whole", "PZ", "TZ") and kind in REGION_SETS
    assert read_case(case).image.shape == (2, 8, 20, 24)
