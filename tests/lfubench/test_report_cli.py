"""`lfubench report` on small stored runs: run folders with a plan and a tiny Optuna SQLite study
whose trials hold item records like the pipeline's (no training), one of them failed."""

from __future__ import annotations

import optuna
import pandas as pd
import pytest

from lfubench.cli import main
from tests.reports.fake import CONVENTIONS, EMPTY, fake_run

pypdf = pytest.importorskip("pypdf")

PLAN = """
name = "{name}"
seeds = [{seed}]
[train]
epochs = 1
[measure]
device = "cpu"
[[datasets]]
name = "lits"
kind = "phantom-lits"
cases = 8
[[models]]
name = "unet"
label = "U-Net w8"
base_width = 8
[[models]]
name = "lfunet"
label = "LFU-Net w4"
base_width = 4
groups = 4
levels = [4]
[[models]]
name = "unetpp"
label = "UNet++ w8"
base_width = 8
levels = [4]
"""

MODELS = [("unet", "U-Net w8", [0], 490_000, 8), ("lfunet", "LFU-Net w4", [4], 13_000, 4)]


def _record(results, efficiency, items, item, run_dir=None) -> dict:
    it = items[items["item"] == item].iloc[0]
    return {"run_dir": run_dir} | {
        "metrics": results[results["item"] == item].to_dict("records"),
        "efficiency": efficiency[efficiency["item"] == item].to_dict("records"),
        "train": {"best_val_dice": 0.5, "best_epoch": 1, "epochs": 1, "steps": 4, "seconds": 3.0},
        "env": {
            "device_type": "cpu",
            "device_name": "Fake CPU",
            "torch": "2.13.0",
            "python": "3.11",
            "git_commit": "feedbeef",
            "git_dirty": False,
        },
        "empty": "diagonal",
        "conventions": {**CONVENTIONS, "conv_empty": EMPTY["lits"]},
        "splits": {"train": ["case02"], "val": ["case03"], "test": sorted(set(results["case"]))},
        "overlays": f"items/{it['model']}/overlays.npz",
    }


def make_run(root, name: str, seed: int, run_dir: bool = False):
    """A run folder: plan.toml and study.db with two COMPLETE items and one FAIL (UNet++); with
    ``run_dir``, the records name the folder they ran in (older ones do not)."""
    root.mkdir(parents=True)
    (root / "plan.toml").write_text(PLAN.format(name=name, seed=seed))
    results, efficiency, items = fake_run(root, seeds=(seed,), cases=6, models=MODELS, rng_seed=seed)
    for k, model in enumerate(("unet", "lfunet")):  # overlays where the records say they are
        (root / "items" / model).mkdir(parents=True)
        (root / "items" / f"{k}-lits-{seed}" / "overlays.npz").rename(root / "items" / model / "overlays.npz")
    study = optuna.create_study(
        storage=f"sqlite:///{root / 'study.db'}", study_name=name, direction="maximize"
    )
    dist = {
        "item": optuna.distributions.CategoricalDistribution(
            [f"{m[1]}|lits|s{seed}" for m in MODELS] + [f"UNet++ w8|lits|s{seed}"]
        )
    }
    for item in items["item"]:
        where = str(root.resolve()) if run_dir else None
        attrs = {"item": item, **_record(results, efficiency, items, item, where), "item_seconds": 5.0}
        study.add_trial(
            optuna.trial.create_trial(params={"item": item}, distributions=dist, value=0.5, user_attrs=attrs)
        )
    failed = f"UNet++ w8|lits|s{seed}"
    study.add_trial(
        optuna.trial.create_trial(
            params={"item": failed},
            distributions=dist,
            state=optuna.trial.TrialState.FAIL,
            user_attrs={"item": failed, "fail_reason": "ValueError: diverged at epoch 1"},
        )
    )
    return results


def test_report_merges_two_run_folders_and_lists_failures(tmp_path, capsys):
    a = make_run(tmp_path / "a", "runa", 0)
    b = make_run(tmp_path / "b", "runb", 1)
    out = tmp_path / "paper" / "report.pdf"
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(out)]) == 0
    assert "report: " in capsys.readouterr().out
    merged = pd.read_csv(tmp_path / "paper" / "results.csv")
    assert sorted(merged["seed"].unique()) == [0, 1] and len(merged) == len(a) + len(b)
    table = pd.read_csv(tmp_path / "paper" / "table.csv")
    assert list(table["seeds"]) == [2, 2]  # each model averaged over the two runs' seeds
    expected = pd.concat([a, b]).query("metric == 'dice' and region == 'liver' and label == 'LFU-Net w4'")
    got = table.set_index("label").loc["LFU-Net w4", "dice liver"]
    assert got == pytest.approx(expected.groupby("case")["value"].mean().mean())
    text = " ".join(" ".join(p.extract_text() for p in pypdf.PdfReader(out).pages).split())
    assert "UNet++ w8|lits|s0" in text and "UNet++ w8|lits|s1" in text
    assert "ValueError: diverged at epoch 1" in text
    assert "U-Net w8 (ref.)" in text  # the reference: the plan's first model
    assert "Fake CPU" in text and "feedbeef" in text
    assert (tmp_path / "paper" / "overlays_lits.png").is_file()


def test_report_of_one_folder_defaults_into_it_and_takes_a_reference(tmp_path):
    make_run(tmp_path / "a", "runa", 0)
    assert main(["report", str(tmp_path / "a"), "--reference", "LFU-Net w4", "--no-pdf"]) == 0
    table = pd.read_csv(tmp_path / "a" / "table.csv").set_index("label")
    assert bool(table.loc["LFU-Net w4", "reference"]) and not bool(table.loc["U-Net w8", "reference"])
    assert not (tmp_path / "a" / "report.pdf").exists()


def test_report_from_a_storage(tmp_path):
    make_run(tmp_path / "a", "runa", 0)
    out = tmp_path / "s.pdf"
    assert (
        main(
            [
                "report",
                "--storage",
                f"sqlite:///{tmp_path / 'a' / 'study.db'}",
                "--study",
                "runa",
                "--plan",
                str(tmp_path / "a" / "plan.toml"),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert out.read_bytes()[:5] == b"%PDF-"


def test_report_from_a_storage_finds_overlays_in_each_items_run_folder(tmp_path, monkeypatch):
    """From another folder, without --plan: the overlays are found in the run folder each
    record names."""
    make_run(tmp_path / "a", "runa", 0, run_dir=True)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    out = tmp_path / "paper" / "s.pdf"
    storage = f"sqlite:///{tmp_path / 'a' / 'study.db'}"
    assert main(["report", "--storage", storage, "--study", "runa", "-o", str(out)]) == 0
    assert (tmp_path / "paper" / "overlays_lits.png").is_file()
    assert "overlay figure lacks" not in pdf(out)


def test_overlays_out_of_reach_leave_the_report_without_that_figure(tmp_path, monkeypatch, caplog):
    """Records without their run folder, read from elsewhere: the report is written without the
    overlay figure and names the items it lacks."""
    make_run(tmp_path / "a", "runa", 0)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    out = tmp_path / "s.pdf"
    storage = f"sqlite:///{tmp_path / 'a' / 'study.db'}"
    assert main(["report", "--storage", storage, "--study", "runa", "-o", str(out)]) == 0
    assert not (tmp_path / "overlays_lits.pdf").exists()
    text = pdf(out)
    assert "the overlay figure lacks 2 items whose overlays file could not be read" in text
    assert "U-Net w8|lits|s0 (" in text and "LFU-Net w4|lits|s0 (" in text
    missing = tmp_path / "elsewhere" / "items" / "unet" / "overlays.npz"
    assert f"U-Net w8|lits|s0 left out ({missing}: no such file)" in caplog.text
    # the run folder named on the command line is where such records' overlays are
    assert main(["report", str(tmp_path / "a"), "-o", str(tmp_path / "b" / "r.pdf")]) == 0
    assert (tmp_path / "b" / "overlays_lits.pdf").is_file()


def pdf(path) -> str:
    return " ".join(" ".join(p.extract_text() for p in pypdf.PdfReader(path).pages).split())


@pytest.mark.parametrize(
    "args, message",
    [
        (["{tmp}/nowhere"], "nowhere: no such run folder"),
        (["{tmp}/a", "{tmp}/a", "-o", "{tmp}/r.pdf"], "is in both"),
        (["{tmp}/a", "-o", "{tmp}/r.png"], "the report is a PDF"),
        (["{tmp}/a", "{tmp}/a"], "-o/--output is required"),
        (
            ["--storage", "sqlite:///{tmp}/a/study.db", "--study", "nope", "-o", "{tmp}/r.pdf"],
            "has no study 'nope'; it has: runa",
        ),
        (["{tmp}/a", "--reference", "Nobody", "--no-pdf"], "reference 'Nobody' is not a model of the run"),
        ([], "name run folders, or --storage URL --study NAME"),
    ],
)
def test_report_errors_are_one_line(tmp_path, capsys, args, message):
    make_run(tmp_path / "a", "runa", 0)
    assert main(["report", *(a.format(tmp=tmp_path) for a in args)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
