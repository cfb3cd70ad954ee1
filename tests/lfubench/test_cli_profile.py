"""``lfubench profile``: rows, formats, --macs, --all and one-line errors."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch

import models
from lfubench.cli import main

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
        "GFLOPs = 2 x GMACs",
        "Executed but counted as 0",
        "By module",
    ):
        assert text in out
    code, out, _ = run(
        capsys, "profile", "lfunet_deng2023", "--input", "3x32x32", "--macs", "--format", "json"
    )
    rows = json.loads(out)["rows"]
    unexplained = [r["macs"] for r in rows if r["category"] == "unexplained"]
    assert unexplained == [0, 0, 0, 0]


def test_all_models(capsys):
    code, out, _ = run(
        capsys, "profile", "--all", "--input", "3x32x32", "--mode", "inference", "--format", "json", *FAST
    )
    assert code == 0
    rows = json.loads(out)["rows"]
    assert [r["model"] for r in rows] == models.list_models()
    assert all(r["status"] == "ok" for r in rows)
    assert {r["input"] for r in rows} == {"3x32x32", "1x32x32"}  # each model's own input channels


@pytest.mark.parametrize(
    "argv,message",
    [
        (["profile", "lfunett"], "unknown model 'lfunett'"),
        (["profile"], "name a MODEL"),
        (["profile", "unet", "--all"], "either a MODEL or --all"),
        (["profile", "unet", "groups=4"], "'unet' has no argument 'groups'"),
        (["profile", "unet", "width"], "must look like KEY=VALUE"),
        (["profile", "unet", "--attr", "nope=1"], "no attribute 'nope'"),
        (["profile", "unet", "--precision", "fp8"], "unknown precision 'fp8'"),
        (["profile", "unet", "--batch", "0"], "must be positive"),
        (["profile", "unet", "--input", "4x32x32"], "--input has 4 channels but the model takes 3"),
        (["profile", "unet", "--input", "3x30x32"], "not divisible by 16"),
    ],
)
def test_errors_are_one_line_and_non_zero(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_cpu_only_machine(capsys):
    code, _, err = run(capsys, "profile", "unet", "--device", "cuda")
    assert code == 2 and "CUDA is not available" in err
