"""The options ``lfubench bench`` and ``lfubench sweep`` share (``lfubench.cli.args.add_run_options``):
declared once, parsed alike, and each command's help names the shipped plans or studies."""

from __future__ import annotations

import pytest

from lfubench.cli import build_parser, main

SHARED = ["--out", "o", "--set", "train.epochs=2", "--set", "seeds=[0]", "--storage", "journal:j.log",
          "--grace", "12", "--workers", "2", "--devices", "cuda:0,cuda:1", "--no-progress",
          "--worker-tag", "w1"]


def test_bench_and_sweep_parse_the_shared_options_alike():
    bench = vars(build_parser().parse_args(["bench", "default", *SHARED]))
    sweep = vars(build_parser().parse_args(["sweep", "smoke", *SHARED]))
    keys = ("out", "set", "storage", "grace", "workers", "devices", "no_progress", "worker_tag")
    expected = {"out": "o", "set": ["train.epochs=2", "seeds=[0]"], "storage": "journal:j.log", "grace": 12.0,
                "workers": 2, "devices": "cuda:0,cuda:1", "no_progress": True, "worker_tag": "w1"}
    assert {k: bench[k] for k in keys} == expected
    assert {k: sweep[k] for k in keys} == expected
    defaults = {"out": None, "set": [], "storage": None, "grace": 60.0, "workers": 1, "devices": None,
                "no_progress": False, "worker_tag": None}
    assert {k: vars(build_parser().parse_args(["bench", "default"]))[k] for k in keys} == defaults
    assert {k: vars(build_parser().parse_args(["sweep", "smoke"]))[k] for k in keys} == defaults


@pytest.mark.parametrize(("command", "noun", "example", "unit"), [
    ("bench", "plan", "models.LABEL.base_width=16", "item"),
    ("sweep", "study", "search.lfunet.groups=[4,8]", "trial"),
])
def test_help_names_the_shipped_files_and_keeps_each_commands_wording(command, noun, example, unit, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert f"a shipped {noun}'s name (lfubench plans lists them: lfubench {command} " in text
    assert f"or a {noun} TOML file" in text
    assert "see studies/" not in text
    assert f"run folder (default runs/<{noun} name>)" in text
    assert f"override a {noun} setting, validated like the file:" in text and example in text
    assert f"the run folder keeps the effective {noun})" in text
    assert f"a running {unit} counts as lost" in text
    assert "--worker-tag" not in text
