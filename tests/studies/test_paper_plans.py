"""The paper-protocol plans (studies/plans/lits2017.toml, brats2018.toml) validate against data
in the real layouts at the real in-plane size, and one short item of each runs end to end."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from lfubench.bench.data import write_phantom
from lfubench.cli import main
from lfubench.studies.plan import load_plan

PLANS = Path(__file__).resolve().parents[2] / "studies" / "plans"
# real in-plane sizes (LiTS 512 x 512; BraTS 240 x 240 x 155), few LiTS slices to stay quick
CASES = {"lits": ("lits2017.toml", (512, 512, 12)), "brats": ("brats2018.toml", (240, 240, 155))}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("paper")
    out = {}
    for name, (_, shape) in CASES.items():
        out[name] = base / name
        write_phantom(name, out[name], cases=4, shape=shape, seed=3)
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_paper_plan_validates_and_one_short_item_runs(roots, tmp_path, name):
    plan_file = PLANS / CASES[name][0]
    with pytest.raises(Exception, match="root folder .* does not exist"):
        load_plan(plan_file, overrides=[f"datasets.{name}.root={tmp_path / 'nowhere'}"])
    plan = load_plan(plan_file, overrides=[f"datasets.{name}.root={roots[name]}"])
    assert len(plan.items()) == 8 * 3 and plan.measure.device == "cuda"
    assert plan.datasets[0].size == {"lits": 256, "brats": 192}[name]
    assert {m.name for m in plan.models} >= {"lfunet", "lfunet_deng2023", "unet_zhou2018", "unetpp_zhou2018",
                                             "unet3p_huang2020"}
    out = tmp_path / "run"
    short = [f"datasets.{name}.root={roots[name]}", "seeds=[0]", "train.steps=2", "train.batch_size=4",
             "train.precision=fp32",
             "measure.device=cpu", "measure.batch_sizes=[1]", 'measure.precision=["fp32"]',
             "measure.iterations=5", "measure.warmup=3", "models.LFU-Net w8.levels=[4]"]
    code = main(["bench", str(plan_file), "--out", str(out), "--no-progress", "--no-report",
                 "--max-items", "1", *(f"--set={item}" for item in short)])
    assert code == 0
    with sqlite3.connect(out / "study.db") as con:
        states = [r[0] for r in con.execute("select state from trials")]
    assert states.count("COMPLETE") == 1, states
