"""Phantoms written in every real layout and read back through the readers."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from lfubench.bench.data import find_cases, read_case, write_phantom
from lfubench.bench.data.labels import map_labels
from lfubench.bench.datasets import DATASETS
from lfubench.bench.datasets.brats import brats_case, brats_group
from lfubench.bench.datasets.lits import lits_case
from lfubench.bench.metrics import MetricInputError, split_labels

SHAPE = (64, 64, 16)


@pytest.fixture(scope="module")
def data_lits_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lits")
    write_phantom("lits", root, cases=5, shape=SHAPE, seed=3)
    return root


@pytest.fixture(scope="module")
def data_brats_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("brats")
    write_phantom("brats", root, cases=4, shape=SHAPE, seed=3)
    return root


def test_lits_layout_batches_and_names(data_lits_root):
    names = sorted(str(p.relative_to(data_lits_root)) for p in data_lits_root.rglob("*.nii*"))
    assert "Training Batch 1/volume-0.nii" in names
    assert "Training Batch 1/segmentation-0.nii" in names
    assert "Training Batch 2/volume-4.nii" in names
    assert len(names) == 10
    cases, problems = find_cases("lits", data_lits_root)
    assert problems == []
    assert [c.case_id for c in cases] == ["0", "1", "2", "3", "4"]
    assert cases[4].label.name == "segmentation-4.nii"


def test_lits_read_back_canonical_orientation_and_spacing(data_lits_root):
    cases, _ = find_cases("lits", data_lits_root)
    for case in cases[:2]:  # case 0 stored LPS-like (flipped), case 1 RAS
        hu, label, spacing = lits_case(np.random.default_rng([3, int(case.case_id)]), SHAPE)
        data = read_case(case)
        assert data.image.shape == (1, 16, 64, 64)
        np.testing.assert_array_equal(data.image[0], hu.astype(np.float32))
        np.testing.assert_array_equal(data.label, label)
        np.testing.assert_allclose(data.spacing, spacing, rtol=1e-6)
        assert data.spacing[0] > data.spacing[1]  # anisotropic: thick slices
    flipped = nib.load(str(cases[0].images["ct"])).affine
    assert flipped[0, 0] < 0 and flipped[1, 1] < 0


def test_lits_phantom_content(data_lits_root):
    cases, _ = find_cases("lits", data_lits_root)
    n_tumor_free = 0
    for case in cases:
        data = read_case(case)
        hu, label = data.image[0], data.label
        assert set(np.unique(label)) <= {0, 1, 2}
        assert (label == 1).sum() > 1000
        assert 45 < np.median(hu[label == 1]) < 80
        if (label == 2).any():
            assert 15 < np.median(hu[label == 2]) < 50
            # tumors sit inside the liver: every tumor voxel touches only liver or tumor in-plane
            grown = np.zeros_like(label, dtype=bool)
            grown[:, 1:-1, 1:-1] = (label[:, 1:-1, 1:-1] == 2)
            assert ((label == 0) & grown).sum() == 0
        else:
            n_tumor_free += 1
        assert not (label > 0).all(axis=(1, 2)).any()
        assert (hu < -900).any() and (hu > 200).any()  # air outside, bone / contrast inside
    tumor_flags = [bool((lits_case(np.random.default_rng([0, i]), (32, 32, 8))[1] == 2).any())
                   for i in range(12)]
    assert not all(tumor_flags) and any(tumor_flags)  # some tumor-free cases


def test_phantom_label_statistics_like_the_real_data():
    """Organ and lesion sizes in cm^3 and their proportions as in LiTS 2017 and BraTS 2018."""
    burdens, tumor_free = [], 0
    for i in range(16):
        _, label, spacing = lits_case(np.random.default_rng([0, i]), (48, 48, 24))
        cm3 = np.prod(spacing) / 1000
        liver = (label > 0).sum() * cm3  # tumors are part of the liver volume
        assert 1000 < liver < 3000
        if (label == 2).any():
            burdens.append((label == 2).sum() * cm3 / liver)
        else:
            tumor_free += 1
    assert 1 <= tumor_free <= 5  # some tumor-free cases, most with tumors
    assert 0.01 < np.mean(burdens) < 0.1 and max(burdens) < 0.3  # a few % of the liver, some large
    assert min(burdens) < 0.005  # and some small lesions
    wt_share = []
    for i in range(8):
        hgg = brats_group(i) == "HGG"
        images, label, spacing = brats_case(np.random.default_rng([0, i]), (48, 48, 24), hgg=hgg)
        brain = np.count_nonzero(images["flair"])  # zero outside the brain
        brain_cm3 = brain * np.prod(spacing) / 1000
        assert 1200 < brain_cm3 < 1700
        wt, tc, et = ((label > 0).sum(), np.isin(label, (1, 3)).sum(), (label == 3).sum())
        wt_share.append(wt / brain)
        assert 0.2 < tc / wt < 0.6  # edema around the core
        assert 0.6 < et / tc < 0.95 if hgg else et / tc < 0.1  # an enhancing rim around necrosis
    assert 0.02 < min(wt_share) and max(wt_share) < 0.25 and 0.04 < np.mean(wt_share) < 0.12


def test_phantom_deterministic_and_seed_dependent(tmp_path):
    a = write_phantom("lits", tmp_path / "a", cases=2, shape=(32, 32, 8), seed=1)
    b = write_phantom("lits", tmp_path / "b", cases=1, shape=(32, 32, 8), seed=1)
    c = write_phantom("lits", tmp_path / "c", cases=1, shape=(32, 32, 8), seed=2)
    va, vb, vc = (nib.load(str(p[0])).get_fdata() for p in (a, b, c))
    np.testing.assert_array_equal(va, vb)  # first case unchanged by asking for more
    assert not np.array_equal(va, vc)


def test_msd_layout(tmp_path):
    write_phantom("lits", tmp_path, cases=3, shape=SHAPE, seed=0, layout="msd")
    task = tmp_path / "Task03_Liver"
    meta = json.loads((task / "dataset.json").read_text())
    assert meta["numTraining"] == 3 and meta["training"][1]["image"] == "./imagesTr/liver_1.nii.gz"
    (task / "imagesTr" / "._liver_0.nii.gz").write_bytes(b"\x00" * 10)  # macOS resource fork: ignored
    for root in (tmp_path, task):
        cases, problems = find_cases("lits", root)
        assert problems == []
        assert [c.case_id for c in cases] == ["liver_0", "liver_1", "liver_2"]
        assert all(c.layout == "msd" for c in cases)
    hu, label, spacing = lits_case(np.random.default_rng([0, 2]), SHAPE)
    data = read_case(cases[2])
    np.testing.assert_array_equal(data.image[0], hu)
    np.testing.assert_array_equal(data.label, label)
    np.testing.assert_allclose(data.spacing, spacing, rtol=1e-6)


def test_msd_without_dataset_json(tmp_path):
    write_phantom("lits", tmp_path, cases=2, shape=(32, 32, 8), seed=0, layout="msd")
    (tmp_path / "Task03_Liver" / "dataset.json").unlink()
    cases, problems = find_cases("lits", tmp_path)
    assert problems == [] and [c.case_id for c in cases] == ["liver_0", "liver_1"]


@pytest.mark.parametrize("gzip", [True, False])
def test_lits_nii_and_niigz(tmp_path, gzip):
    paths = write_phantom("lits", tmp_path, cases=1, shape=(32, 32, 8), gzip=gzip)
    assert all(p.name.endswith(".nii.gz") == gzip for p in paths)
    case = find_cases("lits", tmp_path)[0][0]
    hu, label, _ = lits_case(np.random.default_rng([0, 0]), (32, 32, 8))
    np.testing.assert_array_equal(read_case(case).label, label)


def test_brats2018_hgg_lgg_layout_and_labels(data_brats_root):
    assert (data_brats_root / "HGG" / "Brats18_PHANTOM_0_1" / "Brats18_PHANTOM_0_1_t1ce.nii.gz").is_file()
    assert (data_brats_root / "LGG" / "Brats18_PHANTOM_3_1" / "Brats18_PHANTOM_3_1_seg.nii.gz").is_file()
    cases, problems = find_cases("brats", data_brats_root)
    assert problems == []
    assert [c.group for c in cases] == ["HGG", "HGG", "HGG", "LGG"]
    assert all(c.layout == "brats2018" for c in cases)  # the layout the phantom wrote
    raw = np.asanyarray(nib.load(str(cases[0].label)).dataobj)
    assert set(np.unique(raw)) == {0, 1, 2, 4}  # files keep the 2018 convention
    images, label, spacing = brats_case(np.random.default_rng([3, 0]), SHAPE, hgg=True)
    data = read_case(cases[0])
    assert data.channels == ("flair", "t1", "t1ce", "t2")
    assert data.image.shape == (4, 16, 64, 64)
    np.testing.assert_array_equal(data.label, label)  # 4 -> 3 internally
    for k, m in enumerate(data.channels):
        np.testing.assert_array_equal(data.image[k], images[m])
    # the grid spans BraTS's 155 mm and the 192 x 192 mm in-plane crop: 1 mm voxels at 192 x 192 x 155
    assert data.spacing == spacing == pytest.approx((155 / 16, 192 / 64, 192 / 64))
    assert brats_case(np.random.default_rng([3, 0]), (192, 192, 155))[2] == pytest.approx((1.0, 1.0, 1.0))


@pytest.mark.parametrize("index", [0, 1, 2])  # the HGG cases
def test_brats_modalities_have_distinct_contrasts(data_brats_root, index):
    data = read_case(find_cases("brats", data_brats_root)[0][index])
    flair, t1, t1ce, t2 = data.image
    lab = data.label
    brain = flair > 0
    assert (~brain).any() and brain.mean() > 0.2  # skull-stripped: zeros outside the brain
    healthy = brain & (lab == 0)

    def contrast(image, region):  # median in the region over the healthy brain's, per modality
        return np.median(image[region]) / np.median(image[healthy])

    # edema bright on FLAIR; enhancing tumor bright on T1ce, and much more so than on T1 (the
    # enhancement; its T1 contrast alone depends on the case's white/grey matter mix at 64 x 64)
    assert contrast(flair, lab == 2) > 1.3
    assert contrast(t1ce, lab == 3) > 1.2
    assert contrast(t1ce, lab == 3) > 1.4 * contrast(t1, lab == 3)


def test_brats2023_layout(tmp_path):
    write_phantom("brats", tmp_path, cases=2, shape=(32, 32, 12), layout="brats2023")
    folder = tmp_path / "BraTS-GLI-00001-000"
    assert {p.name for p in folder.iterdir()} == {f"BraTS-GLI-00001-000-{s}.nii.gz"
                                                  for s in ("t1n", "t1c", "t2w", "t2f", "seg")}
    cases, problems = find_cases("brats", tmp_path)
    assert problems == [] and [c.layout for c in cases] == ["brats2023", "brats2023"]
    assert cases[0].images["flair"].name.endswith("-t2f.nii.gz")
    raw = np.asanyarray(nib.load(str(cases[0].label)).dataobj)
    assert 4 not in np.unique(raw) and 3 in np.unique(raw)
    _, label, _ = brats_case(np.random.default_rng([0, 0]), (32, 32, 12), hgg=True)
    np.testing.assert_array_equal(read_case(cases[0]).label, label)


def test_brats2020_layout_uncompressed(tmp_path):
    write_phantom("brats", tmp_path, cases=1, shape=(32, 32, 12), layout="brats2020")
    assert (tmp_path / "BraTS20_Training_001" / "BraTS20_Training_001_flair.nii").is_file()
    cases, problems = find_cases("brats", tmp_path)
    assert problems == [] and cases[0].group is None and read_case(cases[0]).image.shape == (4, 12, 32, 32)
    assert cases[0].layout == "brats2020"


def test_label_mapping_and_regions():
    legacy = np.array([0, 1, 2, 4])
    brats = DATASETS["brats"]
    internal = map_labels(legacy, brats.layout("brats2018"))
    np.testing.assert_array_equal(internal, [0, 1, 2, 3])
    np.testing.assert_array_equal(map_labels(np.array([0, 1, 2, 3]), brats.layout("brats2023")), [0, 1, 2, 3])
    with pytest.raises(ValueError, match="unexpected label values"):
        map_labels(np.array([0, 3]), brats.layout("brats2020"))
    # regions come from bench.metrics.split_labels (2D/3D label maps: one row here), with the
    # scheme of the internal labels the cache holds (bench.datasets)
    internal_scheme = DATASETS["brats"].label_scheme
    r = {k: v[0] for k, v in split_labels(internal[None], "brats", scheme=internal_scheme).items()}
    np.testing.assert_array_equal(r["WT"], [False, True, True, True])
    np.testing.assert_array_equal(r["TC"], [False, True, False, True])
    np.testing.assert_array_equal(r["ET"], [False, False, False, True])
    r_legacy = split_labels(legacy[None], "brats", scheme="brats")  # 2018-2021 files: ET = 4
    for key in ("WT", "TC", "ET"):
        np.testing.assert_array_equal(r_legacy[key][0], r[key])
    r_2023 = split_labels(np.array([[0, 1, 2, 3]]), "brats", scheme="brats2023")
    np.testing.assert_array_equal(r_2023["ET"][0], [False, False, False, True])
    with pytest.raises(MetricInputError, match="label 4"):  # 4 is not a BraTS 2023 label
        split_labels(np.array([[0, 1, 2, 3, 4]]), "brats", scheme="brats2023")
    liver = split_labels(np.array([[0, 1, 2]]), "lits")
    np.testing.assert_array_equal(liver["liver"][0], [False, True, True])
    np.testing.assert_array_equal(liver["tumor"][0], [False, False, True])


def test_unknown_layout_and_dataset_rejected(tmp_path):
    with pytest.raises(ValueError, match="layout"):
        write_phantom("lits", tmp_path, cases=1, layout="brats2018")
    with pytest.raises(ValueError, match="dataset"):
        find_cases("kits", tmp_path)
    cases, problems = find_cases("lits", tmp_path / "nope")
    assert cases == [] and "does not exist" in problems[0].message
