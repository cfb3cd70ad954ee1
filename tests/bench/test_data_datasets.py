"""The dataset modules behind one interface: the same files and cache as before, one table, and a
third dataset defined here alone going through phantom, verify, cache and evaluation."""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lfubench.bench.data import (
    Case,
    PreprocessConfig,
    find_cases,
    open_cache,
    prepare_cache,
    read_case,
    training_slices,
    verify_dataset,
    write_phantom,
)
from lfubench.bench.data.cache import cache_name
from lfubench.bench.datasets import (
    DATASETS,
    KINDS,
    Dataset,
    Layout,
    PhantomCase,
    Problem,
    Slab,
    get_dataset,
    register_dataset,
    unregister_dataset,
)
from lfubench.bench.datasets.base import pick, visible_files
from lfubench.bench.datasets.ops import crop_or_pad, paste_slices
from lfubench.bench.errors import OptionError
from lfubench.bench.evaluate import evaluate_cases

REPO = Path(__file__).resolve().parents[2]


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


#: SHA-256 over every file's path and bytes of a 2-case 24 x 20 x 8 phantom of seed 11 in each layout,
#: as written before the datasets moved into one module each (phantom.py of commit 91076ce)
PHANTOM_DIGESTS = {
    ("lits", "lits"): "767ec0864320a7a75b7f5b68f31d7699ac1c36725dc1327ce7086ac4fc77f5b3",
    ("lits", "msd"): "e59f8ce7f7ccf540476b7721b6f115f0c9f9af6d2d3fb03a08e85527ff01a44e",
    ("brats", "brats2018"): "348333633740f789bb7cb6474c0b494658f2ab8c03754430e5dfb3b364ad1182",
    ("brats", "brats2020"): "590ee651016c55e2f75c99c44315eecf29639867ef9aa83e49ac2658055f56f4",
    ("brats", "brats2023"): "58d9a9eb29487e6ea0d295c011c1ee4743b244ce89434150bf4fba7ec6b12fcc",
}


@pytest.mark.parametrize("kind,layout", list(PHANTOM_DIGESTS))
def test_phantoms_are_the_same_files_byte_for_byte(tmp_path, kind, layout):
    write_phantom(kind, tmp_path, cases=2, shape=(24, 20, 8), seed=11, layout=layout)
    assert _digest(tmp_path) == PHANTOM_DIGESTS[kind, layout]
    cases, problems = find_cases(kind, tmp_path)
    assert problems == [] and [c.layout for c in cases] == [layout, layout]  # one spelling: read, written


def test_cache_names_are_unchanged():
    """The cache key (config, root, files) names the same folder as before: caches are reused."""
    r = Path("/nowhere")
    lits = [Case("0", "lits", "lits", r, {"ct": r / "volume-0.nii"}, r / "segmentation-0.nii")]
    images = {m: r / f"B_{m}.nii.gz" for m in ("flair", "t1", "t1ce", "t2")}
    brats = [Case("B", "brats", "brats2018", r, images, r / "B_seg.nii.gz")]
    assert cache_name(lits, r, PreprocessConfig("lits", size=64)) == "lits-s64-7ab4a63b24ab"
    assert cache_name(brats, r, PreprocessConfig("brats")) == "brats-s192-63cc49c134b7"
    assert PreprocessConfig("brats").to_dict() == {"dataset": "brats", "size": 192,
                                                   "hu_window": (-200.0, 250.0), "context": 1}


def test_one_table_of_datasets_and_plan_kinds():
    assert list(DATASETS) == ["lits", "brats", "nnunet"]
    assert KINDS == {"phantom-lits": "lits", "phantom-brats": "brats", "phantom-nnunet": "nnunet",
                     "lits": "lits", "brats": "brats", "nnunet": "nnunet"}
    assert get_dataset("phantom-brats") is DATASETS["brats"] and get_dataset("lits").title == "LiTS 2017"
    assert [layout.name for layout in DATASETS["brats"].layouts] == ["brats2018", "brats2020", "brats2023"]
    with pytest.raises(OptionError, match="unknown dataset 'kits'; choose one of lits, brats, nnunet"):
        get_dataset("kits")
    with pytest.raises(OptionError, match="unknown brats layout 'brats_legacy'; choose one of brats2018, "):
        DATASETS["brats"].layout("brats_legacy")


#: a branch on a dataset or layout name: ``== "lits"``, ``!= 'brats2018'``, ``"msd" ==`` ...
_NAMES = r"(lits|brats|phantom-lits|phantom-brats|msd|brats20\d\d)"
_BRANCH = re.compile(rf"""(==|!=)\s*["']{_NAMES}["']|["']{_NAMES}["']\s*(==|!=)"""
                     rf"""|\bin\s*\(\s*["']{_NAMES}["']""")


def test_no_branch_on_a_dataset_outside_the_dataset_modules():
    """Dataset knowledge lives in bench/datasets/. bench/metrics is left out: its region sets and
    empty-mask rules are scoring conventions named after the challenges that defined them."""
    found = []
    for package in ("models", "bench", "studies", "reports", "lfubench"):
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel.startswith(("bench/datasets/", "bench/metrics/")):
                continue
            found += [f"{rel}:{n}" for n, line in enumerate(path.read_text().splitlines(), 1)
                      if _BRANCH.search(line)]
    assert found == []


# --------------------------------------------------------------------------------------- a third dataset

class Toy(Dataset):
    """One channel, one region: a bright ball in a dark box; files ``<case>/<case>_img``, ``_lbl``."""

    kind = "toy"
    title = "Toy"
    order = 9
    channels = ("img",)
    in_channels = 1
    num_classes = 2
    labels = ("background", "ball")
    regions = ("foreground",)
    region_set = None
    default_size = 16
    empty = "diagonal"
    layouts = (Layout("toy", {"img": "_img", "label": "_lbl"}, gzip=True, file_labels={0: 0, 7: 1}),)
    phantom_shape = (12, 12, 8)
    expected_files = "<case>/<case>_img.nii.gz"

    def find_cases(self, root):
        files = self.layouts[0].files
        found: dict[Path, dict[str, list[Path]]] = {}
        for path in visible_files(root):
            for role, suffix in files.items():
                if path.name.endswith(f"{suffix}.nii.gz"):
                    found.setdefault(path.parent, {}).setdefault(role, []).append(path)
        cases = []
        for folder, roles in sorted(found.items()):
            problems: list[Problem] = []
            path = {role: pick(folder.name, role, roles[role], root, problems) if role in roles
                    else folder / f"{folder.name}{suffix}.nii.gz" for role, suffix in files.items()}
            cases.append(Case(folder.name, self.kind, "toy", root, {"img": path["img"]}, path["label"],
                              problems=problems))
        return cases, []

    def preprocess(self, data, config, slab):
        center = (data.image.shape[2] / 2, data.image.shape[3] / 2)
        _, offset = crop_or_pad(data.label[:1], config.size, center)
        info = {"orig_shape": list(data.label.shape), "spacing": list(data.spacing), "crop_offset": offset,
                "slice_spacing": list(data.spacing)}

        def slabs():
            for z0 in range(0, data.image.shape[1], slab):
                image, _ = crop_or_pad(data.image[:, z0:z0 + slab] / np.float32(1000), config.size, center)
                label, _ = crop_or_pad(data.label[z0:z0 + slab], config.size, center)
                yield Slab(z0, np.transpose(image, (1, 0, 2, 3)).astype(np.float16), label,
                           np.ones(len(label), dtype=bool))

        return info, slabs()

    def restore_slices(self, probs, info, out, start):
        paste_slices(probs.argmax(1).numpy().astype(np.uint8), info["crop_offset"], out, start)

    def phantom_case(self, rng, index, shape):
        nx, ny, nz = shape
        z, y, x = np.ogrid[:nz, :ny, :nx]
        cz, cy, cx = (n / 2 + rng.uniform(-1, 1) for n in (nz, ny, nx))
        ball = ((z - cz) / 2.5) ** 2 + ((y - cy) / 4) ** 2 + ((x - cx) / 4) ** 2 < 1
        return PhantomCase({"img": np.where(ball, 1000, 100).astype(np.int16)}, ball.astype(np.uint8),
                           (2.0, 1.0, 1.0), flip_xy=index % 2 == 1)

    def phantom_files(self, layout, out, index, cases, ext):
        case = f"toy_{index:02d}"
        return [out / case / f"{case}{layout.files[role]}{ext}" for role in ("img", "label")]


class Threshold(nn.Module):
    """Ball where the input is above 0.5: a perfect model of the toy."""

    def forward(self, x):
        return torch.cat([0.5 - x, x - 0.5], dim=1) * 10


@pytest.fixture
def toy():
    dataset = register_dataset(Toy())
    yield dataset
    unregister_dataset("toy")
    assert "toy" not in DATASETS and "phantom-toy" not in KINDS


def test_a_third_dataset_is_one_class(tmp_path, toy):
    """Registered at run time, the toy goes through phantom writing, verification, the cache, training
    slices and evaluation without any other file knowing it."""
    assert KINDS["phantom-toy"] == "toy" and list(DATASETS)[-1] == "toy"
    paths = write_phantom("toy", tmp_path / "src", cases=3, seed=2)
    assert [p.relative_to(tmp_path / "src").as_posix() for p in paths[:2]] == [
        "toy_00/toy_00_img.nii.gz", "toy_00/toy_00_lbl.nii.gz"]
    raw = np.asanyarray(__import__("nibabel").load(str(paths[1])).dataobj)
    assert set(np.unique(raw)) == {0, 7}  # the layout's file labels, written by the generic writer

    cases, problems = verify_dataset("toy", tmp_path / "src")
    assert problems == [] and [c.case_id for c in cases] == ["toy_00", "toy_01", "toy_02"]
    data = read_case(cases[1])
    assert data.kind == "toy" and data.image.shape == (1, 8, 12, 12) and set(np.unique(data.label)) == {0, 1}
    paths[4].unlink()  # toy_02's image
    _, problems = verify_dataset("toy", tmp_path / "src")
    assert [str(p) for p in problems] == ["case toy_02: toy_02/toy_02_img.nii.gz: missing file (image)"]
    write_phantom("toy", tmp_path / "src", cases=3, seed=2)

    config = PreprocessConfig("toy")
    assert (config.size, config.context) == (16, 1)  # the toy's default size; no slice context
    cache = open_cache(prepare_cache("toy", tmp_path / "src", tmp_path / "cache", config))
    assert cache.path.name.startswith("toy-s16-") and cache.kind == "toy"
    assert cache.in_channels == 1 and len(cache) == 24 and cache.images.shape == (24, 1, 16, 16)
    assert cache.cases["toy_00"]["crop_offset"] == [-2, -2]
    assert set(training_slices(cache, cache.case_ids)) <= set(np.flatnonzero(cache.content))

    rows = evaluate_cases(Threshold(), cache, cache.case_ids, metrics=("dice", "hd95"))
    assert {r["region"] for r in rows} == {"foreground"} and len(rows) == 6
    assert all(r["value"] == (1.0 if r["metric"] == "dice" else 0.0) for r in rows)


def test_an_incomplete_dataset_class_is_refused():
    class Half(Dataset):
        kind = "half"

    with pytest.raises(TypeError, match="abstract"):
        Half()
    with pytest.raises(TypeError, match="not a bench.datasets.Dataset"):
        register_dataset(object())


def test_cli_help_lists_every_dataset_and_layout_from_the_table(capsys):
    from lfubench.cli import main

    with pytest.raises(SystemExit):
        main(["data", "phantom", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "{lits,brats,nnunet}" in text
    assert ("lits: lits (default, Training Batch 1/2) or msd (Task03_Liver); brats: brats2018 (default, "
            "HGG/LGG), brats2020 (flat) or brats2023 (-t2f ... -seg)") in text
    assert ".nii for lits, brats2020" in text


def test_a_module_file_in_the_package_folder_is_registered(tmp_path, monkeypatch):
    """A new dataset is one new file: the package registers the ``DATASET`` of each of its modules."""
    import lfubench.bench.datasets as datasets

    (tmp_path / "toyset.py").write_text(f"from {__name__} import Toy\n\nDATASET = Toy()\n")
    monkeypatch.setattr(datasets, "__path__", [*datasets.__path__, str(tmp_path)])
    try:
        datasets._register_modules()
        assert list(DATASETS) == ["lits", "brats", "nnunet", "toy"] and KINDS["phantom-toy"] == "toy"
        assert PreprocessConfig("toy").size == 16
    finally:
        unregister_dataset("toy")
        sys.modules.pop(f"{datasets.__name__}.toyset", None)
    assert list(DATASETS) == ["lits", "brats", "nnunet"]
