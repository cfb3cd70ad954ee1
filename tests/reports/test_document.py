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
from lfubench.reports.inputs import DatasetInfo, ReportInputs, RunInfo
from lfubench.reports.overlays import pick_slices
from lfubench.reports.schema import ReportInputError
from lfubench.reports.text import format_number

from .fake import EMPTY, fake_run

pypdf = pytest.importorskip("pypdf")


def pdf_text(path) -> str:
    return " ".join(" ".join(page.extract_text() or "" for page in pypdf.PdfReader(path).pages).split())


RUN = RunInfo(
    source="runs/fake",
    name="fake",
    plan_text='name = "fake"\nseeds = [0]\n',
    datasets=(DatasetInfo("lits", "lits", False, {"kind": "lits", "cases": 8}),
              DatasetInfo("brats", "phantom-brats", True, {"kind": "phantom-brats"})),
    train={"epochs": 2, "batch_size": 8},
    widths={"U-Net w8": 8, "LFU-Net_w8 & #1": 8, "LFU-Net w4": 4},
    first_model="U-Net w8",
)
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
    inputs = ReportInputs(
        results,
        efficiency,
        items,
        "lfubench: fake",
        failures=FAILURES,
        environments=ENV,
        runs=[RUN],
        splits={"lits": {"train": ["a", "b"], "val": ["c"], "test": ["case00", "case01"]}},
        versions={"numpy": "9.9.9"},
    )
    written = build_outputs(inputs, out)
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


def test_unreadable_overlays_leave_the_figure_without_them(tmp_path, caplog):
    """A missing and a malformed overlays file: the report is written, its overlay figure shows
    the other models, and the log and the report's text name the items left out."""
    results, efficiency, items = fake_run(tmp_path, cases=3)
    bad = tmp_path / "bad.npz"
    np.savez(bad, case=np.array(["x"]))
    items.loc[0, "overlays"] = str(bad)
    items.loc[1, "overlays"] = str(tmp_path / "elsewhere" / "overlays.npz")
    out = tmp_path / "out"
    written = build_outputs(ReportInputs(results, efficiency, items, "t"), out)
    assert (out / "overlays_lits.pdf") in written["figures"]
    text = pdf_text(out / "report.pdf")
    assert "the overlay figure lacks 2 items whose overlays file could not be read" in text
    assert "U-Net w8|lits|s0" in text
    assert "bad.npz: overlays file lacks slice, image, label, pred, classes" in text
    assert "LFU-Net_w8 & #1|lits|s0" in text and "elsewhere/overlays.npz: no such file" in text
    assert "lits: U-Net w8|lits|s0 left out" in caplog.text


def test_dollar_signs_in_labels_datasets_and_cases_render_literally(tmp_path):
    """Labels, a dataset name and case ids with one or two '$' (and text that is not valid
    mathtext between them) go through every figure and the PDF as they are."""
    import matplotlib

    from lfubench.reports.overlays import load_overlays, write_overlay_figure
    from lfubench.reports.pareto import pareto_figure

    models = [
        ("unet", "U-$Net w8$ & #1$", [0], 490_000, 8),
        ("lfunet", "LFU-Net $w8 100%$", [1, 2, 4], 48_000, 8),
        ("unetpp", "UNet++ $5", [4], 230_000, 8),
    ]
    results, efficiency, items = fake_run(tmp_path, cases=4, models=models)
    for df in (results, efficiency, items):
        df["dataset"] = "lits $a$ & $b_c_d$"
    results["case"] = "$" + results["case"] + "_x_y$"
    written = build_outputs(ReportInputs(results, efficiency, items, "t"), tmp_path / "out")
    assert len(written["figures"]) == 2 * 7  # pareto x4 (params, GMACs, latency, memory), levels, cases,
    # overlays; PDF and PNG
    text = pdf_text(tmp_path / "out" / "report.pdf")
    assert "U-$Net w8$ & #1$" in text and "lits $a$ & $b_c_d$" in text and "UNet++ $5" in text
    tex = (tmp_path / "out" / "table.tex").read_text()
    assert r"U-\$Net w8\$ \& \#1\$" in tex
    pts = pd.DataFrame({"label": ["a$b", "c"], "tag": ["a$b$c", "$x_1_2$"], "family": ["f$1$", "g"],
                        "dataset": ["d"] * 2, "params": [1, 2], "dice": [0.5, 0.6]})
    fig = pareto_figure(pts, "params", "dice", "d$_a_b$")
    texts = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
    shown = [t for t in texts if "$" in t and "mathdefault" not in t]  # not the log axis' own ticks
    assert len(shown) >= 4 and not any(matplotlib.cbook.is_math_text(t) for t in shown)  # never a formula
    data = load_overlays(items["overlays"].iloc[0])
    assert write_overlay_figure([("$a$", data), ("$b_1_2$", data)], tmp_path / "ov", "$t_1_2$") is not None
def test_unknown_reference_is_refused(tmp_path):
    results, efficiency, items = fake_run(None, cases=3, overlays=False)
    with pytest.raises(ReportInputError, match="reference 'nope' is not a model of the run"):
        ReportInputs(results, efficiency, items, "t", reference="nope")


def test_a_table_lacking_a_column_is_one_clear_error():
    results, efficiency, items = fake_run(None, cases=3, overlays=False)
    with pytest.raises(ReportInputError, match="the efficiency table lacks the column.s. gmacs"):
        ReportInputs(results, efficiency.drop(columns=["gmacs"]), items)


def test_reports_import_neither_studies_nor_optuna():
    import subprocess
    import sys

    code = ("import sys, lfubench.reports.build, lfubench.reports.sections; "
            "print(sorted(m for m in sys.modules if m.startswith(('optuna', 'lfubench.studies'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
