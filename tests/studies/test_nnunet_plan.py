"""A dataset in nnU-Net's raw layout in a plan: its facts read from dataset.json when the plan is
loaded, its problems listed there, and (slow) a tiny plan on it end to end through the report."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lfubench.bench.data import write_phantom
from lfubench.bench.datasets import get_dataset
from lfubench.cli import main
from lfubench.studies.plan import check_model, load_plan
from lfubench.studies.schema import ModelSpec, PlanError
from lfubench.studies.sweepfile import load_study

from ._plans import measure, objectives, table, toml_text, train

#: the phantom's scored regions: two labels and one region made of both, in dataset.json's order
REGIONS = ("whole", "PZ", "TZ")


def nnunet_entry(root) -> str:
    """The ``[[datasets]]`` entry of an nnU-Net raw folder named ``prostate``, sliced at 32 x 32."""
    return table("[[datasets]]", 'name = "prostate"', 'kind = "nnunet"', f'root = "{root}"', "size = 32")


def plan_text(root, steps: int = 20) -> str:
    return toml_text('name = "nnunet-tiny"\nseeds = [0]',
                     train(1, f"steps = {steps}", "batch_size = 8", "threads = 2"),
                     measure("batch_sizes = [1]", "iterations = 5", "warmup = 3", "threads = 2"),
                     nnunet_entry(root),
                     table("[[models]]", 'name = "unet"', 'label = "U-Net w4"', "base_width = 4"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw") / "Dataset902_Prostate"
    write_phantom("nnunet", root, cases=5, shape=(32, 32, 8), seed=4)
    return root


def test_a_plan_takes_the_folders_facts(folder, tmp_path):
    path = tmp_path / "plan.toml"
    path.write_text(plan_text(folder))
    plan = load_plan(path)
    spec = plan.datasets[0]
    dataset = get_dataset(spec.dataset)
    assert spec.dataset.startswith("nnunet-Dataset902_Prostate-")
    assert spec.size == 32 and spec.empty == "diagonal"
    assert dataset.regions == REGIONS and (dataset.in_channels, dataset.num_classes) == (2, 3)
    cache = {}
    assert check_model(ModelSpec(name="unet", kwargs={"base_width": 4}), plan.datasets, cache) is None
    (model,) = cache.values()  # built for the folder's two channels and three classes
    assert model.config["in_channels"] == 2 and model.config["num_classes"] == 3


def test_a_bad_dataset_json_stops_the_plan_one_line_each(folder, tmp_path):
    root = tmp_path / "Dataset903_Bad"
    write_phantom("nnunet", root, cases=3, shape=(16, 16, 8), seed=0)
    meta = json.loads((root / "dataset.json").read_text())
    meta["labels"]["background"] = 1
    del meta["file_ending"]
    (root / "dataset.json").write_text(json.dumps(meta))
    path = tmp_path / "plan.toml"
    path.write_text(plan_text(root))
    with pytest.raises(PlanError) as err:
        load_plan(path)
    lines = str(err.value).splitlines()
    assert lines[0] == "2 problem(s) in plan:"
    at = f"{path}: datasets[0] (prostate): {root / 'dataset.json'}"
    assert lines[1:] == [f"{at}: missing key 'file_ending'", f"{at}: labels: 'background' must be 0, got 1"]


def test_a_sweep_objective_names_a_region_of_the_folder(folder, tmp_path):
    study = toml_text('name = "nnunet-sweep"\nseed = 0\nn_trials = 2', train(), measure(),
                      nnunet_entry(folder),
                      table("[search]", 'family = "unet"', "base_width = [2, 4]"),
                      objectives().replace("dice:mean", "dice:whole"))
    path = tmp_path / "study.toml"
    path.write_text(study)
    assert load_study(path).objectives.names[0] == "dice:whole"
    path.write_text(study.replace("dice:whole", "dice:liver"))
    with pytest.raises(PlanError, match="liver"):
        load_study(path)


@pytest.mark.slow
def test_a_plan_on_an_nnunet_folder_runs_through_the_report(folder, tmp_path):
    path = tmp_path / "plan.toml"
    path.write_text(plan_text(folder))
    out = tmp_path / "run"
    assert main(["bench", str(path), "--out", str(out), "--no-progress"]) == 0
    tidy = pd.read_parquet(out / "results.parquet")
    cases = tidy["case"].unique()
    assert len(cases) >= 1 and all(c.startswith("prostate_") for c in cases)
    assert tuple(tidy["region"].unique()) == REGIONS and set(tidy["metric"]) == {"dice", "hd95"}
    assert len(tidy) == len(cases) * len(REGIONS) * 2 and set(tidy["dataset"]) == {"prostate"}
    assert tidy.loc[tidy["metric"] == "dice", "value"].between(0, 1).all()
    table_csv = pd.read_csv(out / "table.csv")
    assert len(table_csv) == 1 and {f"dice {r}" for r in REGIONS} <= set(table_csv.columns)
    assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"
    items = pd.read_csv(out / "items.csv")
    assert list(items["item"]) == ["U-Net w4|prostate|s0"] and (items["empty"] == "diagonal").all()
