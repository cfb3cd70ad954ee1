"""`lfubench report` on small stored runs: run folders with a plan and a tiny Optuna SQLite study
whose trials hold item records like the pipeline's (no training), one of them failed."""

from __future__ import annotations

import pandas as pd
import pytest

from lfubench.cli import main

from .helpers import make_run, pdf

pypdf = pytest.importorskip("pypdf")

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
