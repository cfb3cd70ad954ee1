"""``lfubench profile`` and ``lfubench zoo`` with a user's own model: a reference
``module:callable`` from the working folder, and an entry-point model."""

from __future__ import annotations

import json

import pytest

from lfubench import models
from lfubench.bench.complexity import count_params
from lfubench.cli import main

from ..models.user_model_helpers import write_distribution, write_user_module

FAST = ["--min-iters", "1", "--max-iters", "2", "--time", "0", "--warmup-time", "0", "--threads", "1"]


@pytest.fixture
def mod(tmp_path, monkeypatch):
    """A fresh user module in the working folder (which ``lfubench`` makes importable)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return write_user_module(tmp_path)


def test_profile_measures_a_model_by_reference(capsys, mod):
    code = main(["profile", f"{mod}:build_heads", "base_width=5", "unet", "base_width=4", "in_channels=1",
                 "--input", "1x32x32", "--mode", "inference,train", "--format", "json", *FAST])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = json.loads(out)["rows"]
    mine = [r for r in rows if r["model"] == f"{mod}:build_heads (base_width=5)"]
    assert [(r["mode"], r["status"], r["input"]) for r in mine] == [("inference", "ok", "1x32x32"),
                                                                     ("train", "ok", "1x32x32")]
    built = models.create_model(f"{mod}:build_heads", in_channels=1, base_width=5)  # in_channels from --input
    assert mine[0]["params"] == count_params(built) == 1 * 9 * 5 + 5 + 2 * 5 + 2 * (5 * 3 + 3)
    assert mine[0]["gmacs"] > 0 and mine[0]["median_ms"] > 0


@pytest.mark.parametrize("argv,message", [
    (["no_such_module_xyz:build"], "model 'no_such_module_xyz:build': module 'no_such_module_xyz' not found"),
    (["{mod}:build_halves"], "model '{mod}:build_halves': forward of a 1x3x32x32 input returned 1x3x16x16; "
                             "expected 1x3x32x32"),
    (["unet", "{mod}:build", "depth=2"], "model '{mod}:build': it takes no argument 'depth'"),
])
def test_profile_names_a_bad_reference_in_one_line(capsys, mod, argv, message):
    code = main(["profile", *[a.format(mod=mod) for a in argv], "--input", "3x32x32", *FAST])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith(f"lfubench profile: error: {message.format(mod=mod)}") and err.count("\n") == 1, err


def test_zoo_shows_an_entry_point_model_as_the_user_s(capsys, tmp_path, monkeypatch):
    name = write_user_module(tmp_path)
    write_distribution(tmp_path, {"fake_tiny": f"{name}:build"})
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["zoo", "--pattern", "*tiny", "--input", "3x32x32", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows == [{"model": "fake_tiny", "source": "user", "in_channels": 3, "num_classes": 3,
                     "params": count_params(models.create_model("fake_tiny")), "gmacs": rows[0]["gmacs"],
                     "note": ""}]
    assert main(["zoo", "--pattern", "lfunet*", "--input", "3x32x32", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("model,"))
    assert lines[header].startswith("model,source,") and lines[header + 1].startswith("lfunet,lfubench,")
    assert lines[header + 2].startswith("lfunet_deng2023,authors' preset,")


def test_zoo_shows_a_model_by_reference(capsys, mod):
    assert main(["zoo", "--pattern", f"{mod}:build", "--input", "3x32x32", "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert row["model"] == f"{mod}:build" and row["source"] == "user"
    conv, norm, classifier = 3 * 9 * 4 + 4, 2 * 4, 4 * 3 + 3  # base_width 4, 3 channels, 3 classes
    assert row["params"] == count_params(models.create_model(f"{mod}:build")) == conv + norm + classifier
