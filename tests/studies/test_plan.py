"""Plan validation: every problem reported at once, naming the file and the key."""

from __future__ import annotations

import pytest

from studies.plan import PlanError, load_plan

GOOD = """
name = "tiny"
seeds = [0, 1]
[train]
epochs = 2
batch_size = 8
[measure]
device = "cpu"
batch_sizes = [1]
precision = ["fp32"]
[[datasets]]
name = "lits"
kind = "phantom-lits"
cases = 4
[[datasets]]
name = "brats"
kind = "phantom-brats"
[[models]]
name = "lfunet"
label = "LFU-Net w8"
levels = [1, 2, 3, 4]
[[models]]
name = "unet"
base_width = 8
"""


def _write(tmp_path, text):
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def test_good_plan_expands_to_items(tmp_path):
    plan = load_plan(_write(tmp_path, GOOD))
    assert plan.name == "tiny"
    ids = [i.id for i in plan.items()]
    assert len(ids) == 2 * 2 * 2 and len(set(ids)) == 8
    assert ids[0] == "LFU-Net w8|lits|s0"
    assert "unet base_width=8|brats|s1" in ids
    assert plan.models[0].levels == [1, 2, 3, 4]
    assert plan.models[1].kwargs == {"base_width": 8}


def test_every_problem_is_reported_at_once(tmp_path):
    bad = GOOD.replace("epochs = 2", "epochs = 2\nepoch = 3").replace('name = "unet"', 'name = "unett"')
    bad = bad.replace('kind = "phantom-brats"', 'kind = "brats"\nroot = "missing"')
    bad = bad.replace('precision = ["fp32"]', 'precision = ["fp8"]')
    bad += '[[models]]\nname = "lfunet"\nlabel = "bad"\nbase_width = 12\n'
    bad += '[[models]]\nname = "unet"\nlabel = "u2"\nlevels = [2]\n'
    with pytest.raises(PlanError) as info:
        load_plan(_write(tmp_path, bad))
    lines = str(info.value).splitlines()
    assert lines[0] == "6 problem(s) in plan:"
    text = "\n".join(lines)
    assert "[train]: unknown key 'epoch' (did you mean 'epochs'?)" in text
    assert "models[1]: model 'unett' is not registered (close matches: unet" in text
    assert f"datasets[1]: root folder {tmp_path / 'missing'} does not exist" in text
    assert "[measure].precision: 'fp8' is not one of fp32, fp16, bf16" in text
    assert "models[2]: lfunet: base_width 12 is not divisible by groups 8" in text
    assert "models[3]: 'levels' needs a deep-supervision model with pruning levels" in text
    assert all(line.startswith(str(tmp_path)) for line in lines[1:])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(PlanError, match="plan file not found"):
        load_plan(tmp_path / "nope.toml")
    with pytest.raises(PlanError, match="not valid TOML"):
        load_plan(_write(tmp_path, "name = \n"))
    with pytest.raises(PlanError, match="no \\[\\[models\\]\\]"):
        load_plan(_write(tmp_path, '[[datasets]]\nname="x"\nkind="phantom-lits"\n'))
