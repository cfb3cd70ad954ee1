"""What ``pip install`` puts on a user's machine: one top-level name, ``lfubench``, with the shipped
plans and studies as package data addressable by name from any folder."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lfubench.cli import main
from lfubench.studies.plan import load_plan
from lfubench.studies.schema import PlanError
from lfubench.studies.shipped import locate, shipped
from lfubench.studies.sweepfile import load_study

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _package_dirs() -> dict[str, Path]:
    """Installed package name -> source folder, from pyproject's package-dir mapping."""
    return {name: ROOT / folder for name, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items()}


def test_every_source_package_is_listed_and_nothing_else():
    found = set()
    for name, folder in _package_dirs().items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder)
            found.add(".".join([name, *rel.parts]))
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert listed == found
    assert all(name == "lfubench" or name.startswith("lfubench.") for name in listed)


def test_the_folders_are_not_importable_under_their_own_names(tmp_path):
    code = ("import importlib.util, lfubench.models, lfubench.bench, lfubench.studies, lfubench.reports\n"
            "print([n for n in ('models', 'bench', 'studies', 'reports', 'benchmarks') "
            "if importlib.util.find_spec(n) is not None])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.slow
def test_pip_install_puts_one_top_level_name_with_the_shipped_files(tmp_path):
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--no-build-isolation", "--target", str(target), str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    top = sorted(p.name for p in target.iterdir() if p.name != "bin")
    assert top == ["lfubench", "lfubench-0.1.0.dist-info"]
    pkg = target / "lfubench"
    assert sorted(p.name for p in pkg.iterdir() if p.is_dir() and p.name != "__pycache__") == [
        "bench", "cli", "models", "reports", "studies"]
    assert {p.name for p in (pkg / "studies" / "plans").glob("*.toml")} >= {"default.toml", "lits2017.toml"}
    assert {p.name for p in (pkg / "studies" / "sweeps").glob("*.toml")} >= {"smoke.toml", "lits.toml"}
    assert not (pkg / "benchmarks").exists() and not (target / "tests").exists()


def test_shipped_names_resolve_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert {"default", "lits2017", "brats2018", "pruning"} <= set(shipped("plan"))
    assert {"smoke", "lits", "brats"} <= set(shipped("study"))
    path, is_shipped = locate("default", "plan")
    assert is_shipped and path.name == "default.toml" and path.is_file()
    assert load_plan("default").name == "default"
    assert load_study("smoke.toml").name == "smoke"
    own = tmp_path / "default.toml"  # a file of the user's wins over the shipped name
    own.write_text((path.parent / "default.toml").read_text().replace('name = "default"', 'name = "mine"'))
    assert locate("default.toml", "plan") == (Path("default.toml"), False)
    assert load_plan("default.toml").name == "mine"


def test_an_unknown_name_lists_the_shipped_ones():
    with pytest.raises(PlanError) as err:
        load_plan("defualt")
    message = str(err.value)
    assert "\n" not in message and message.startswith("defualt: plan file not found")
    assert "default" in message and "lits2017" in message
    with pytest.raises(PlanError, match=r"no/such\.toml: study file not found.*smoke"):
        load_study("no/such.toml")


def test_plans_command_lists_them(capsys):
    assert main(["plans", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "a path to your own TOML file works" in out["conventions"]
    rows = out["rows"]
    by_name = {(r["kind"], r["name"]): r for r in rows}
    assert by_name[("plan", "default")]["run with"] == "lfubench bench default"
    assert by_name[("study", "smoke")]["run with"] == "lfubench sweep smoke"
    assert Path(by_name[("plan", "lits2017")]["file"]).is_file()


def test_version_names_lfubench_and_torch(capsys):
    import torch

    with pytest.raises(SystemExit) as code:
        main(["--version"])
    assert code.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"lfubench {PYPROJECT['project']['version']} (")
    assert f"torch {torch.__version__}" in out
