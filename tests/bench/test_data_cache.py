"""Preprocessing, the memory-mapped slice cache (atomic writes), splits and training-slice selection."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lfubench.bench.data.cache as cache_mod
from lfubench.bench.data import (
    DataError,
    PreprocessConfig,
    find_cases,
    make_splits,
    open_cache,
    prepare_cache,
    read_case,
    read_splits,
    splits_path,
    training_slices,
    write_phantom,
    write_splits,
)
from lfubench.bench.data.selection import lesion_slices
from lfubench.bench.datasets.lits import window
from lfubench.bench.datasets.ops import crop_or_pad
from lfubench.bench.errors import LfubenchError

SHAPE = (64, 64, 16)


@pytest.fixture(scope="module")
def data_lits_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lits_src")
    write_phantom("lits", root, cases=3, shape=SHAPE, seed=5)
    return root


@pytest.fixture(scope="module")
def data_brats_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("brats_src")
    write_phantom("brats", root, cases=4, shape=SHAPE, seed=5)
    return root


def _snapshot(root):
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


def test_lits_cache_contents_and_context(data_lits_root, tmp_path):
    before = _snapshot(data_lits_root)
    path = prepare_cache("lits", data_lits_root, tmp_path, PreprocessConfig("lits", size=64))
    assert _snapshot(data_lits_root) == before  # nothing written into the dataset folder
    cache = open_cache(path)
    assert cache.case_ids == ["0", "1", "2"] and len(cache) == 48 and cache.in_channels == 3
    case = find_cases("lits", data_lits_root)[0][1]
    data = read_case(case)
    x, y = cache.case_volume("1")
    assert x.shape == (16, 3, 64, 64) and x.dtype == np.float32 and y.dtype == np.uint8
    expected = window(data.image[0], -200, 250)
    np.testing.assert_allclose(x[:, 1], expected, atol=1e-3)  # float16 storage
    np.testing.assert_allclose(x[5, 0], expected[4], atol=1e-3)  # slice below
    np.testing.assert_allclose(x[5, 2], expected[6], atol=1e-3)  # slice above
    np.testing.assert_array_equal(x[0, 0], x[0, 1])  # edges repeat, never the neighbour case
    np.testing.assert_array_equal(x[15, 2], x[15, 1])
    np.testing.assert_array_equal(y, data.label)
    assert x.min() >= 0 and x.max() <= 1
    np.testing.assert_array_equal(cache.foreground[cache.case_indices("1")], data.label.any(axis=(1, 2)))
    xb, yb = cache.read_batch([40, 3, 17])
    np.testing.assert_array_equal(xb[2], cache[17][0])
    meta = json.loads((path / "meta.json").read_text())
    np.testing.assert_allclose(meta["cases"][1]["spacing"], data.spacing)
    # a second prepare with the same data and config reuses the cache
    assert prepare_cache("lits", data_lits_root, tmp_path, PreprocessConfig("lits", size=64)) == path


def test_lits_resize_keeps_labels_and_records_spacing(data_lits_root, tmp_path):
    path = prepare_cache("lits", data_lits_root, tmp_path, PreprocessConfig("lits", size=32))
    cache = open_cache(path)
    x, y = cache.case_volume("0")
    assert x.shape == (16, 3, 32, 32)
    assert set(np.unique(y)) <= {0, 1, 2} and (y == 1).any()
    info = cache.cases["0"]
    np.testing.assert_allclose(info["slice_spacing"][1], info["spacing"][1] * 2)
    assert info["slice_spacing"][0] == info["spacing"][0]


def test_brats_cache_zscore_and_crop(data_brats_root, tmp_path):
    path = prepare_cache("brats", data_brats_root, tmp_path, PreprocessConfig("brats", size=48))
    cache = open_cache(path)
    assert cache.in_channels == 4 and cache.images.shape[1:] == (4, 48, 48)
    data = read_case(find_cases("brats", data_brats_root)[0][0])
    x, y = cache.case_volume("Brats18_PHANTOM_0_1")
    assert x.shape == (16, 4, 48, 48)
    assert set(np.unique(y)) <= {0, 1, 2, 3}
    # z-score over the brain is ~N(0, 1)
    brain = np.any(x != 0, axis=1)
    for c in range(4):
        values = x[:, c][brain]
        assert abs(values.mean()) < 0.05 and abs(values.std() - 1) < 0.05
    y0, x0 = cache.cases["Brats18_PHANTOM_0_1"]["crop_offset"]
    np.testing.assert_array_equal(y, data.label[:, y0:y0 + 48, x0:x0 + 48])
    assert not cache.content.all()  # slices above / below the brain are marked empty
    padded = open_cache(prepare_cache("brats", data_brats_root, tmp_path, PreprocessConfig("brats", size=80)))
    xp, yp = padded.case_volume("Brats18_PHANTOM_0_1")
    assert padded.cases["Brats18_PHANTOM_0_1"]["crop_offset"] == [-8, -8]
    np.testing.assert_array_equal(yp[:, 8:72, 8:72], data.label)  # padding loses nothing
    assert not xp[:, :, :8].any()


def test_crop_or_pad():
    a = np.arange(30).reshape(5, 6)
    out, off = crop_or_pad(a, 4, (2, 3))
    assert off == [0, 1] and out.tolist() == a[0:4, 1:5].tolist()
    out, off = crop_or_pad(a, 8, (2, 3))
    assert off == [-1, -1] and out[1:6, 1:7].tolist() == a.tolist() and out[0].sum() == 0


def test_config_validation():
    with pytest.raises(ValueError, match="multiple of 16"):
        PreprocessConfig("lits", size=100)
    assert PreprocessConfig("lits").size == 256 and PreprocessConfig("brats").size == 192
    assert PreprocessConfig("brats").context == 1


def test_cache_refuses_dataset_folder(data_lits_root):
    with pytest.raises(LfubenchError, match="inside the dataset folder"):
        prepare_cache("lits", data_lits_root, data_lits_root / "cache")


def test_bad_case_stops_prepare_with_its_message(tmp_path):
    root = tmp_path / "src"
    write_phantom("lits", root, cases=2, shape=(32, 32, 8))
    (root / "Training Batch 2" / "segmentation-1.nii").unlink()
    with pytest.raises(DataError, match="case 1: Training Batch 2/segmentation-1.nii: missing file"):
        prepare_cache("lits", root, tmp_path / "cache", PreprocessConfig("lits", size=32))
    assert list((tmp_path / "cache").glob("*")) == []


def test_exception_mid_write_leaves_nothing_trusted(data_lits_root, tmp_path, monkeypatch):
    config = PreprocessConfig("lits", size=64)
    real = cache_mod.preprocess_slabs
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_mod, "preprocess_slabs", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare_cache("lits", data_lits_root, tmp_path, config)
    assert list(tmp_path.iterdir()) == []  # temp folder removed, nothing published
    monkeypatch.setattr(cache_mod, "preprocess_slabs", real)
    path = prepare_cache("lits", data_lits_root, tmp_path, config)
    assert len(open_cache(path)) == 48


def test_killed_writer_is_rebuilt_not_trusted(data_lits_root, tmp_path):
    config = PreprocessConfig("lits", size=64)
    script = textwrap.dedent(f"""
        import os, signal
        import lfubench.bench.data.cache as c
        real, calls = c.preprocess_slabs, []
        def killing(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)
        c.preprocess_slabs = killing
        c.prepare_cache("lits", {str(data_lits_root)!r}, {str(tmp_path)!r},
                        c.PreprocessConfig("lits", size=64))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    leftovers = list(tmp_path.iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".tmp-lits-s64-")
    final = tmp_path / leftovers[0].name[len(".tmp-"):].rsplit("-", 2)[0]
    with pytest.raises(DataError, match="no meta.json"):
        open_cache(leftovers[0])  # the partial write is not a cache
    path = prepare_cache("lits", data_lits_root, tmp_path, config)
    assert path == final
    assert [p.name for p in tmp_path.iterdir()] == [final.name]  # stale temp folder removed
    assert len(open_cache(path)) == 48


def test_corrupt_published_cache_is_rebuilt(data_lits_root, tmp_path):
    config = PreprocessConfig("lits", size=64)
    path = prepare_cache("lits", data_lits_root, tmp_path, config)
    reference = open_cache(path).read_batch(np.arange(48))[0]
    blob = (path / "images.npy").read_bytes()
    (path / "images.npy").write_bytes(blob[: len(blob) // 3])
    with pytest.raises(DataError, match="images.npy is missing or truncated"):
        open_cache(path)
    assert prepare_cache("lits", data_lits_root, tmp_path, config) == path
    np.testing.assert_array_equal(open_cache(path).read_batch(np.arange(48))[0], reference)
    meta = json.loads((path / "meta.json").read_text())
    meta["complete"] = False
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="incomplete write"):
        open_cache(path)


def test_splits_deterministic_case_level_and_stratified():
    ids = [f"case{i}" for i in range(23)]
    groups = {cid: ("LGG" if i % 4 == 3 else "HGG") for i, cid in enumerate(ids)}
    a = make_splits(ids, seed=7, test_fraction=0.2, folds=5, groups=groups)
    b = make_splits(list(reversed(ids)), seed=7, test_fraction=0.2, folds=5, groups=groups)
    c = make_splits(ids, seed=8, test_fraction=0.2, folds=5, groups=groups)
    assert a == b  # input order does not matter
    assert a["test"] != c["test"]
    assert not set(a["train"]) & set(a["val"]) and not set(a["test"]) & (set(a["train"]) | set(a["val"]))
    assert sorted(a["train"] + a["val"] + a["test"]) == sorted(ids)
    assert len(a["test"]) == 5 and {groups[c] for c in a["test"]} == {"HGG", "LGG"}
    vals = [v for fold in a["cv"] for v in fold["val"]]
    assert sorted(vals) == sorted(set(ids) - set(a["test"]))  # folds partition the non-test cases
    assert {len(f["val"]) for f in a["cv"]} <= {3, 4}
    for fold in a["cv"]:
        assert not set(fold["train"]) & set(fold["val"]) and not set(fold["train"]) & set(a["test"])
    with pytest.raises(ValueError, match="need at least one case per fold"):
        make_splits(ids[:4], folds=5)


def test_splits_file_roundtrip(tmp_path):
    splits = make_splits(["a", "b", "c", "d", "e", "f"], seed=1, folds=2)
    path = write_splits(tmp_path, splits)
    assert read_splits(path) == splits and [p.name for p in tmp_path.iterdir()] == ["splits-s1-t0.2-f2.json"]


def test_splits_are_keyed_by_their_settings(tmp_path):
    """Changing the seed, test fraction or folds writes a new file; nothing is silently reused."""
    ids = [str(k) for k in range(10)]
    a = write_splits(tmp_path, make_splits(ids, seed=0, test_fraction=0.2, folds=2))
    b = write_splits(tmp_path, make_splits(ids, seed=1, test_fraction=0.2, folds=2))
    c = write_splits(tmp_path, make_splits(ids, seed=0, test_fraction=0.3, folds=2))
    d = write_splits(tmp_path, make_splits(ids, seed=0, test_fraction=0.2, folds=4))
    assert len({a, b, c, d}) == 4 and a == splits_path(tmp_path, 0, 0.2, 2)
    assert read_splits(b)["test"] != read_splits(a)["test"]
    assert len(read_splits(c)["test"]) == 3 and len(read_splits(d)["cv"]) == 4


def test_training_slices(data_lits_root, tmp_path):
    cache = open_cache(prepare_cache("lits", data_lits_root, tmp_path, PreprocessConfig("lits", size=32)))
    ids = ["0", "2"]
    chosen = training_slices(cache, ids, background_fraction=0.5, seed=0)
    assert np.array_equal(chosen, training_slices(cache, ids, background_fraction=0.5, seed=0))
    assert np.isin(chosen, np.concatenate([cache.case_indices(c) for c in ids])).all()
    for cid in ids:
        idx = cache.case_indices(cid)
        fg = idx[cache.foreground[idx]]
        bg = idx[~cache.foreground[idx] & cache.content[idx]]
        assert len(fg) and len(bg)
        assert np.isin(fg, chosen).all()  # every foreground slice
        assert np.isin(bg, chosen).sum() == round(len(bg) * 0.5)  # a seeded share of the background
    assert cache.content[chosen].all()
    only_fg = training_slices(cache, ids, background_fraction=0.0)
    assert cache.foreground[only_fg].all() and len(only_fg) < len(chosen)


def test_training_slices_repeat_lesion_slices(data_lits_root, tmp_path):
    cache = open_cache(prepare_cache("lits", data_lits_root, tmp_path, PreprocessConfig("lits", size=32)))
    ids = ["0", "1", "2"]
    once = training_slices(cache, ids, seed=0, lesion_repeat=1)
    assert len(np.unique(once)) == len(once)
    tumor = [i for i in once if (cache[int(i)][1] == 2).any()]  # the slices showing tumor (label 2)
    assert len(tumor)
    np.testing.assert_array_equal(lesion_slices(cache, once), tumor)
    four = training_slices(cache, ids, seed=0)  # the default: LESION_REPEAT = 4
    values, counts = np.unique(four, return_counts=True)
    np.testing.assert_array_equal(values, once)  # the same slices, background draw included
    np.testing.assert_array_equal(counts, np.where(np.isin(values, tumor), 4, 1))
    with pytest.raises(ValueError, match="lesion repeat"):
        training_slices(cache, ids, lesion_repeat=0)


def test_cli_prepare_writes_cache_and_splits(data_brats_root, tmp_path, monkeypatch, capsys):
    import lfubench.cli as cli

    monkeypatch.setattr(cli, "SUBCOMMANDS", ["data"])
    code = cli.main(["data", "prepare", "brats", str(data_brats_root), "--out", str(tmp_path), "--size", "64",
                     "--folds", "2", "--test-fraction", "0.25", "--seed", "3"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "4 cases, 64 slices" in out and "input 4x64x64" in out
    path = next(p for p in tmp_path.iterdir() if p.name.startswith("brats-s64-"))
    splits = read_splits(splits_path(path, 3, 0.25, 2))
    assert splits["seed"] == 3 and len(splits["test"]) == 1 and len(splits["cv"]) == 2


def test_cache_pickles_by_path(data_lits_root, tmp_path):
    """A pickled cache is a few hundred bytes and re-opens the same memory-mapped files."""
    import pickle

    cache = open_cache(prepare_cache("lits", data_lits_root, tmp_path, PreprocessConfig("lits", size=32)))
    blob = pickle.dumps(cache)
    again = pickle.loads(blob)
    assert len(blob) < 1000 < cache.images.nbytes
    assert isinstance(again.images, np.memmap) and len(again) == len(cache)
    for a, b in zip(cache[3], again[3], strict=True):
        assert np.array_equal(a, b)
