"""`lfubench report --runtime`: the runtime of the Pareto plots' latency, checked against the runs."""

from __future__ import annotations

from lfubench.cli import main

from .helpers import make_run


def test_report_runtime_must_be_measured_and_is_one_line_otherwise(tmp_path, capsys):
    make_run(tmp_path / "a", "runa", 0)  # measured in PyTorch eager only
    assert main(["report", str(tmp_path / "a"), "--runtime", "onnxruntime", "--no-pdf"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith(
        "--runtime onnxruntime: no unquantized latency of onnxruntime in the runs; measured: torch"), err
    assert not (tmp_path / "a" / "table.md").exists()
    assert main(["report", str(tmp_path / "a"), "--runtime", "torch", "--no-pdf"]) == 0
    assert (tmp_path / "a" / "pareto_lits_latency_ms.pdf").is_file()
    assert not list((tmp_path / "a").glob("peak_*"))  # no runtime but torch: no share-of-peak figure
