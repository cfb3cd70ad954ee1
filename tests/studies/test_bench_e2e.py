"""`lfubench bench` end to end on a tiny phantom plan: outputs, re-run, determinism, failures."""

from __future__ import annotations

import gzip
import time

import pandas as pd
import pytest

from lfubench.bench.data import write_phantom
from lfubench.bench.errors import LfubenchError
from lfubench.cli import main
from lfubench.studies.pipeline import run_item
from lfubench.studies.plan import load_plan
from lfubench.studies.run import worker_devices

from ._plans import TINY_SECTIONS

TINY = 'name = "tiny"' + TINY_SECTIONS.format(epochs=1) + """[[models]]
name = "lfunet"
label = "LFU-Net w8"
levels = [1, 4]
[[models]]
name = "unet"
label = "U-Net w4"
base_width = 4
"""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    plan = root / "tiny.toml"
    plan.write_text(TINY)
    out = root / "run"
    t0 = time.perf_counter()
    code = main(["bench", str(plan), "--out", str(out), "--no-progress"])
    return plan, out, code, time.perf_counter() - t0


def test_bench_writes_every_output(tiny_run):
    plan, out, code, _ = tiny_run
    assert code == 0
    for name in ["results.csv", "results.parquet", "efficiency.csv", "table.csv", "table.md", "table.tex",
                 "report.pdf", "pareto_lits_params.png", "pareto_lits_gmacs.png",
                 "pareto_lits_latency_ms.png"]:
        assert (out / name).stat().st_size > 0, name
    tidy = pd.read_parquet(out / "results.parquet")
    # 2 test cases... whatever the split gives: the same cases for every item and level
    cases = sorted(tidy["case"].unique())
    assert len(cases) >= 1
    levels = tidy.groupby("label")["level"].unique().to_dict()
    assert sorted(levels["LFU-Net w8"]) == [1, 4] and list(levels["U-Net w4"]) == [0]
    assert set(tidy["region"]) == {"liver", "tumor"} and set(tidy["metric"]) == {"dice", "hd95"}
    assert len(tidy) == 3 * len(cases) * 2 * 2  # (2 LFU-Net levels + U-Net) x cases x regions x metrics
    assert tidy["value"].between(0, 400).all()
    eff = pd.read_csv(out / "efficiency.csv")
    lfu = eff[eff["label"] == "LFU-Net w8"].set_index("level")
    assert lfu.loc[1, "params"] < lfu.loc[4, "params"] and lfu.loc[1, "gmacs"] < lfu.loc[4, "gmacs"]
    assert (eff["status"] == "ok").all() and (eff["latency_ms"] > 0).all()
    table = pd.read_csv(out / "table.csv")
    assert len(table) == 3 and "dice liver" in table and "params" in table
    assert (out / "report.pdf").read_bytes()[:5] == b"%PDF-"
    md = (out / "table.md").read_text()  # the rule this run used for LiTS, stated with the table
    assert "HD95 = the diagonal of the case's own volume in mm" in md and "373.13" not in md
    items = pd.read_csv(out / "items.csv")
    assert sorted(items["item"]) == ["LFU-Net w8|lits|s0", "U-Net w4|lits|s0"]
    assert (items["empty"] == "diagonal").all() and (items["train_seconds"] > 0).all()
    assert load_plan(out / "plan.toml").to_dict() == load_plan(plan).to_dict()  # the effective plan


def test_second_run_has_nothing_to_do(tiny_run, capsys):
    plan, out, _, cold = tiny_run
    before = pd.read_csv(out / "results.csv")
    t0 = time.perf_counter()
    assert main(["bench", str(plan), "--out", str(out), "--no-progress"]) == 0
    warm = time.perf_counter() - t0
    assert "2/2 items complete (0 run now, 0 failed now)" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), before)
    assert warm < cold
    # another effective plan in the same folder is refused before any work
    assert main(["bench", str(plan), "--out", str(out), "--no-progress", "--set", "train.epochs=2"]) == 2
    assert "holds a run of a different plan (differs in: train)" in capsys.readouterr().err


def test_same_seed_gives_identical_metrics(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.replace("levels = [1, 4]", "levels = [2]"))
    plan = load_plan(path)
    item = plan.items()[0]
    a = run_item(item, plan, tmp_path / "a", progress=False)
    b = run_item(item, plan, tmp_path / "b", progress=False)
    assert a.metrics == b.metrics
    assert a.train["history"][-1]["loss"] == b.train["history"][-1]["loss"]


def test_unreadable_dataset_fails_its_items_and_the_rest_complete(tmp_path, capsys, caplog):
    data = tmp_path / "lits_real"
    write_phantom("lits", data, cases=5, shape=(32, 32, 8), seed=1, gzip=True)
    victim = sorted(data.rglob("volume-2.nii.gz"))[0]
    victim.write_bytes(gzip.compress(b"\0" * 64)[:20])  # truncated gzip stream
    plan = TINY + f"""
[[datasets]]
name = "broken"
kind = "lits"
root = "{data}"
"""
    path = tmp_path / "plan.toml"
    path.write_text(plan)
    with caplog.at_level("INFO", logger="lfubench.cli.bench"):
        code = main(["bench", str(path), "--out", str(tmp_path / "run"), "--no-progress",
                     "--set", "train.epochs=1"])
    assert code == 2
    err = capsys.readouterr().err
    log = caplog.text  # what a job log shows: a line per item start and end, and a summary
    assert "item 1/4 LFU-Net w8|lits|s0: started (budget 1 epoch, batch 8)" in log
    assert "item 1/4 LFU-Net w8|lits|s0: done in " in log and "test Dice L4 liver " in log
    assert "item 3/4 LFU-Net w8|broken|s0: failed after " in log
    assert "plan: 2/4 items complete; this worker ran 2 and saw 2 fail" in log
    assert "failed: LFU-Net w8|broken|s0: DataError: case 2:" in err
    assert "Training Batch 2/volume-2.nii.gz: unreadable NIfTI header" in err
    assert "lfubench bench: error: 2 item(s) failed: LFU-Net w8|broken|s0, U-Net w4|broken|s0" in err
    tidy = pd.read_csv(tmp_path / "run" / "results.csv")
    assert set(tidy["dataset"]) == {"lits"}  # the phantom items completed
    assert len(pd.read_csv(tmp_path / "run" / "table.csv")) == 3


def test_killed_bench_worker_resumes_without_redoing_finished_items(tmp_path):
    import os
    import signal
    import sqlite3
    import subprocess
    import sys

    plan = tmp_path / "plan.toml"
    plan.write_text(TINY.replace('levels = [1, 4]', 'levels = [4]') + """
[[models]]
name = "unet"
label = "U-Net w4 second"
base_width = 4
""")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "lfubench", "bench", str(plan), "--out", str(out), "--no-progress",
           "--no-report", "--grace", "3"]
    worker = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    db = out / "study.db"

    def states():
        if not db.exists():
            return []
        with sqlite3.connect(db) as con:
            try:
                return [r[0] for r in con.execute("select state from trials order by number")]
            except sqlite3.OperationalError:
                return []

    deadline = time.time() + 300
    while time.time() < deadline and not (states().count("COMPLETE") >= 1 and "RUNNING" in states()):
        time.sleep(0.2)
    worker.send_signal(signal.SIGKILL)
    worker.communicate()
    first = states()
    assert first.count("COMPLETE") >= 1 and "RUNNING" in first, first
    with sqlite3.connect(db) as con:
        done_before = dict(con.execute(
            "select p.param_value, t.datetime_complete from trials t join trial_params p "
            "on p.trial_id = t.trial_id where t.state = 'COMPLETE'").fetchall())
    time.sleep(4)  # past the grace period: the killed worker's item is lost, not running
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "3/3 items complete" in rerun.stdout
    with sqlite3.connect(db) as con:
        rows = con.execute("select p.param_value, t.state, t.datetime_complete from trials t "
                           "join trial_params p on p.trial_id = t.trial_id").fetchall()
    complete = [(item, when) for item, state, when in rows if state == "COMPLETE"]
    assert sorted(item for item, _ in complete) == [0.0, 1.0, 2.0]  # each item complete exactly once
    assert all(dict(complete)[item] == when for item, when in done_before.items())  # finished rows unchanged
    assert [state for _, state, _ in rows].count("FAIL") == 1  # the killed item, recorded as lost


def test_two_local_workers_share_a_plan(tmp_path, capsys):
    """--workers 2 starts two processes on one storage: every item runs once, the parent reports."""
    import sqlite3

    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    out = tmp_path / "run"
    code = main(["bench", str(path), "--out", str(out), "--workers", "2", "--set", "train.threads=1",
                 "--set", "measure.threads=1"])
    assert code == 0
    assert "2/2 items complete (2 run now, 0 failed now)" in capsys.readouterr().out
    with sqlite3.connect(out / "study.db") as con:
        states = [r[0] for r in con.execute("select state from trials")]
    assert states == ["COMPLETE", "COMPLETE"]
    assert len(pd.read_csv(out / "items.csv")) == 2
    with pytest.raises(LfubenchError, match="--devices must look like cuda:0,cuda:1"):
        worker_devices("gpu0", 1)
    with pytest.raises(LfubenchError, match="does not match the 2 --devices"):
        worker_devices("cuda:0,cuda:1", 3)
    assert worker_devices("cuda:0,cuda:3", 1) == ["0", "3"] and worker_devices(None, 2) == [None, None]
