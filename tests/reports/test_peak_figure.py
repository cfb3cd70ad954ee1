"""Each model's own memory in the tables, Pareto plots against a chosen runtime's latency, and the
share-of-peak figure of the deployment section (reports.pareto, reports.figures, reports.build)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest

from lfubench.bench import conventions
from lfubench.reports.aggregate import aggregate, model_rows, series
from lfubench.reports.captions import peak_caption
from lfubench.reports.figures import peak_frame, write_peak_figures
from lfubench.reports.pareto import (
    cost_label,
    measured_runtimes,
    pareto_figure,
    pareto_runtime,
    runtime_latency,
)
from lfubench.reports.record import per_model_peak
from lfubench.reports.schema import EFFICIENCY_COLUMNS, RESULT_COLUMNS, ReportInputError, frame, row

#: (label, GMACs per image, eager ms, onnxruntime ms, onnxruntime int8 ms) per model; seed 1 is 1 ms slower
MODELS = [("LFU-Net w8", 0.2, 200.0, 100.0, 280.0), ("U-Net w32", 8.0, 300.0, 250.0, 75.0)]
LATENCY = conventions.latency("cpu", 1, "fp32", "3x256x256", 1, True)


def _efficiency(runtimes=("torch", "onnxruntime")) -> pd.DataFrame:
    rows = []
    for label, gmacs, eager, ort, ort8 in MODELS:
        for seed in (0, 1):
            key = dict(item=f"{label}|lits|s{seed}", model=label.split()[0].lower(), label=label,
                       dataset="lits", seed=seed, level=0, stage="final", params=1000, gmacs=gmacs,
                       input="3x256x256",
                       device="cpu", batch=1, precision="fp32", p90_ms=None, precision_used="fp32",
                       calibration=None, max_abs_diff=0.0, argmax_agreement=1.0, model_file_mb=None,
                       prepare_s=None, peak_rss_mb=790.0, arithmetic_intensity=gmacs * 10,
                       joules_per_image=None, error="")
            ms = {("torch", "none"): eager, ("onnxruntime", "none"): ort, ("onnxruntime", "int8"): ort8}
            for (runtime, q), base in ms.items():
                if runtime not in runtimes:
                    continue
                latency = base + seed
                rows.append(row(EFFICIENCY_COLUMNS, **key, runtime=runtime, quantize=q, latency_ms=latency,
                                status="ok", peak_mb=None if q == "int8" else 4 * gmacs,
                                model_peak_mb=None if q == "int8" else 4 * gmacs,
                                pct_of_peak=100 * gmacs / (latency / 1e3) / 50.0))  # a 50 GMAC/s peak
            rows.append(row(EFFICIENCY_COLUMNS, **key, runtime="torch", quantize="int8", latency_ms=None,
                            status="unsupported", peak_mb=None, model_peak_mb=None, pct_of_peak=None))
    return frame(rows, EFFICIENCY_COLUMNS)


def _results() -> pd.DataFrame:
    rows = [row(RESULT_COLUMNS, item=f"{label}|lits|s{seed}", model=label.split()[0].lower(), label=label,
                dataset="lits", seed=seed, level=0, stage="final", case=f"c{c}", region="liver",
                metric="dice", value=0.6 + 0.1 * k + 0.01 * c, ref_empty=False, pred_empty=False)
            for k, (label, *_) in enumerate(MODELS) for seed in (0, 1) for c in range(3)]
    return frame(rows, RESULT_COLUMNS)


# -- each model's own memory ------------------------------------------------------------------


def test_older_records_never_show_the_process_rss_as_a_models_memory():
    old_cpu = {"device": "cpu", "peak_mb": 812.0, "model_peak_mb": 3.5, "status": "ok"}
    assert per_model_peak(old_cpu) == {**old_cpu, "peak_mb": 3.5, "peak_rss_mb": 812.0}
    before_runtimes = {"device": "cpu", "peak_mb": 790.0, "status": "ok"}  # no model figure at all
    assert per_model_peak(before_runtimes) == {**before_runtimes, "peak_mb": None, "peak_rss_mb": 790.0}
    old_cuda = {"device": "cuda:0", "peak_mb": 40.0, "model_peak_mb": 31.0}
    assert per_model_peak(old_cuda) == {**old_cuda, "peak_mb": 31.0, "peak_rss_mb": None}
    new = {"device": "cpu", "peak_mb": 3.5, "model_peak_mb": 3.5, "peak_rss_mb": None}  # a failed new row
    assert per_model_peak(new) is new


def test_collected_tables_and_the_results_table_use_the_models_own_memory():
    from lfubench.studies.records import collect

    eff_old = {"item": "a", "model": "unet", "label": "a", "dataset": "lits", "seed": 0, "level": 0,
               "stage": "final", "params": 10, "gmacs": 0.1, "input": "3x32x32", "device": "cpu", "batch": 1,
               "precision": "fp32", "latency_ms": 2.0, "p90_ms": 2.1, "peak_mb": 801.0, "status": "ok"}
    eff_new = {**eff_old, "item": "b", "label": "b", "peak_mb": 0.7, "model_peak_mb": 0.7,
               "peak_rss_mb": 799.0}
    trials = [SimpleNamespace(user_attrs={"efficiency": [e]}) for e in (eff_old, eff_new)]
    _, efficiency, _ = collect(trials)
    assert efficiency["peak_mb"].tolist()[1] == 0.7 and math.isnan(efficiency["peak_mb"].tolist()[0])
    assert efficiency["peak_rss_mb"].tolist() == [801.0, 799.0]
    agg = aggregate(_results(), _efficiency())
    assert series(agg, "peak_mb").tolist() == [0.8, 32.0]  # 4 x GMACs, the RSS (790) nowhere
    assert "peak_rss_mb" not in set(agg["measure"])


# -- Pareto plots against a chosen runtime ----------------------------------------------------


def test_the_pareto_runtime_defaults_to_the_first_deployment_runtime_and_is_checked():
    eff = _efficiency()
    assert measured_runtimes(eff) == ["torch", "onnxruntime"]
    assert pareto_runtime(eff) == "onnxruntime"
    assert pareto_runtime(eff, "torch") == "torch"
    assert pareto_runtime(_efficiency(runtimes=("torch",))) == "torch"
    assert pareto_runtime(eff.iloc[:0]) == "torch"
    with pytest.raises(ReportInputError, match=r"^--runtime openvino: no unquantized latency of openvino in "
                                               r"the runs; measured: torch, onnxruntime$"):
        pareto_runtime(eff, "openvino")


def test_runtime_latency_is_the_runtimes_unquantized_mean_over_seeds():
    eff = _efficiency()
    rows = model_rows(aggregate(_results(), eff))
    assert runtime_latency(eff, rows, "onnxruntime").tolist() == [100.5, 250.5]  # not int8's 280 / 75
    assert runtime_latency(eff, rows, "torch").tolist() == [200.5, 300.5]
    assert runtime_latency(eff, rows, "openvino").isna().all()
    fig = pareto_figure(rows.assign(dice=[0.6, 0.7], latency_ms=[100.5, 250.5]), "latency_ms", "dice", "t",
                        xlabel=cost_label("latency_ms", "onnxruntime"))
    assert fig.axes[0].get_xlabel() == "latency (ms), onnxruntime"
    assert cost_label("gmacs", "onnxruntime") == "GMACs"


# -- the share of peak -------------------------------------------------------------------------


def test_peak_frame_has_each_model_and_runtimes_share_and_achieved_rate():
    peak = peak_frame(_efficiency()).set_index(["label", "runtime", "quantize"])
    assert len(peak) == 6  # 2 models x (torch, onnxruntime, onnxruntime int8); not the unsupported rows
    lfu = peak.loc[("LFU-Net w8", "onnxruntime", "none")]
    assert lfu["latency_ms"] == 100.5
    assert lfu["gmacs_per_s"] == pytest.approx((0.2 / 0.100 + 0.2 / 0.101) / 2)
    assert lfu["pct_of_peak"] == pytest.approx(100 * lfu["gmacs_per_s"] / 50)
    assert lfu["arithmetic_intensity"] == pytest.approx(2.0)
    # 40x fewer MACs, but a far smaller share of the peak: the point of the figure
    unet = peak.loc[("U-Net w32", "onnxruntime", "none")]
    assert unet["pct_of_peak"] > 10 * lfu["pct_of_peak"]
    assert peak.loc[("U-Net w32", "onnxruntime", "int8"), "pct_of_peak"] > 200  # int8 vs the fp32 peak


def test_the_peak_figure_is_made_only_where_more_than_pytorch_eager_was_measured(tmp_path):
    written = write_peak_figures(_efficiency(), tmp_path)
    assert list(written) == ["lits"] and written["lits"] == tmp_path / "peak_lits.pdf"
    assert written["lits"].stat().st_size > 1000 and (tmp_path / "peak_lits.png").is_file()
    assert write_peak_figures(_efficiency(runtimes=("torch",)), tmp_path / "eager") == {}


def test_the_peak_caption_states_the_configuration_and_the_conventions():
    items = pd.DataFrame({"dataset": ["lits"], "conv_latency": [LATENCY]})
    caption = peak_caption(items, _efficiency(), "lits")
    assert caption.startswith("lits: left, the share of the device's peak fp32 GMAC/s")
    assert "Shown: cpu, batch 1, fp32." in caption
    assert "at input 3x256x256, fp32, channels_last, on cpu, 1 thread;" in caption  # the stored sentence


def test_the_report_plots_the_chosen_runtime_and_adds_the_peak_figure(tmp_path, monkeypatch):
    from lfubench.reports.build import Written, build_outputs
    from lfubench.reports.document import Doc
    from lfubench.reports.inputs import ReportInputs
    from lfubench.reports.sections import deployment_section

    results, eff = _results(), _efficiency()
    items = pd.DataFrame([{"item": f"{label}|lits|s{s}", "model": label.split()[0].lower(), "label": label,
                           "dataset": "lits", "seed": s, "empty": "diagonal", "best_val_dice": 0.5,
                           "best_epoch": 1, "epochs": 1, "steps": 1, "train_seconds": 1.0,
                           "conv_latency": LATENCY} for label, *_ in MODELS for s in (0, 1)])
    inputs = ReportInputs(results, eff, items)
    with pytest.raises(ReportInputError, match="--runtime openvino"):
        build_outputs(inputs, tmp_path / "bad", pdf=False, runtime="openvino")
    assert not (tmp_path / "bad" / "table.md").exists()  # refused before anything was written
    from lfubench.reports import build

    plotted = []
    real = build.write_pareto_plots
    monkeypatch.setattr(build, "write_pareto_plots", lambda points, *a, **k: plotted.append(
        (points, k["runtime"])) or real(points, *a, **k))
    written = build_outputs(inputs, tmp_path / "out", pdf=False)
    names = {p.name for p in written["figures"]}
    assert {"pareto_lits_latency_ms.pdf", "pareto_lits_peak_mb.pdf", "peak_lits.pdf"} <= names
    (points, runtime), = plotted
    assert runtime == "onnxruntime" and points["latency_ms"].tolist() == [100.5, 250.5]
    assert points["peak_mb"].tolist() == [0.8, 32.0]  # the models' own memory
    build_outputs(inputs, tmp_path / "eager", pdf=False, runtime="torch")
    assert plotted[1][1] == "torch" and plotted[1][0]["latency_ms"].tolist() == [200.5, 300.5]
    from lfubench.reports.build import Figure

    fig = Figure(tmp_path / "out" / "peak_lits.pdf", "peak", peak_caption(items, eff, "lits"))
    made = Written(inputs, aggregate(results, eff), {}, {}, {}, [], deployment=[], deployment_figures=[fig])
    doc = Doc()
    deployment_section(doc, made)
    assert doc.source("t", "s") == Doc().source("t", "s")  # no deployment table: no section
    made.deployment = [SimpleNamespace()]  # a deployment table is shown: the figure follows it
    doc = Doc()
    doc.table = lambda *a, **k: None
    deployment_section(doc, made)
    assert "peak_lits.pdf" in doc.source("t", "s")
