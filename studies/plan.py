"""Benchmark plans: a TOML file naming models, datasets, seeds, a training budget and
measurement settings, validated completely before any work starts.

Example (``studies/plans/default.toml``)::

    name = "default"
    seeds = [0]

    [train]            # bench.train.TrainConfig fields
    epochs = 4
    batch_size = 16

    [measure]          # latency/memory settings
    device = "cpu"
    batch_sizes = [1]
    precision = ["fp32"]

    [[datasets]]
    name = "lits"      # label in tables
    kind = "phantom-lits"   # phantom-lits | phantom-brats | lits | brats
    cases = 12         # phantoms only
    size = 128         # in-plane size after preprocessing

    [[models]]
    name = "lfunet"    # a registered model or preset
    label = "LFU-Net w8"
    base_width = 8     # any other key is a constructor keyword argument

A plan item is one (model x dataset x seed); its id is ``"{model label}|{dataset}|s{seed}"``.
Every problem found is reported at once, one line each, naming the file and the key.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import models
from bench.errors import LfubenchError
from bench.train import TrainConfig

DATASET_KINDS = ("phantom-lits", "phantom-brats", "lits", "brats")
TOP_KEYS = {"name", "description", "seeds", "train", "measure", "datasets", "models"}
DATASET_KEYS = {"name", "kind", "root", "cases", "shape", "size", "split_seed", "folds", "test",
                "phantom_seed"}
MEASURE_KEYS = {"device", "batch_sizes", "precision", "channels_last", "warmup", "iterations", "threads"}
MODEL_META_KEYS = {"name", "label", "levels"}
TRAIN_KEYS = set(TrainConfig.__dataclass_fields__) - {"progress"}
PRECISIONS = ("fp32", "fp16", "bf16")


class PlanError(LfubenchError):
    """A plan failed validation; the message lists every problem, one line each."""


@dataclass
class ModelSpec:
    name: str
    label: str
    kwargs: dict
    levels: list[int]


@dataclass
class DatasetSpec:
    name: str
    kind: str
    root: str | None = None
    options: dict = field(default_factory=dict)


@dataclass
class Item:
    model: ModelSpec
    dataset: DatasetSpec
    seed: int

    @property
    def id(self) -> str:
        return f"{self.model.label}|{self.dataset.name}|s{self.seed}"


@dataclass
class Plan:
    name: str
    path: str
    seeds: list[int]
    train: dict
    measure: dict
    datasets: list[DatasetSpec]
    models: list[ModelSpec]

    def items(self) -> list[Item]:
        """All (model x dataset x seed) items, datasets outermost."""
        return [Item(m, d, s) for d in self.datasets for m in self.models for s in self.seeds]


def _unknown(where: str, keys, allowed, problems: list[str]) -> None:
    for key in sorted(set(keys) - set(allowed)):
        close = difflib.get_close_matches(key, allowed, n=1)
        problems.append(f"{where}: unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))


def _model_kind_for(dataset_kind: str) -> tuple[int, int]:
    """(in_channels, num_classes) that a dataset kind feeds a model."""
    return (4, 4) if dataset_kind.endswith("brats") else (3, 3)


def load_plan(path: str | Path, base_dir: str | Path | None = None) -> Plan:
    """Read and validate a plan; raise :class:`PlanError` listing every problem.

    Relative dataset roots are resolved against ``base_dir`` (default: the plan's folder).
    """
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise PlanError(f"{where}: plan file not found")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise PlanError(f"{where}: not valid TOML: {err}") from None
    base = Path(base_dir) if base_dir else path.parent
    problems: list[str] = []
    _unknown(where, raw, TOP_KEYS, problems)

    seeds = raw.get("seeds", [0])
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)):
        problems.append(f"{where}: seeds must be a non-empty list of integers, got {seeds!r}")
        seeds = [0]

    train = raw.get("train", {})
    _unknown(f"{where}: [train]", train, TRAIN_KEYS, problems)
    try:
        TrainConfig(**{k: v for k, v in train.items() if k in TRAIN_KEYS})
    except TypeError as err:
        problems.append(f"{where}: [train]: {err}")

    measure = raw.get("measure", {})
    _unknown(f"{where}: [measure]", measure, MEASURE_KEYS, problems)
    for p in measure.get("precision", ["fp32"]):
        if p not in PRECISIONS:
            problems.append(f"{where}: [measure].precision: {p!r} is not one of {', '.join(PRECISIONS)}")
    if measure.get("device", "cpu") not in ("cpu", "cuda"):
        problems.append(f"{where}: [measure].device must be 'cpu' or 'cuda', got {measure['device']!r}")

    datasets: list[DatasetSpec] = []
    names = set()
    for k, d in enumerate(raw.get("datasets", [])):
        at = f"{where}: datasets[{k}]"
        _unknown(at, d, DATASET_KEYS, problems)
        name, kind = d.get("name"), d.get("kind")
        if not name:
            problems.append(f"{at}: missing key 'name'")
        elif name in names:
            problems.append(f"{at}: duplicate dataset name {name!r}")
        names.add(name)
        if kind not in DATASET_KINDS:
            problems.append(f"{at}: kind {kind!r} is not one of {', '.join(DATASET_KINDS)}")
            continue
        root = d.get("root")
        if not kind.startswith("phantom"):
            if not root:
                problems.append(f"{at}: kind {kind!r} needs a 'root' folder")
            else:
                root = str((base / root).resolve()) if not Path(root).is_absolute() else root
                if not Path(root).is_dir():
                    problems.append(f"{at}: root folder {root} does not exist")
        options = {key: v for key, v in d.items() if key not in ("name", "kind", "root")}
        datasets.append(DatasetSpec(name or f"dataset{k}", kind, root, options))
    if not raw.get("datasets"):
        problems.append(f"{where}: no [[datasets]]")

    specs: list[ModelSpec] = []
    labels = set()
    for k, m in enumerate(raw.get("models", [])):
        at = f"{where}: models[{k}]"
        name = m.get("name")
        if name not in models.list_models():
            close = difflib.get_close_matches(str(name), models.list_models(), n=3)
            problems.append(f"{at}: model {name!r} is not registered"
                            + (f" (close matches: {', '.join(close)})" if close else ""))
            continue
        kwargs = {key: v for key, v in m.items() if key not in MODEL_META_KEYS}
        label = m.get("label") or name + "".join(f" {key}={v}" for key, v in kwargs.items())
        if label in labels:
            problems.append(f"{at}: duplicate model label {label!r}")
        labels.add(label)
        levels = m.get("levels", [])
        for kind in {d.kind for d in datasets}:
            in_ch, n_cls = _model_kind_for(kind)
            try:
                model = models.create_model(name, **{"in_channels": in_ch, "num_classes": n_cls, **kwargs})
            except (TypeError, ValueError) as err:
                problems.append(f"{at}: {err}")
                break
            top = getattr(model, "prune_level", None)
            if levels and (top is None or not getattr(model, "deep_supervision", False)):
                problems.append(f"{at}: 'levels' needs a deep-supervision model with pruning levels")
                break
            bad = [lv for lv in levels if not (isinstance(lv, int) and top and 1 <= lv <= top)]
            if bad:
                problems.append(f"{at}: levels {bad} are not within 1..{top}")
                break
        specs.append(ModelSpec(name, label, kwargs, list(levels)))
    if not raw.get("models"):
        problems.append(f"{where}: no [[models]]")

    if problems:
        raise PlanError(f"{len(problems)} problem(s) in plan:\n" + "\n".join(problems))
    return Plan(raw.get("name", path.stem), str(path), seeds, train, measure, datasets, specs)
