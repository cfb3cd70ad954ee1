"""The harness benchmarks in ``benchmarks/`` run as plain scripts: ``--help`` for each, and one tiny
real run of the cheapest."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("*.py"))


def _run(script: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python benchmarks/NAME.py ARGS`` from another folder (no reliance on the working directory)."""
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tempfile.gettempdir(),
    )


def test_every_benchmark_is_listed_in_the_readme():
    readme = (BENCHMARKS / "README.md").read_text()
    assert SCRIPTS
    for script in SCRIPTS:
        assert f"python benchmarks/{script.name}" in readme


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_help(script):
    proc = _run(script, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: {script.name}")
    assert f"``python benchmarks/{script.name}" in script.read_text()  # the docstring says how to run it


def test_repeatability_tiny_run():
    """The exit status is the verdict it prints: 0 when the two medians agree within 5%, 1 when
    they do not (a busy machine can make them differ); both cases are checked exactly."""
    proc = _run(BENCHMARKS / "repeatability.py", "--input", "3x32x32", "--time", "0.2")
    assert proc.stdout.startswith("lfunet at 3x32x32, batch 1, CPU, 1 thread(s), inference"), proc.stderr
    assert "| run |" in proc.stdout.replace("  ", "")
    found = re.search(r"medians ([0-9.]+) ms and ([0-9.]+) ms: relative difference ([0-9.]+)% "
                      r"\(target <= 5%\): (PASS|FAIL)", proc.stdout)
    assert found, proc.stdout
    a, b, diff = (float(found.group(k)) for k in (1, 2, 3))
    assert diff == pytest.approx(100 * abs(a - b) / min(a, b), abs=0.01)
    verdict = "PASS" if abs(a - b) / min(a, b) <= 0.05 else "FAIL"
    assert found.group(4) == verdict
    assert proc.returncode == (0 if verdict == "PASS" else 1), proc.stderr
    assert "Environment:" in proc.stdout


def test_train_throughput_tiny_cpu_run():
    proc = _run(BENCHMARKS / "train_throughput.py", "--device", "cpu", "--input", "64", "--steps", "2",
                "--models", "lfunet:8", "--batch", "4", "--cases", "1", "--no-compile", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Training images/s on cpu: 64 cached LiTS phantom slices of 3x64x64, fp32")
    table = proc.stdout.replace(" ", "")
    assert "|model|batch|compile|loader_img_s|preloaded_img_s|loader/preloaded|warmup_s|" in table
    assert "|lfunetw8|4|no|" in table


@pytest.mark.slow
def test_data_scale_tiny_run():
    proc = _run(BENCHMARKS / "data_scale.py", "--shape", "32x32x8", "--cases", "2", "--size", "32")
    assert proc.returncode == 0, proc.stderr
    assert "| step" in proc.stdout and "speed-up of 2 jobs over 1 on 2 case(s): phantom" in proc.stdout
    assert "byte-identical: phantom yes, cache yes" in proc.stdout and "PASS" in proc.stdout


def test_a_bad_input_is_a_usage_error():
    proc = _run(BENCHMARKS / "repeatability.py", "--input", "3x30x32")
    assert proc.returncode == 2
    assert "not divisible by 16" in proc.stderr.splitlines()[-1]
