"""The paper-style report of a small fake run: it renders, its text holds the tables' numbers,
the conventions and the failures, its figures exist as PDF and PNG, and data strings are
escaped."""

from __future__ import annotations

import string

import numpy as np
import pandas as pd
import pytest

from lfubench.reports.build import build_outputs
from lfubench.reports.document import Doc, compile_pdf, escape
from lfubench.reports.overlays import pick_slices
from lfubench.reports.schema import ReportInputError
from lfubench.reports.text import format_number

from .fake import EMPTY, fake_run

pypdf = pytest.importorskip("pypdf")


def pdf_text(path) -> str:
    return " ".join(" ".join(page.extract_text() or "" for page in pypdf.PdfReader(path).pages).split())


PLAN = {
    "name": "fake",
    "seeds": [0],
    "train": {"epochs": 2, "batch_size": 8},
    "datasets": [{"name": "lits", "kind": "lits", "cases": 8}, {"name": "brats", "kind": "phantom-brats"}],
    "models": [
        {"label": "U-Net w8", "base_width": 8},
        {"label": "LFU-Net_w8 & #1", "base_width": 8},
        {"label": "LFU-Net w4", "base_width": 4},
    ],
}
FAILURES = pd.DataFrame(
    {
        "item": ["UNet 3+ w8|lits|s0"],
        "state": ["failed"],
        "attempts": [2],
        "reason": ["RuntimeError: out of memory #5 [x]"],
    }
)
ENV = pd.DataFrame(
    {
        "item": ["U-Net w8|lits|s0"],
        "device_type": ["cpu"],
        "device_name": ["Test CPU 9000"],
        "device_memory_mb": [None],  # a field that does not apply: still shown
        "torch": ["2.13.0"],
        "python": ["3.11.9"],
        "git_commit": ["abc123def"],
        "git_dirty": [False],
    }
)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    results, efficiency, items = fake_run(out, datasets=("lits", "brats"), cases=6)
    written = build_outputs(
        out,
        results,
        efficiency,
        items,
        "lfubench: fake",
        failures=FAILURES,
        environments=ENV,
        runs=[{"source": "runs/fake", "plan": PLAN, "plan_text": 'name = "fake"\nseeds = [0]\n'}],
        splits={"lits": {"train": ["a", "b"], "val": ["c"], "test": ["case00", "case01"]}},
        versions={"numpy": "9.9.9"},
    )
    return out, written, pdf_text(out / "report.pdf")


def test_report_text_holds_the_table_values(report):
    out, _, text = report
    table = pd.read_csv(out / "table.csv")
    for _, r in table.iterrows():
        for column in ("dice liver", "hd95 WT", "dice ET"):
            if column in r and pd.notna(r[column]):
                assert format_number(float(r[column])) in text, (r["label"], column)
    assert "LFU-Net_w8 & #1" in text  # a data string with Typst markup characters, shown as it is


def test_report_states_conventions_setup_and_reproducibility(report):
    _, _, text = report
    assert EMPTY["lits"][1:] in text and EMPTY["brats"][1:] in text
    assert "GMACs from fvcore, 1 multiply-add = 1 MAC" in text
    assert "Test CPU 9000" in text and "abc123def" in text and "numpy 9.9.9" in text
    assert "test 2 cases" in text and "case00, case01" in text
    assert 'name = "fake"' in text  # the effective plan in the appendix


def test_reported_figures_only_for_real_data(report):
    _, _, text = report
    assert "0.9699" in text and "reported" in text  # lits is kind "lits" here
    assert "0.9363" not in text  # brats ran on phantoms: no reported figures beside them


def test_failed_items_are_listed_with_reasons(report):
    _, _, text = report
    assert "UNet 3+ w8|lits|s0" in text and "RuntimeError: out of memory #5 [x]" in text
    assert "1 item did not complete" in text


def test_summary_agrees_with_the_table(report):
    out, _, text = report
    table = pd.read_csv(out / "table.csv")
    lits = table[table["dataset"] == "lits"]
    best = lits.loc[lits[["dice liver", "dice tumor"]].mean(axis=1).idxmax()]
    assert (
        f"is {format_number(float(lits[['dice liver', 'dice tumor']].mean(axis=1).max()))} ({best['label']}"
        in text
    )


def test_figures_exist_as_pdf_and_png(report):
    out, written, _ = report
    for stem in (
        "pareto_lits_params",
        "pareto_lits_gmacs",
        "pareto_brats_latency_ms",
        "levels_lits",
        "widths_lits",
        "cases_brats",
        "overlays_lits",
        "overlays_brats",
    ):
        assert (out / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-", stem
        assert (out / f"{stem}.png").stat().st_size > 5_000, stem
    assert (out / "report.typ").is_file() and set(written) == {"results", "tables", "figures", "report"}


def test_overlays_pick_the_largest_and_a_typical_disagreement():
    ref = np.zeros((3, 4, 4), np.uint8)
    a, b = ref.copy(), ref.copy()
    b[2, :, :2] = 1  # slice 2: 8 pixels differ
    b[0, 0, 0] = 2  # slice 0: 1 pixel
    assert pick_slices([a, b, ref]) == {"largest disagreement": 2, "typical": 0}


def test_escape_shows_every_punctuation_character(tmp_path):
    nasty = string.punctuation + " \\u{41} // not a comment /* nor this */ = heading - list"
    doc = Doc()
    doc.para(nasty)
    compile_pdf(doc.source("t", "s"), tmp_path / "t.pdf", tmp_path)
    assert nasty.replace(" ", "") in pdf_text(tmp_path / "t.pdf").replace(" ", "")
    assert escape("a*b") == "a\\*b"


def test_bad_overlays_file_is_one_clear_error(tmp_path):
    results, efficiency, items = fake_run(tmp_path, cases=3)
    bad = tmp_path / "bad.npz"
    np.savez(bad, case=np.array(["x"]))
    items.loc[0, "overlays"] = str(bad)
    with pytest.raises(
        ReportInputError, match="bad.npz: overlays file lacks slice, image, label, pred, classes"
    ):
        build_outputs(tmp_path / "out", results, efficiency, items, "t", pdf=False)


def test_unknown_reference_is_refused(tmp_path):
    results, efficiency, items = fake_run(None, cases=3, overlays=False)
    with pytest.raises(ReportInputError, match="reference 'nope' is not a model of the run"):
        build_outputs(tmp_path, results, efficiency, items, "t", pdf=False, reference="nope")
