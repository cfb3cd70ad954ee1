"""Data at real scale: a case costs its own arrays plus a slab, and jobs do not change any file."""

from __future__ import annotations

import gzip
import tracemalloc

import numpy as np
import pytest

import lfubench.bench.data.nifti as nifti_mod
import lfubench.bench.data.preprocess as preprocess_mod
import lfubench.bench.datasets.synth as synth_mod
from lfubench.bench.data import PreprocessConfig, prepare_cache, verify_dataset, write_phantom
from lfubench.bench.data.cache import ARRAYS
from lfubench.bench.errors import OptionError

MB = 1 << 20
SHAPE = (512, 512, 40)  # the real in-plane size; a float32 copy of the volume is 40 MB
SLAB = 512 * 512 * 2  # slabs of two slices, so that a slab is small next to the volume


@pytest.fixture
def small_slabs(monkeypatch):
    monkeypatch.setattr(synth_mod, "SLAB_VOXELS", SLAB)
    monkeypatch.setattr(preprocess_mod, "SLAB_VOXELS", SLAB)
    monkeypatch.setattr(nifti_mod, "BLOCK_VOXELS", SLAB)


def _peak(fn) -> int:
    """Peak bytes numpy (and Python) allocate while ``fn`` runs (``tracemalloc`` traces numpy)."""
    import torch.nn.functional  # noqa: F401  (imported before tracing: its modules are not the case's)

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_lits_phantom_and_prepare_hold_one_case_and_a_slab(tmp_path, small_slabs):
    """Two cases, each 20 MB of int16 HU + 10 MB of labels: the peak is one case plus a few MB (a
    few float32 slices; the phantom's liver pre-pass, at most the default grid), never a float32
    copy of a volume (40 MB), and not two cases."""
    voxels = int(np.prod(SHAPE))
    case = voxels * 3  # int16 + uint8
    src = tmp_path / "src"
    phantom = _peak(lambda: write_phantom("lits", src, cases=2, shape=SHAPE))
    assert phantom < case + 24 * MB, (phantom / MB, case / MB)
    config = PreprocessConfig("lits", size=256)
    prepare = _peak(lambda: prepare_cache("lits", src, tmp_path / "cache", config))
    assert prepare < case + 8 * MB, (prepare / MB, case / MB)  # a few float32 slices
    assert 4 * voxels > 24 * MB  # a float32 volume would not fit in either margin


def test_brats_prepare_holds_one_case_and_a_slab(tmp_path, monkeypatch):
    """The z-score statistics come from a first pass; normalising and cropping go slab by slab."""
    shape = (240, 240, 48)
    monkeypatch.setattr(preprocess_mod, "SLAB_VOXELS", 240 * 240 * 2)
    monkeypatch.setattr(nifti_mod, "BLOCK_VOXELS", 240 * 240 * 2)
    write_phantom("brats", tmp_path / "src", cases=2, shape=shape)
    case = int(np.prod(shape)) * 9  # four int16 modalities + uint8 labels
    peak = _peak(lambda: prepare_cache("brats", tmp_path / "src", tmp_path / "cache"))
    assert peak < case + 3 * MB, (peak / MB, case / MB)
    assert int(np.prod(shape)) * 4 > 3 * MB  # one float32 channel would not fit in the margin


def _files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("dataset,layout", [("lits", "lits"), ("brats", "brats2018")])
def test_jobs_write_the_same_phantom_and_cache(tmp_path, dataset, layout):
    shape = (48, 40, 12)
    one, two = tmp_path / "one", tmp_path / "two"
    paths = write_phantom(dataset, one, cases=3, shape=shape, seed=4, layout=layout, jobs=1)
    assert write_phantom(dataset, two, cases=3, shape=shape, seed=4, layout=layout, jobs=2) == [
        two / p.relative_to(one) for p in paths]
    assert _files(one) == _files(two)  # byte for byte, .nii.gz included

    config = PreprocessConfig(dataset, size=48)
    a = prepare_cache(dataset, one, tmp_path / "cache1", config, jobs=1)
    b = prepare_cache(dataset, one, tmp_path / "cache2", config, jobs=2)
    assert a.name == b.name
    for name in (*ARRAYS, "meta.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_jobs_option_is_checked(tmp_path):
    with pytest.raises(OptionError, match="--jobs must be at least 1"):
        write_phantom("lits", tmp_path, cases=1, shape=(16, 16, 8), jobs=0)
    write_phantom("lits", tmp_path / "src", cases=1, shape=(16, 16, 8))
    with pytest.raises(OptionError, match="--jobs must be at least 1"):
        prepare_cache("lits", tmp_path / "src", tmp_path / "cache", PreprocessConfig("lits", size=16),
                      jobs=-1)
    with pytest.raises(OptionError, match="--jobs must be at least 1"):
        verify_dataset("lits", tmp_path / "src", jobs=0)


def test_a_failing_case_in_a_worker_stops_prepare_with_its_message(tmp_path):
    write_phantom("lits", tmp_path / "src", cases=3, shape=(32, 32, 8))
    volume = tmp_path / "src" / "Training Batch 2" / "volume-2.nii"
    volume.write_bytes(volume.read_bytes()[:1000])  # the header reads, the data does not
    (tmp_path / "src" / "Training Batch 2" / "segmentation-1.nii").write_bytes(b"")
    with pytest.raises(Exception, match="case 1: Training Batch 2/segmentation-1.nii") as info:
        prepare_cache("lits", tmp_path / "src", tmp_path / "cache", PreprocessConfig("lits", size=32), jobs=2)
    assert type(info.value).__name__ == "DataError"  # the earliest failing case, its type and problems kept
    assert list((tmp_path / "cache").glob("*")) == []


@pytest.mark.parametrize("codes", ["RAS", "LPS", "PSL", "SRA"])
@pytest.mark.parametrize("gz", [False, True])
def test_slab_reading_equals_nibabel_canonical(tmp_path, monkeypatch, codes, gz):
    """Files in any axis order, flipped, 4D with a trailing 1, scaled or not: read slab by slab
    (one slice per block when stored axially) they equal nibabel's ``as_closest_canonical`` array,
    in the stored dtype."""
    import nibabel as nib

    monkeypatch.setattr(nifti_mod, "BLOCK_VOXELS", 1)
    rng = np.random.default_rng(0)
    data = rng.integers(-1000, 1000, size=(7, 5, 6, 1)).astype(np.int16)
    affine = np.eye(4)
    affine[:3, :3] = 0
    for i, ((axis, flip), zoom) in enumerate(zip(nib.orientations.axcodes2ornt(codes), (0.8, 0.9, 2.5),
                                                 strict=True)):
        affine[int(axis), i] = flip * zoom  # file axis i runs along world axis `axis`
    path = tmp_path / f"x.nii{'.gz' if gz else ''}"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    img = nifti_mod.load_image(path)
    assert "".join(nib.aff2axcodes(img.affine)) == codes
    expected = np.transpose(np.asanyarray(nib.as_closest_canonical(img).dataobj)[..., 0], (2, 1, 0))
    out = nifti_mod.read_data(img)
    assert out.dtype == np.int16 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected)
    blocks = list(nifti_mod.canonical_blocks(img, slices=1))  # one slice per block, whatever the order
    assert sorted(z0 for z0, _ in blocks) == list(range(len(expected)))
    for z0, block in blocks:
        np.testing.assert_array_equal(block, expected[z0:z0 + 1])
    zooms = nib.as_closest_canonical(nib.load(str(path))).header.get_zooms()[:3]
    assert nifti_mod.canonical_spacing(img) == (float(zooms[2]), float(zooms[1]), float(zooms[0]))

    blob = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    blob = blob[:112] + np.array([0.5, -3], "<f4").tobytes() + blob[120:]  # scl_slope, scl_inter
    path.write_bytes(gzip.compress(blob) if gz else blob)  # the same stored values, now scaled
    img = nifti_mod.load_image(path)
    out = nifti_mod.read_data(img)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected.astype(np.float32) * 0.5 - 3)
    raw = nifti_mod.read_data(img, raw=True)  # labels: the stored type, widened if scaled (as nibabel does)
    assert raw.dtype == np.float64
    np.testing.assert_array_equal(raw, expected * 0.5 - 3)


def test_read_label_alone(tmp_path):
    from lfubench.bench.data import DataError, find_cases, read_case, read_label

    write_phantom("brats", tmp_path, cases=1, shape=(32, 32, 12))
    case = find_cases("brats", tmp_path)[0][0]
    label = read_label(case)
    assert label.dtype == np.uint8 and 3 in label  # file value 4 -> internal 3
    np.testing.assert_array_equal(label, read_case(case).label)
    case.label.write_bytes(b"")
    with pytest.raises(DataError, match=f"case {case.case_id}: .*_seg.nii.gz: "):
        read_label(case)
