"""``lfubench sweep show``: the front table, hypervolume, importances and figures of a stored
sweep (trials from the fake item of tests/studies/helpers.py), and the command's errors."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest

from lfubench.cli import main
from lfubench.studies.engine import EngineConfig
from lfubench.studies.space import families
from tests.studies.helpers import fake_record, write_study


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    from lfubench.studies.sweep import Sweep
    from lfubench.studies.sweepfile import load_study

    root = tmp_path_factory.mktemp("sweep")
    path = write_study(root, n_trials=8, constraints='["params <= 150_000"]')
    storage = f"sqlite:///{root}/s.db"
    sweep = Sweep(load_study(path), storage, EngineConfig(heartbeat_s=0.2, grace_s=30))

    def evaluate(spec, trial):
        if trial.user_attrs.get("slot") == 5:
            raise MemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return fake_record(spec)

    assert sweep.run(evaluate) == {"complete": 7, "failed": 1, "pruned": 0}
    return root, path, storage, sweep


def test_show_prints_the_front_and_writes_tables_and_figures(stored, capsys):
    root, path, storage, sweep = stored
    out = root / "run"
    assert main(["sweep", "show", str(path), "--storage", storage, "--out", str(out)]) == 0
    printed = capsys.readouterr()
    lines = printed.out.splitlines()
    front = {t.number for t in sweep.study.best_trials}
    assert lines[0].startswith(f"Pareto front of sweep fake: {len(front)} of 7 complete trials (1 failed, "
                               "0 pruned); constraints params <= 150000")
    header = lines[2]
    assert [c.strip() for c in header.strip("|").split("|")][:5] == ["number", "family", "label", "dice:mean",
                                                                       "params"]
    table = [r for r in lines[4:] if r.startswith("|")]
    assert {int(r.strip("|").split("|")[0]) for r in table} == front
    assert any(line.startswith("hypervolume by trial count: ") for line in lines)
    assert any(line.startswith("importance for dice:mean (fANOVA): ") for line in lines)
    assert "failed: trial 5: MemoryError: CUDA out of memory. Tried to allocate 2.00 GiB" in printed.err
    for name in ("trials.csv", "front.csv", "front.md", "hypervolume.csv", "importances.csv",
                 "sweep_front.png", "sweep_front.pdf", "sweep_history.png", "sweep_history.pdf",
                 "sweep_importance.png", "sweep_importance.pdf"):
        assert (out / "sweep" / name).stat().st_size > 0, name
    trials = pd.read_csv(out / "sweep" / "trials.csv")
    assert len(trials) == 8 and (trials["state"] == "complete").sum() == 7
    assert set(trials.loc[trials["pareto"], "number"]) == front
    hv = pd.read_csv(out / "sweep" / "hypervolume.csv")
    assert list(hv["trials"]) == list(range(1, 9))
    assert hv["hypervolume"].is_monotonic_increasing and hv["hypervolume"].iloc[-1] > 0
    imp = pd.read_csv(out / "sweep" / "importances.csv")
    for _, grp in imp.groupby("objective"):
        assert grp["importance"].sum() == pytest.approx(1.0)
    assert set(imp["objective"]) == {"dice:mean", "params"} and "family" in set(imp["parameter"])


def test_show_as_csv_is_the_front_alone(stored, capsys):
    root, path, storage, sweep = stored
    assert main(["sweep", "show", str(path), "--storage", storage, "--out", str(root / "run2"),
                 "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {int(r["number"]) for r in rows} == {t.number for t in sweep.study.best_trials}
    scores = [float(r["dice:mean"]) for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_hypervolume_history_by_hand():
    from lfubench.studies.sweep import hypervolume_history
    from lfubench.studies.sweepfile import SweepStudy

    class Obj:
        names, directions = ["dice:mean", "params"], ["maximize", "minimize"]

    class Fake(SweepStudy):
        def __init__(self):
            self.objectives = Obj()

    trials = pd.DataFrame({"number": [0, 1, 2, 3], "state": ["complete", "fail", "complete", "complete"],
                           "dice:mean": [0.5, float("nan"), 0.7, 0.9],
                           "params": [10.0, float("nan"), 20.0, 5.0],
                           "feasible": [True, False, True, False]})
    hv = hypervolume_history(trials, Fake())
    # losses (-0.5, 10), (-0.7, 20); reference (-0.48, 21): boxes 0.02 x 11 and 0.22 x 1, overlap 0.02 x 1
    assert list(hv["trials"]) == [1, 2, 3, 4]
    assert hv["hypervolume"].tolist() == pytest.approx([0.22, 0.22, 0.42, 0.42])
    assert hv["reference"].iloc[0] == "dice:mean=0.48, params=21"


def test_show_without_a_storage_and_bad_targets_are_one_line(tmp_path, capsys):
    path = write_study(tmp_path, n_trials=2)
    assert main(["sweep", "show", str(path), "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"lfubench sweep: error: no sweep storage at {tmp_path / 'none' / 'study.db'}; run "
                   f"'lfubench sweep {path}' first, or give --storage / --out"]
    assert main(["sweep", "show", "smoke", "--out", str(tmp_path / "none")]) == 2  # a shipped study by name
    assert capsys.readouterr().err.strip().endswith(
        "run 'lfubench sweep smoke' first, or give --storage / --out")
    assert main(["sweep", "show", str(path), "--storage", f"sqlite:///{tmp_path}/empty.db"]) == 2
    assert capsys.readouterr().err.strip() == ("lfubench sweep: error: no study 'fake' in the storage (it "
                                               "holds: none); run the sweep first, or give --storage")
    assert main(["sweep", str(path), str(path)]) == 2
    assert "one study file expected" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "missing.toml")]) == 2
    missing = tmp_path / "missing.toml"
    assert capsys.readouterr().err.strip() == (f"lfubench sweep: error: {missing}: study file not found "
                                               "(not a file, nor a shipped study: brats, lits, smoke)")


def test_set_a_per_family_search_setting_on_the_command_line(tmp_path, capsys):
    path = write_study(tmp_path, n_trials=2)
    out = str(tmp_path / "run")
    assert main(["sweep", str(path), "--out", out, "--set", "search.unet.base_widht=3"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "lfubench sweep: error: 1 problem(s) in study:",
        f"  {path}: [search.unet]: unknown key 'base_widht' (did you mean 'base_width'?)"]
    assert main(["sweep", str(path), "--out", out, "--set", "search.unte.base_width=3"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "lfubench sweep: error: 1 problem(s) in --set:",
        "  --set 'search.unte.base_width=3': 'unte' is not a model family (did you mean 'unet'?); families: "
        + ", ".join(families())]
    # a valid one passes validation (and show then finds no storage)
    assert main(["sweep", "show", str(path), "--out", out, "--set", "search.unet.base_width=[2,3]"]) == 2
    assert "no sweep storage at" in capsys.readouterr().err
