"""Channel-pruned plan entries end to end: finetune and init modes, records, checkpoints."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lfubench import models
from lfubench.studies.pipeline import finetune_config, run_item
from lfubench.studies.plan import PlanError, load_plan
from lfubench.studies.run import Run

from ._plans import TINY_SECTIONS

PLAN = 'name = "pruned"' + TINY_SECTIONS.format(epochs=2) + """[[models]]
name = "lfunet"
base_width = 16
levels = [2, 4]
prune_ratio = 0.5
finetune_epochs = 1
[[models]]
name = "unet"
base_width = 8
prune_ratio = 0.5
prune_mode = "init"
prune_importance = "random"
"""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("pruned")
    (root / "plan.toml").write_text(PLAN)
    plan = load_plan(root / "plan.toml")
    return root, plan, [run_item(item, plan, root / "run", progress=False) for item in plan.items()]


def load_plan_text(text: str):
    folder = Path(tempfile.mkdtemp())
    (folder / "p.toml").write_text(text)
    return load_plan(folder / "p.toml")


def test_labels_name_ratio_importance_and_mode():
    plan_labels = [m.label for m in load_plan_text(PLAN).models]
    assert plan_labels == ["lfunet base_width=16 r=0.5 l1-finetune", "unet base_width=8 r=0.5 random-init"]


def test_finetune_mode_keeps_the_full_models_scores_and_the_pruned_ones(records):
    root, plan, (lfu, _) = records
    stages = {(r["stage"], r["level"]) for r in lfu.metrics}
    assert stages == {("before-pruning", 2), ("before-pruning", 4), ("final", 2), ("final", 4)}
    params = {(r["stage"], r["level"]): r["params"] for r in lfu.efficiency}
    for level in (2, 4):
        ratio = params["final", level] / params["before-pruning", level]
        assert 0.2 < ratio < 0.35  # about (1 - 0.5)^2
    assert lfu.pruning["mode"] == "finetune" and lfu.pruning["finetune_epochs"] == 1
    kept = params["final", 4] / params["before-pruning", 4]
    assert lfu.pruning["param_ratio"] == pytest.approx(1 - kept)
    assert "finetune" in lfu.train and lfu.train["finetune"]["epochs"] == 1
    assert lfu.checkpoint.endswith("finetune/best.pt")


def test_the_checkpoint_loads_through_model_json(records):
    root, plan, (lfu, unet) = records
    for record in (lfu, unet):
        ckpt = torch.load(record.checkpoint, weights_only=True)
        config = json.loads((Run(root / "run").item_dir(record.item) / "model.json").read_text())
        assert config == record.model_config
        net = models.create_model(**config)
        net.load_state_dict(ckpt, strict=True)
        final = [r for r in record.efficiency if r["stage"] == "final"][-1]
        assert sum(p.numel() for p in net.parameters()) == final["params"]


def test_init_mode_trains_the_pruned_widths_from_scratch(records):
    _, plan, (_, unet) = records
    assert {r["stage"] for r in unet.metrics} == {"final"}
    full = models.create_model("unet", base_width=8)
    widths = unet.model_config["widths"]
    assert sum(widths.values()) == pytest.approx(sum(full.widths.values()) / 2, rel=0.02)
    assert unet.pruning["mode"] == "init" and unet.pruning["importance"] == "random"
    assert unet.train["epochs"] == 2 and "finetune" not in unet.train


def test_overlays_hold_the_same_reference_slices_for_every_model(records):
    root, plan, (lfu, unet) = records
    a, b = (np.load(r.overlays_file()) for r in (lfu, unet))
    assert lfu.overlays_file() == root.resolve() / "run" / lfu.overlays  # relative to the run folder
    assert list(a["classes"]) == ["background", "liver", "tumor"]
    assert a["image"].shape == a["label"].shape == a["pred"].shape == (len(a["case"]), 32, 32)
    assert list(a["case"]) == list(b["case"]) and list(a["slice"]) == list(b["slice"])
    assert np.array_equal(a["label"], b["label"]) and a["label"].max() >= 1
    assert set(np.unique(a["pred"])) <= {0, 1, 2}


def test_finetune_budget_defaults_to_a_quarter_of_training():
    plan = load_plan_text(PLAN)
    spec = plan.models[0]
    spec = dataclasses.replace(spec, finetune_epochs=None)
    assert finetune_config(dataclasses.replace(plan.train, epochs=20), spec).epochs == 5
    assert finetune_config(dataclasses.replace(plan.train, epochs=2), spec).epochs == 1
    tuned = finetune_config(dataclasses.replace(plan.train, steps=400), spec)
    assert tuned.steps == 100


@pytest.mark.parametrize("entry,match", [
    ("prune_ratio = 0.95", r"prune_ratio must be <= 0.9, got 0.95"),
    ("prune_ratio = 0.5\nprune_importance = \"taylor\"",
     r"prune_importance 'taylor' is not one of l1, l2, bn, random"),
    ("prune_ratio = 0.5\nprune_mode = \"later\"", r"prune_mode 'later' is not one of finetune, init"),
    ("prune_ratio = 0.5\nprune_importance = \"bn\"\nnorm = false",
     r"importance 'bn' needs batch norm after every pruned convolution; layer 'encoder.x0_0.0.0' has none"),
])
def test_bad_pruning_settings_name_the_key(entry, match):
    text = PLAN.split("[[models]]")[0] + f'[[models]]\nname = "unet"\n{entry}\n'
    with pytest.raises(PlanError, match=match):
        load_plan_text(text)


def test_the_shipped_pruning_plan_compares_importance_and_mode():
    plan = load_plan(Path(__file__).resolve().parents[2] / "studies" / "plans" / "pruning.toml")
    pruned = [m for m in plan.models if m.pruned]
    assert len(plan.models) == 8 and len(pruned) == 6
    for family in ("lfunet", "unet"):
        modes = {(m.prune_importance, m.prune_mode) for m in pruned if m.name == family}
        assert modes == {("l1", "finetune"), ("random", "finetune"), ("l1", "init")}
        assert all(m.prune_ratio == 0.5 and m.kwargs["base_width"] == 16 for m in pruned if m.name == family)
