"""Integrity checks: every bad input gives its one-line message, in verify and in the reader."""

from __future__ import annotations

import gzip
import shutil

import nibabel as nib
import numpy as np
import pytest

import lfubench.cli as cli
from lfubench.bench.data import DataError, find_cases, read_case, verify_dataset, write_phantom

SHAPE = (32, 32, 8)


def _rewrite(path, data=None, affine=None, zooms=None):
    img = nib.load(str(path))
    arr = np.asanyarray(img.dataobj).copy() if data is None else data
    new = nib.Nifti1Image(arr, img.affine if affine is None else affine)
    if zooms is not None:
        new.header.set_zooms(zooms)
    nib.save(new, str(path))


def _truncate(path):
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


@pytest.fixture(scope="module")
def data_clean_lits(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean_lits")
    write_phantom("lits", root, cases=12, shape=SHAPE, seed=0)
    return root


@pytest.fixture()
def data_lits(tmp_path, data_clean_lits):
    root = tmp_path / "lits"
    shutil.copytree(data_clean_lits, root)
    return root


def _vol(root, n, kind="volume"):
    return next(root.rglob(f"{kind}-{n}.nii*"))


# each fault planted in its own case, with the message it must produce
LITS_FAULTS = {
    "1": (lambda r: _vol(r, 1, "segmentation").unlink(), "segmentation-1.nii: missing file (label)"),
    "2": (lambda r: _truncate(_vol(r, 2)), "volume-2.nii: truncated or unreadable data"),
    "3": (lambda r: _vol(r, 3).write_bytes(b"not a nifti" * 50), "volume-3.nii: unreadable NIfTI header"),
    "4": (lambda r: _rewrite(_vol(r, 4, "segmentation"),
                             data=np.zeros((32, 32, 7), np.uint8)),
          "segmentation-4.nii: shape 32x32x7 differs from Training Batch 2/volume-4.nii (32x32x8)"),
    "5": (lambda r: _rewrite(_vol(r, 5, "segmentation"), zooms=(1.0, 1.0, 9.0)),
          "segmentation-5.nii: spacing 1x1x9 mm differs from"),
    "6": (lambda r: _rewrite(_vol(r, 6, "segmentation"),
                             affine=nib.load(str(_vol(r, 6))).affine + _shift()),
          "segmentation-6.nii: affine differs from"),
    "7": (lambda r: _rewrite(_vol(r, 7, "segmentation"),
                             data=np.full((32, 32, 8), 7, np.uint8)),
          "segmentation-7.nii: unexpected label values 7 (expected 0, 1, 2)"),
    "8": (lambda r: _rewrite(_vol(r, 8), data=_with_nan(r, 8)),
          "volume-8.nii: 3 NaN/Inf voxels in the image"),
    "9": (lambda r: _rewrite(_vol(r, 9), data=np.zeros((32, 32, 8), np.int16)),
          "volume-9.nii: image is all zeros"),
    "10": (lambda r: _rewrite(_vol(r, 10), data=np.ones((32, 32, 8, 2), np.int16)),
           "volume-10.nii: 4D image (shape 32x32x8x2), expected 3D"),
    "11": (lambda r: _rewrite(_vol(r, 11, "segmentation"),
                              data=np.full((32, 32, 8), 0.5, np.float32)),
           "segmentation-11.nii: 8192 non-integer label values (e.g. 0.5)"),
}


def _shift():
    m = np.zeros((4, 4))
    m[0, 3] = 5.0
    return m


def _with_nan(root, n):
    data = nib.load(str(_vol(root, n))).get_fdata().astype(np.float32)
    data[0, 0, 0], data[1, 1, 1], data[2, 2, 2] = np.nan, np.inf, -np.inf
    return data


def test_every_fault_reported_at_once(data_lits):
    for plant, _ in LITS_FAULTS.values():
        plant(data_lits)
    cases, problems = verify_dataset("lits", data_lits)
    assert verify_dataset("lits", data_lits, jobs=2) == (cases, problems)  # the same in worker processes
    assert len(cases) == 12
    assert sorted({p.case for p in problems}, key=int) == list(LITS_FAULTS)  # case 0 stays clean
    assert len(problems) == len(LITS_FAULTS)
    for problem in problems:
        expected = LITS_FAULTS[problem.case][1]
        assert expected in str(problem), (str(problem), expected)
        assert str(problem).startswith(f"case {problem.case}: Training Batch ")


def test_reader_raises_the_same_message(data_lits):
    cases = {c.case_id: c for c in find_cases("lits", data_lits)[0]}
    for case_id, (plant, expected) in LITS_FAULTS.items():
        plant(data_lits)
        with pytest.raises(DataError) as info:
            read_case(cases[case_id])
        assert expected in str(info.value)
        assert str(info.value) == str(info.value.problems[0])
        assert "\n" not in str(info.value)
    assert read_case(cases["0"]).label.any()  # the clean case still reads


def test_truncated_gzip_and_duplicates(tmp_path):
    write_phantom("lits", tmp_path, cases=2, shape=SHAPE, gzip=True)
    _truncate(tmp_path / "Training Batch 1" / "volume-0.nii.gz")
    copy = tmp_path / "Training Batch 2" / "volume-1.nii"
    copy.write_bytes(gzip.decompress((tmp_path / "Training Batch 2" / "volume-1.nii.gz").read_bytes()))
    _, problems = verify_dataset("lits", tmp_path)
    lines = [str(p) for p in problems]
    assert lines[0].startswith("case 0: Training Batch 1/volume-0.nii.gz: truncated or corrupt gzip data")
    assert lines[1].startswith("case 1: Training Batch 2/volume-1.nii: 2 files for the volume")
    assert len(lines) == 2


def test_orphan_segmentation_reports_missing_volume(tmp_path):
    write_phantom("lits", tmp_path, cases=1, shape=SHAPE)
    (tmp_path / "Training Batch 1" / "volume-0.nii").unlink()
    _, problems = verify_dataset("lits", tmp_path)
    assert [str(p) for p in problems] == ["case 0: Training Batch 1/volume-0.nii: missing file (image)"]


def test_brats_faults(tmp_path):
    write_phantom("brats", tmp_path, cases=4, shape=SHAPE)
    hgg = tmp_path / "HGG"
    (hgg / "Brats18_PHANTOM_0_1" / "Brats18_PHANTOM_0_1_t1ce.nii.gz").unlink()
    _rewrite(hgg / "Brats18_PHANTOM_1_1" / "Brats18_PHANTOM_1_1_t2.nii.gz",
             data=np.ones((32, 30, 8), np.int16))
    seg = hgg / "Brats18_PHANTOM_2_1" / "Brats18_PHANTOM_2_1_seg.nii.gz"
    label = np.asanyarray(nib.load(str(seg)).dataobj).copy()
    label[label == 4] = 3  # a BraTS 2023 value in a 2018 file
    _rewrite(seg, data=label)
    _, problems = verify_dataset("brats", tmp_path)
    lines = [str(p) for p in problems]
    assert lines == [
        "case Brats18_PHANTOM_0_1: HGG/Brats18_PHANTOM_0_1/Brats18_PHANTOM_0_1_t1ce.nii.gz: "
        "missing file (modality t1ce)",
        "case Brats18_PHANTOM_1_1: HGG/Brats18_PHANTOM_1_1/Brats18_PHANTOM_1_1_t2.nii.gz: shape 32x30x8 "
        "differs from HGG/Brats18_PHANTOM_1_1/Brats18_PHANTOM_1_1_flair.nii.gz (32x32x8)",
        "case Brats18_PHANTOM_2_1: HGG/Brats18_PHANTOM_2_1/Brats18_PHANTOM_2_1_seg.nii.gz: "
        "unexpected label values 3 (expected 0, 1, 2, 4)",
    ]


def test_empty_folder(tmp_path):
    cases, problems = verify_dataset("brats", tmp_path)
    assert cases == [] and "no cases found" in problems[0].message


def _snapshot(root):
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


def _run_cli(monkeypatch, argv):
    monkeypatch.setattr(cli, "SUBCOMMANDS", ["data"])  # only this subcommand; others are not under test
    return cli.main(argv)


def test_cli_verify_lines_and_exit_code(data_lits, monkeypatch, capsys):
    LITS_FAULTS["2"][0](data_lits)
    LITS_FAULTS["7"][0](data_lits)
    before = _snapshot(data_lits)
    code = _run_cli(monkeypatch, ["data", "verify", "lits", str(data_lits)])
    out, err = capsys.readouterr()
    assert code == 2
    lines = out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("case 2: Training Batch 1/volume-2.nii: truncated or unreadable data")
    assert lines[1] == ("case 7: Training Batch 2/segmentation-7.nii: unexpected label values 7 "
                        "(expected 0, 1, 2)")
    assert err.strip().endswith(f"error: 2 problem(s) in 2 of 12 case(s) under {data_lits}")
    assert _snapshot(data_lits) == before  # nothing written into the dataset folder


def test_cli_verify_ok_and_json(data_clean_lits, monkeypatch, capsys):
    assert _run_cli(monkeypatch, ["data", "verify", "lits", str(data_clean_lits)]) == 0
    assert capsys.readouterr().out.strip() == f"ok: 12 lits case(s) under {data_clean_lits}, no problems"


def test_cli_phantom_refuses_non_empty(tmp_path, monkeypatch, capsys):
    (tmp_path / "x.txt").write_text("keep")
    assert _run_cli(monkeypatch, ["data", "phantom", "lits", str(tmp_path), "--cases", "1"]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert _run_cli(monkeypatch, ["data", "phantom", "lits", str(tmp_path / "new"), "--cases", "1",
                                  "--shape", "4x4"]) == 2
    assert "--shape must look like XxYxZ" in capsys.readouterr().err
    assert _run_cli(monkeypatch, ["data", "phantom", "brats", str(tmp_path / "b"), "--cases", "2",
                                  "--shape", "32x32x8", "--seed", "1"]) == 0
    assert "wrote 2 brats phantom case(s), 10 files" in capsys.readouterr().out
