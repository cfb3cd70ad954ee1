"""``lfubench profile`` (and ``lfubench zoo``): rows, formats, --macs, several models, --all,
--baseline, and user mistakes as one-line errors."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch

from lfubench import models
from lfubench.bench.conventions import MAC_COUNTERS, MACS
from lfubench.bench.errors import LfubenchError
from lfubench.cli import build_parser, main

FAST = ["--min-iters", "1", "--max-iters", "2", "--time", "0", "--warmup-time", "0", "--threads", "1"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_rows_with_model_kwargs(capsys):
    code, out, _ = run(
        capsys,
        "profile",
        "lfunet",
        "base_width=16",
        "groups=4",
        "--input",
        "3x32x32",
        "--batch",
        "1,2",
        "--mode",
        "inference",
        "--format",
        "json",
        *FAST,
    )
    assert code == 0
    data = json.loads(out)
    assert "1 multiply-add = 1 MAC" in data["conventions"]
    rows = data["rows"]
    assert [(r["batch"], r["mode"], r["status"]) for r in rows] == [
        (1, "inference", "ok"),
        (2, "inference", "ok"),
    ]
    model = models.create_model("lfunet", base_width=16, groups=4)
    assert rows[0]["params"] == rows[0]["params_used"] == sum(p.numel() for p in model.parameters())
    assert json.loads(rows[0]["model_kwargs"]) == {"base_width": 16, "groups": 4}
    assert rows[0]["model"] == "lfunet (base_width=16, groups=4)"
    assert rows[0]["env_torch"] == torch.__version__ and rows[0]["env_git_commit"]
    assert rows[0]["gmacs"] > 0


def test_csv_and_markdown(capsys):
    code, out, _ = run(
        capsys, "profile", "unet", "base_width=4", "--input", "3x32x32", "--format", "csv", *FAST
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["mode"], r["status"]) for r in rows] == [("inference", "ok"), ("train", "ok")]
    assert "env_cpu" in rows[0] and "peak_rss_mb" in rows[0]
    code, out, _ = run(capsys, "profile", "unet", "base_width=4", "--input", "3x32x32", *FAST)
    assert code == 0
    assert "Environment:" in out and "- git_commit:" in out and "| median_ms |" in out.replace("  ", "")
    assert "peak RSS of the whole process" in out


def test_macs_report_for_the_authors_lfunet(capsys):
    code, out, _ = run(
        capsys, "profile", "lfunet_deng2023", "--attr", "dedupe=false", "--input", "3x64x64", "--macs"
    )
    assert code == 0
    assert "lfunet_deng2023 (dedupe=False)" in out
    for text in (
        "| fvcore ",
        "| ptflops-pytorch ",
        "| ptflops-aten ",
        "| flop_counter ",
        "| conv ",
        "| upsampling ",
        "| total (rules) ",
        "| total (library) ",
        MACS,
        MAC_COUNTERS,
        "Parameters: 47,849 total",
        "Reconciliation by op category",
        "Executed but counted as 0",
        "fvcore ops without any handle: none",
        "Rules (what each counter counts per category):",
        "- **conv bias**: *fvcore*: not counted",
        "By module (depth 2",
        "| transitions.zp4 ",
        "Environment: torch",
    ):
        assert text in out
    assert out.index("Reconciliation") < out.index("Executed") < out.index("Rules") < out.index("By module")
    code, out, _ = run(
        capsys, "profile", "lfunet_deng2023", "--input", "3x32x32", "--macs", "--format", "json"
    )
    rows = json.loads(out)["rows"]
    unexplained = [r["macs"] for r in rows if r["category"] == "unexplained"]
    assert unexplained == [0, 0, 0, 0]
    assert MACS in json.loads(out)["conventions"]


def test_macs_report_names_the_heads_fvcore_drops(capsys):
    code, out, _ = run(capsys, "profile", "unetpp", "base_width=4", "--input", "3x32x32", "--macs")
    assert code == 0
    assert "modules absent from fvcore's traced graph (result unused): heads.l1, heads.l2, heads.l3" in out
    assert "| conv (result unused) " in out and "- **result unused**:" in out


def _runnable_at_32() -> set[str]:
    names = set()
    for name in models.list_models():
        try:
            model = models.create_model(name, **models.sized_arguments(name, 32))  # as profile builds it
            model.check_input(torch.empty(1, model.in_channels, 32, 32, device="meta"))
        except (models.ModelConfigError, ValueError):
            assert models.model_source(name) in models.OUTSIDE_SOURCES
            continue
        names.add(name)
    return names


def test_all_models(capsys):
    code, out, _ = run(
        capsys, "profile", "--all", "--input", "3x32x32", "--mode", "inference", "--format", "json", *FAST
    )
    assert code == 0
    rows = json.loads(out)["rows"]
    # the outside baselines that cannot run at 32x32 or here (their library missing) are skipped;
    # those planned for their input size (nnU-Net's, DynUNet) are built for 32x32 and run
    assert [r["model"] for r in rows] == [n for n in models.list_models() if n in _runnable_at_32()]
    assert all(r["status"] == "ok" for r in rows)
    assert {r["input"] for r in rows} == {"3x32x32", "1x32x32"}  # each model's own input channels


def test_several_models_in_one_call_with_a_baseline(capsys):
    argv = ["profile", "unet", "base_width=4", "lfunet", "--input", "3x32x32"]
    code, out, _ = run(capsys, *argv, "--mode", "inference", "--baseline", "unet", "--format", "json", *FAST)
    assert code == 0
    data = json.loads(out)
    rows = {r["model"]: r for r in data["rows"]}
    assert list(rows) == ["unet (base_width=4)", "lfunet"]
    assert all(r["status"] == "ok" for r in rows.values())
    unet, lfunet = rows["unet (base_width=4)"], rows["lfunet"]
    assert unet["gmacs_ratio"] == unet["latency_ratio"] == unet["memory_ratio"] == 1.0
    assert lfunet["gmacs_ratio"] == pytest.approx(lfunet["gmacs"] / unet["gmacs"])
    assert lfunet["latency_ratio"] == pytest.approx(lfunet["median_ms"] / unet["median_ms"])
    assert lfunet["memory_ratio"] == pytest.approx(lfunet["model_peak_mb"] / unet["model_peak_mb"])
    assert "/ unet (base_width=4) in the same runtime, quantization, batch" in data["conventions"]
    code, out, _ = run(capsys, *argv, "--mode", "inference", "--baseline", "unet (base_width=4)", *FAST)
    assert code == 0
    assert "| latency_ratio |" in out.replace("  ", "") and "| lfunet " in out


def test_a_mistake_in_a_later_model_stops_the_run_before_any_measurement(capsys):
    code, out, err = run(capsys, "profile", "unet", "base_width=4", "lfunet", "base_width=4", *FAST)
    assert code == 2 and out == ""
    assert "not divisible by groups" in err and "done" not in err


def test_all_with_a_pattern(capsys):
    code, out, _ = run(
        capsys, "profile", "--all", "--pattern", "lfunet*", "--input", "3x32x32", "--mode", "inference",
        "--format", "csv", *FAST,
    )
    assert code == 0
    assert [r["model"] for r in csv.DictReader(io.StringIO(out))] == models.list_models("lfunet*")


USER_MISTAKES = [
    (["profile"], "name a MODEL"),
    (["profile", "unet", "--all"], "either a MODEL or --all"),
    (["profile", "base_width=4"], "the first argument must be a model name"),
    (["profile", "unet", "width"], "must look like KEY=VALUE"),
    (["profile", "unet", "lfunett"], "'lfunett' of 'unet' must look like KEY=VALUE (or name a model: see "
     "lfubench zoo); close model names: lfunet"),
    (["profile", "unet", "--attr", "nope=1"], "no attribute 'nope'"),
    (["profile", "unet", "--attr", "nope"], "--attr 'nope' must look like KEY=VALUE"),
    (["profile", "unet", "--precision", "fp8"], "unknown precision 'fp8'"),
    (["profile", "unet", "--mode", "eval"], "unknown mode 'eval'"),
    (["profile", "unet", "--runtime", "tvm"], "unknown runtime 'tvm'; choose from torch, compile, onnx"),
    (["profile", "unet", "--quantize", "int4"], "unknown quantization 'int4'; choose from none, int8"),
    (["profile", "unet", "--runtime", "tensorrt"], "'tensorrt' runs on NVIDIA GPUs only: give --device cuda"),
    (["profile", "unet", "--runtime", "onnxruntime", "--compile"], "give --runtime compile (with the other"),
    (["profile", "unet", "--batch", "0"], "must be positive"),
    (["profile", "unet", "--batch", "1,x"], "--batch sizes must be positive integers"),
    (["profile", "unet", "--batch", ","], "empty batch size list"),
    (["profile", "unet", "--input", "3x32"], "--input must look like CxHxW"),
    (["profile", "unet", "--input", "4x32x32"], "--input has 4 channels but the model takes 3"),
    (["profile", "unet", "--input", "3x30x32"], "not divisible by 16"),
    (["profile", "unet", "--input", "3x30x32", "--macs"], "not divisible by 16"),
    (["profile", "unet", "--min-iters", "5", "--max-iters", "2"], "--max-iters must be at least 5"),
    (["profile", "unet", "--min-iters", "0"], "--min-iters must be at least 1"),
    (["profile", "unet", "--time", "-1"], "--time must be at least 0"),
    (["profile", "unet", "--threads", "0"], "--threads must be at least 1"),
    (["profile", "unet", "--macs", "--module-depth", "0"], "--module-depth must be at least 1"),
    (["profile", "--all", "--pattern", "resnet*"], "no model matches --pattern 'resnet*'"),
    (["profile", "unet", "--pattern", "u*"], "--pattern selects models for --all"),
    (["profile", "unet", "lfunet", "--baseline", "unetpp"], "--baseline 'unetpp' is not among"),
    (["profile", "unet", "base_width=4", "unet", "base_width=8", "--baseline", "unet"],
     "--baseline 'unet' matches several"),
    (["zoo", "--pattern", "resnet*"], "no model matches --pattern 'resnet*'"),
    (["zoo", "--input", "3x30x32"], "not divisible by 16"),
    (["zoo", "--input", "3x30"], "--input must look like CxHxW"),
]
MODEL_ERRORS = [  # raised by models.create_model; the CLI's main turns them into one line
    (["profile", "lfunett"], "unknown model 'lfunett'"),
    (["profile", "unet", "groups=4"], "'unet' has no argument 'groups'"),
]


@pytest.mark.parametrize("argv,message", USER_MISTAKES + MODEL_ERRORS)
def test_errors_are_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv,message", USER_MISTAKES)
def test_user_mistakes_raise_lfubench_error(argv, message):
    args = build_parser().parse_args(argv)
    with pytest.raises(LfubenchError) as info:
        args.func(args)
    assert message in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_cpu_only_machine(capsys):
    code, _, err = run(capsys, "profile", "unet", "--device", "cuda")
    assert code == 2 and "CUDA is not available" in err
    args = build_parser().parse_args(["profile", "unet", "--device", "cuda"])
    with pytest.raises(LfubenchError, match="--device cuda: CUDA is not available"):
        args.func(args)


# --- runtimes -----------------------------------------------------------------------------------

DEPLOYMENT_KEYS = ("runtime", "quantize", "max_abs_diff", "model_peak_mb", "pct_of_peak", "joules_per_image")


def test_default_rows_carry_the_new_keys_with_torch_values(capsys):
    code, out, _ = run(capsys, "profile", "unet", "base_width=4", "--input", "3x32x32", "--mode", "inference",
                       "--format", "json", *FAST)
    assert code == 0
    (row,) = json.loads(out)["rows"]
    assert set(DEPLOYMENT_KEYS) <= set(row)
    assert (row["runtime"], row["quantize"], row["max_abs_diff"]) == ("torch", "none", 0.0)
    weights = sum(p.numel() for p in models.create_model("unet", base_width=4).parameters()) * 4 / 2**20
    assert row["model_peak_mb"] > weights and row["pct_of_peak"] > 0
    assert row["joules_per_image"] is None or row["joules_per_image"] > 0
    assert row["energy_note"]  # the counter used, or why there is none


@pytest.mark.slow
def test_runtimes_and_int8_rows_with_a_baseline_per_runtime(capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    code, out, err = run(capsys, "profile", "unet", "base_width=4", "lfunet", "prune_level=1", "--input",
                         "3x32x32", "--runtime", "torch,onnxruntime,openvino", "--quantize", "none,int8",
                         "--mode", "inference,train", "--baseline", "unet", "--format", "csv", *FAST)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert set(DEPLOYMENT_KEYS) <= set(rows[0])
    grid = [(r["model"], r["runtime"], r["quantize"], r["mode"], r["status"]) for r in rows]
    for model in ("unet (base_width=4)", "lfunet (prune_level=1)"):
        assert [g[1:] for g in grid if g[0] == model] == [
            ("torch", "none", "inference", "ok"), ("torch", "none", "train", "ok"),
            ("torch", "int8", "inference", "unsupported"),
            ("onnxruntime", "none", "inference", "ok"), ("onnxruntime", "int8", "inference", "ok"),
            ("openvino", "none", "inference", "ok"), ("openvino", "int8", "inference", "ok"),
        ]
    ok = [r for r in rows if r["status"] == "ok"]
    assert all(float(r["max_abs_diff"]) <= (1e-3 if r["runtime"] == "openvino" else 1e-4)
               for r in ok if r["quantize"] == "none" and r["mode"] == "inference")
    assert all(r["max_abs_diff"] == "" for r in ok if r["mode"] == "train")
    assert all(float(r["argmax_agreement"]) >= 0.9 for r in ok if r["quantize"] == "int8")
    ratios = {(r["model"], r["runtime"], r["quantize"], r["mode"]): r["latency_ratio"] for r in ok}
    assert all(float(ratios[("unet (base_width=4)", *k[1:])]) == 1.0 for k in ratios)
    lf = [r for r in ok if r["model"].startswith("lfunet") and r["runtime"] == "onnxruntime"
          and r["quantize"] == "int8"][0]
    un = [r for r in ok if r["model"].startswith("unet") and r["runtime"] == "onnxruntime"
          and r["quantize"] == "int8"][0]
    assert float(lf["latency_ratio"]) == pytest.approx(float(lf["median_ms"]) / float(un["median_ms"]))
    assert err.count("\n") <= 4  # one progress line per model, no exporter or quantizer chatter
    code, out, _ = run(capsys, "profile", "unet", "base_width=4", "--input", "3x32x32", "--runtime",
                       "onnxruntime", "--quantize", "none,int8", *FAST)
    assert code == 0
    assert "| onnxruntime |" in out.replace("  ", "") and "| max_abs_diff |" in out.replace("  ", "")
    assert "ONNX Runtime QDQ" in out


def test_a_missing_runtime_is_one_line_naming_the_extra(capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: None if n == "onnxruntime" else real(n, *a))
    code, out, err = run(capsys, "profile", "unet", "--runtime", "torch,onnxruntime", *FAST)
    assert code == 2 and out == ""
    assert err.strip() == ("lfubench profile: error: runtime 'onnxruntime' needs onnxruntime, not installed: "
                           "pip install 'lfubench[onnx]'")
