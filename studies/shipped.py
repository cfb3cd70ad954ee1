"""The plans and sweep studies that ship with lfubench, addressable by name from any folder.

They are package data (``lfubench/studies/plans/*.toml`` and ``lfubench/studies/sweeps/*.toml``
once installed; ``studies/plans`` and ``studies/sweeps`` in a clone). A reference is a path to a
TOML file or a shipped name (``default``, ``lits2017``, ``smoke`` ...). A relative dataset
``root`` in a shipped file is resolved against the working folder, since the package's own folder
holds no data.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from .schema import PlanError

log = logging.getLogger(__name__)

#: kind of file -> (its folder in the package, what the kind is called in messages)
KINDS = {"plan": ("plans", "plan"), "study": ("sweeps", "study")}


def shipped_dir(kind: str) -> Path:
    """The package folder that holds the shipped files of ``kind`` ('plan' or 'study')."""
    return Path(str(resources.files("lfubench.studies"))) / KINDS[kind][0]


def shipped(kind: str) -> dict[str, Path]:
    """The shipped files of ``kind`` by name, sorted."""
    folder = shipped_dir(kind)
    return {p.stem: p for p in sorted(folder.glob("*.toml"))} if folder.is_dir() else {}


def describe(path: Path) -> str:
    """The ``description`` of a shipped TOML file ('' if it has none or cannot be read)."""
    import tomllib

    try:
        value = tomllib.loads(path.read_text()).get("description", "")
    except (OSError, tomllib.TOMLDecodeError):
        return ""
    return value if isinstance(value, str) else ""


def locate(ref: str | Path, kind: str) -> tuple[Path, bool]:
    """The file that ``ref`` names and whether it is a shipped one.

    A path to an existing file wins; otherwise a bare name (no folder, ``.toml`` optional) is
    looked up among the shipped files. Anything else raises :class:`PlanError` in one line that
    lists the shipped names.
    """
    path = Path(ref)
    folder = shipped_dir(kind)
    if path.is_file():
        return path, path.resolve().parent == folder.resolve()
    name = path.name.removesuffix(".toml")
    files = shipped(kind)
    if path.parent == Path(".") and name in files:
        return files[name], True
    what = KINDS[kind][1]
    raise PlanError(f"{ref}: {what} file not found (not a file, nor a shipped {what}: "
                    f"{', '.join(files) or 'none'})")


def base_folder(path: Path, is_shipped: bool) -> Path:
    """The folder that relative dataset roots of ``path`` are resolved against: the working
    folder for a shipped file, the file's own folder otherwise."""
    return Path.cwd() if is_shipped else path.parent
