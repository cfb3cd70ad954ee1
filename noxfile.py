"""nox sessions for lfubench: tests, lint, bench (the main job), sweep, dashboard and zoo.

Every session installs a pinned, tested torch first (the CPU wheel ``torch==2.13.0`` by
default). Set ``LFUBENCH_TORCH`` to another pip requirement (``torch==2.5.1``,
``torch`` for the newest build, a path to a wheel) to use your own.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PYTHON = "3.11"
TORCH = os.environ.get("LFUBENCH_TORCH", "torch==2.13.0")
#: smp and timm need a torchvision built for the installed torch, and no CPU torchvision exists for
#: the default pin on PyPI, so the baselines session pairs these (``LFUBENCH_TORCHVISION`` overrides)
TORCHVISION = os.environ.get("LFUBENCH_TORCHVISION", "torch==2.14.1 torchvision==0.29.1").split()
#: nnU-Net's networks need only torch, numpy and einops: its declared timm (and so torchvision) is
#: left out, which keeps the pinned torch
NNUNET_NETWORKS = [["--no-deps", "dynamic-network-architectures>=0.4"], ["einops>=0.8"]]

nox.options.sessions = ["tests", "baselines", "lint"]
nox.options.reuse_existing_virtualenvs = True


def install_project(session: nox.Session, *extras: str) -> None:
    session.install(TORCH)
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)


#: test modules that load the deployment runtimes (ONNX Runtime, OpenVINO, NNCF) and measure each
#: model's memory: they run in a pytest process of their own. In one process after the rest of
#: tests/bench (about 250 tests), a profile over torch.compile and OpenVINO ended in a segmentation
#: fault inside malloc (heap corruption from an earlier native call); each group alone passes.
RUNTIME_TESTS = [
    "tests/bench/test_runtimes.py",
    "tests/bench/test_quantize.py",
    "tests/bench/test_memory.py",
    "tests/bench/test_hardware.py",
    "tests/lfubench/test_cli_profile.py",
    "tests/studies/test_plan_runtimes.py",
    "tests/studies/test_deployment_e2e.py",
]


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite (pass '-m "not slow"' after -- to skip the end-to-end tests)."""
    install_project(session, "test")
    for requirement in NNUNET_NETWORKS:
        session.install(*requirement)
    options = session.posargs or ["-q"]
    if any(not a.startswith("-") and Path(a.split("::")[0]).exists() for a in options):
        session.run("pytest", *options)  # the tests named
        return
    session.run("pytest", *options, *(f"--ignore={path}" for path in RUNTIME_TESTS))
    session.run("pytest", *options, *RUNTIME_TESTS)


@nox.session(python=PYTHON)
def baselines(session: nox.Session) -> None:
    """Test the outside baselines with every library installed (torch paired with a torchvision)."""
    session.install(*TORCHVISION)
    session.install("-e", ".[test,baselines]")
    session.run("pytest", *(session.posargs or ["-q"]), "tests/models/test_baselines.py",
                "tests/models/test_zoo.py")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Check style and common mistakes with ruff."""
    lint_deps = PYPROJECT["project"]["optional-dependencies"]["lint"]
    session.install(*lint_deps)
    session.run("ruff", "check", ".")


@nox.session(python=PYTHON)
def zoo(session: nox.Session) -> None:
    """List the model zoo with parameters and GMACs at 3x256x256."""
    install_project(session)
    session.run("lfubench", "zoo", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run the default benchmark plan on fresh phantoms (CPU) into runs/default."""
    install_project(session, "onnx")  # the default plan measures ONNX Runtime beside PyTorch
    args = list(session.posargs)
    if not (args and not args[0].startswith("-")):  # options only: they apply to the default plan
        args = ["default", *([] if "--out" in args else ["--out", "runs/default"]), *args]
    session.run("lfubench", "bench", *args)


@nox.session(python=PYTHON)
def sweep(session: nox.Session) -> None:
    """Run the LiTS example sweep (2 workers, CPU) into runs/lits-front and show its front."""
    install_project(session, "postgres")  # a postgresql:// --storage works too
    args = list(session.posargs)
    if not (args and not args[0].startswith("-")):  # options only: they apply to the LiTS example
        args = ["lits", *([] if "--workers" in args else ["--workers", "2"]), *args]
    session.run("lfubench", "sweep", *args)


@nox.session(python=PYTHON)
def dashboard(session: nox.Session) -> None:
    """Open a storage in optuna-dashboard: nox -s dashboard -- sqlite:///runs/lits-front/study.db."""
    install_project(session, "dashboard", "postgres")
    if not session.posargs:
        session.error("give the storage after --: nox -s dashboard -- sqlite:///runs/lits-front/study.db")
    session.run("optuna-dashboard", *session.posargs)


@nox.session(python=PYTHON)
def report(session: nox.Session) -> None:
    """Write the paper-style report of runs/default (or of the run folders given after --)."""
    install_project(session)
    args = list(session.posargs)
    if not any(not a.startswith("-") for a in args) and "--storage" not in args:
        args = ["runs/default", *args]
    session.run("lfubench", "report", *args)
