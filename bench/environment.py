"""The hardware and software record attached to every measured result."""

from __future__ import annotations

import contextlib
import functools
import platform
import subprocess
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run the block with ``threads`` intra-op CPU threads (``None``: leave torch's count), and
    restore the previous count afterwards."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_commit(root: Path = REPO_ROOT) -> tuple[str, bool | None]:
    """``(commit, dirty)`` of the checkout holding lfubench: ``git rev-parse HEAD``, and whether
    tracked files differ from it; ``("unknown", None)`` outside a git checkout."""
    commit = _run(["git", "rev-parse", "HEAD"], root)
    if not commit:
        return "unknown", None
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], root)
    return commit, None if status is None else bool(status)


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@functools.lru_cache(maxsize=1)
def nvidia_driver() -> str:
    """The NVIDIA driver version (``nvidia-smi``, else ``/proc/driver/nvidia/version``)."""
    out = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    if out:
        return out.splitlines()[0].strip()
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
        for token in text.split():
            if token[:1].isdigit() and "." in token:
                return token
    except OSError:
        pass
    return "unknown"


def environment_record(device: str | torch.device = "cpu") -> dict:
    """Device name, driver, CUDA and cuDNN versions, torch and Python versions, CPU model,
    intra-op thread count, OS, lfubench version and git commit (with a dirty flag).

    Fields that do not apply (the driver on a CPU run) are ``"n/a"``.
    """
    dev = torch.device(device)
    commit, dirty = git_commit()
    record = {
        "device_type": dev.type,
        "device_name": cpu_model(),
        "device_memory_mb": None,
        "compute_capability": "n/a",
        "driver": "n/a",
        "cuda": torch.version.cuda or "n/a",
        "cudnn": "n/a",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "os": platform.platform(),
        "lfubench": _version(),
        "git_commit": commit,
        "git_dirty": dirty,
    }
    if torch.backends.cudnn.is_available():
        record["cudnn"] = str(torch.backends.cudnn.version())
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        record.update(
            device_name=props.name,
            device_memory_mb=round(props.total_memory / 2**20),
            compute_capability=f"{props.major}.{props.minor}",
            driver=nvidia_driver(),
        )
    return record


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("lfubench")
    except Exception:
        return "unknown"


def format_environment(record: dict) -> str:
    """One line per field, for the header of a Markdown report."""
    return "\n".join(f"- {k}: {v}" for k, v in record.items())
