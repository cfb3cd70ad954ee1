"""Case-level splits: a held-out test set and k folds over the rest, deterministic by seed.

Slices of one case never land on two sides. With ``groups`` (BraTS 2018 HGG/LGG) every group is
split in proportion. Input order does not matter: case ids are sorted before shuffling.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ..errors import OptionError


def splits_path(folder: Path | str, seed: int, test_fraction: float, folds: int) -> Path:
    """The splits file for these settings in ``folder``: ``splits-s{seed}-t{test}-f{folds}.json``.

    Naming the file by its settings means a changed seed, test fraction or fold count never
    reuses splits made with other settings.
    """
    return Path(folder) / f"splits-s{seed}-t{test_fraction:g}-f{folds}.json"


def _natural(case_id: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", case_id)]


def make_splits(case_ids: Iterable[str], seed: int = 0, test_fraction: float = 0.2, folds: int = 5,
                groups: Mapping[str, str | None] | None = None) -> dict:
    """Split cases into test and ``folds`` cross-validation folds.

    Args:
        case_ids: the case ids (unique).
        seed: the shuffling seed.
        test_fraction: share of cases held out for testing, per group (default 0.2; 0 for none).
        folds: number of cross-validation folds over the remaining cases (>= 2).
        groups: optional case id -> group (stratification).

    Returns:
        a JSON-able dict: ``seed``, ``test_fraction``, ``folds``, ``test``, ``train``/``val``
        (fold 0) and ``cv`` (a list of ``{"train", "val"}``, one per fold).
    """
    ids = sorted(case_ids, key=_natural)
    if len(set(ids)) != len(ids):
        raise OptionError("case ids must be unique")
    if not 0 <= test_fraction < 1:
        raise OptionError(f"test fraction must be in [0, 1), got {test_fraction}")
    if folds < 2:
        raise OptionError(f"folds must be at least 2, got {folds}")
    groups = groups or {}
    by_group: dict[str, list[str]] = {}
    for cid in ids:
        by_group.setdefault(str(groups.get(cid) or ""), []).append(cid)
    rng = np.random.default_rng(seed)
    test: list[str] = []
    rest: list[str] = []
    for name in sorted(by_group):
        members = [by_group[name][i] for i in rng.permutation(len(by_group[name]))]
        n_test = int(round(len(members) * test_fraction))
        test += members[:n_test]
        rest += members[n_test:]
    if test_fraction > 0 and not test and len(rest) > folds:
        test.append(rest.pop())
    if len(rest) < folds:
        raise OptionError(f"{len(ids)} cases leave {len(rest)} for {folds} folds; "
                         "need at least one case per fold")
    fold_of = {cid: k % folds for k, cid in enumerate(rest)}
    cv = []
    for f in range(folds):
        val = sorted((c for c in rest if fold_of[c] == f), key=_natural)
        train = sorted((c for c in rest if fold_of[c] != f), key=_natural)
        cv.append({"train": train, "val": val})
    return {"seed": seed, "test_fraction": test_fraction, "folds": folds,
            "test": sorted(test, key=_natural), "train": cv[0]["train"], "val": cv[0]["val"], "cv": cv}


def write_splits(folder: Path | str, splits: dict) -> Path:
    """Write ``splits`` into ``folder`` atomically (temp file + rename), named by their
    settings (:func:`splits_path`); return the path."""
    path = splits_path(folder, splits["seed"], splits["test_fraction"], splits["folds"])
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(splits, indent=1))
    os.replace(tmp, path)
    return path


def read_splits(path: Path | str) -> dict:
    """Read a splits file written by :func:`write_splits`."""
    return json.loads(Path(path).read_text())
