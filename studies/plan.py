"""Benchmark plans: a TOML file naming models, datasets, seeds, a training budget and
measurement settings, read through the schema (:mod:`studies.schema`) and validated
completely before any work starts.

A small plan::

    name = "tiny"
    seeds = [0]

    [train]                 # bench.train.TrainConfig: epochs, steps, minutes, batch_size, lr, ...
    epochs = 2
    batch_size = 8

    [measure]               # studies.schema.MeasureSpec
    device = "cpu"
    batch_sizes = [1]

    [[datasets]]            # studies.schema.DatasetSpec
    name = "lits"
    kind = "phantom-lits"   # phantom-lits | phantom-brats | lits | brats (real folders need root)
    cases = 6
    size = 64

    [[models]]              # studies.schema.ModelSpec; other keys are constructor arguments
    name = "lfunet"
    label = "LFU-Net w8"
    levels = [1, 4]

``studies/plans/default.toml`` is the plan of ``nox -s bench``. A plan item is one
(model x dataset x seed); its id is ``"{model label}|{dataset}|s{seed}"``. Every problem found
is reported at once, one line each, naming the file and the key. Settings can be overridden
without editing the file (``overrides``, the command line's ``--set KEY=VALUE``): ``train.epochs=2``,
``measure.batch_sizes=[1, 8]``, ``datasets.lits.cases=6`` (a dataset by name), ``models.LFU-Net
w8.base_width=16`` (a model by label), ``seeds=[0, 1]``; values are TOML values (a bare word is
a string).
"""

from __future__ import annotations

import copy
import difflib
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lfubench import models
from lfubench.bench.datasets import dataset_for, get_dataset
from lfubench.bench.errors import LfubenchError
from lfubench.bench.runtimes import RuntimeUnavailable, check_runtimes
from lfubench.bench.train import TrainConfig
from lfubench.models._registry import is_user_model
from lfubench.models.pruning import described

from .schema import (
    MODEL_SET,
    TRAIN_SKIP,
    DatasetSpec,
    MeasureSpec,
    ModelSpec,
    PlanError,
    TuneSpec,
    read_section,
    resolve_root,
    section_dict,
    train_section,
    tune_section,
    unknown_key,
)
from .shipped import base_folder, locate

#: dataset settings that only phantom kinds take (left out of a real dataset's effective plan)
PHANTOM_KEYS = tuple(k for k, f in DatasetSpec.__dataclass_fields__.items() if f.metadata.get("phantom"))

TOP_KEYS = ("name", "description", "seeds", "train", "measure", "tune", "datasets", "models")


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
    description: str
    path: str
    seeds: list[int]
    train: TrainConfig
    measure: MeasureSpec
    datasets: list[DatasetSpec]
    models: list[ModelSpec]
    tune: TuneSpec | None = None  # [tune]: the search every model gets (studies.tune); None: none

    def items(self) -> list[Item]:
        """All (model x dataset x seed) items, datasets outermost."""
        return [Item(m, d, s) for d in self.datasets for m in self.models for s in self.seeds]

    def to_dict(self) -> dict:
        """The effective plan, every default filled in, as a TOML-able table."""
        return {"name": self.name, "description": self.description, "seeds": list(self.seeds),
                "train": section_dict(self.train, TRAIN_SKIP), "measure": section_dict(self.measure),
                **({"tune": section_dict(self.tune)} if self.tune is not None else {}),
                "datasets": [section_dict(d, skip=() if d.phantom else PHANTOM_KEYS) for d in self.datasets],
                "models": [section_dict(m) for m in self.models]}


# --- overrides --------------------------------------------------------------------------------


def _value(text: str):
    """A TOML value; a bare word (``cuda``, ``nan``) is a string, except ``true``/``false``."""
    if re.fullmatch(r"[A-Za-z_][\w-]*", text) and text not in ("true", "false"):
        return text
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict, overrides: Sequence[str],
                    tables: Sequence[str] = ("train", "measure")) -> dict:
    """A copy of the raw plan with each ``KEY=VALUE`` applied; a bad key raises :class:`PlanError`.

    ``tables``: the top-level tables whose keys may be set as ``TABLE.KEY`` (a sweep study adds
    its own)."""
    raw = copy.deepcopy(raw)
    problems = []
    for text in overrides:
        key, sep, value = text.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            problems.append(f"--set {text!r}: must look like KEY=VALUE, e.g. train.epochs=2")
            continue
        target = raw
        if parts[0] in ("datasets", "models"):
            if len(parts) != 3:
                what = "name" if parts[0] == "datasets" else "label"
                problems.append(f"--set {text!r}: use {parts[0]}.<{what} or index>.KEY=VALUE")
                continue
            entries = raw.get(parts[0], [])
            tag = "name" if parts[0] == "datasets" else "label"
            names = [str(e.get(tag, e.get("name"))) for e in entries]
            if parts[1] in names:
                target = entries[names.index(parts[1])]
            elif parts[1].isdigit() and int(parts[1]) < len(entries):
                target = entries[int(parts[1])]
            else:
                problems.append(f"--set {text!r}: no {parts[0][:-1]} {parts[1]!r} in the plan "
                                f"(there are: {', '.join(names) or 'none'})")
                continue
            parts = parts[2:]
        elif len(parts) > 2 or (len(parts) == 2 and parts[0] not in tables):
            problems.append(f"--set {text!r}: {key!r} is not a plan setting (use "
                            + "".join(f"{t}.KEY, " for t in tables)
                            + "datasets.NAME.KEY, models.LABEL.KEY or a top-level key)")
            continue
        elif len(parts) == 2:
            target = raw.setdefault(parts[0], {})
            parts = parts[1:]
        target[parts[0]] = _value(value.strip())
    if problems:
        raise PlanError(f"{len(problems)} problem(s) in --set:\n" + "\n".join(problems))
    return raw


# --- loading ----------------------------------------------------------------------------------


def _in_out(dataset: DatasetSpec) -> dict:
    info = get_dataset(dataset.dataset)
    return {"in_channels": info.in_channels, "num_classes": info.num_classes}


def check_model(spec: ModelSpec, datasets: list[DatasetSpec], cache: dict | None = None) -> str | None:
    """What stops ``spec`` from running on ``datasets``, or None: the model is built once per
    dataset it will meet, its pruning levels checked and, where it is channel-pruned, a trial
    prune run (``bn`` importance needs batch norm after every pruned convolution). A user's model
    (``package.module:callable``, an entry-point model) is also given one dry forward at the
    dataset's input size (:func:`models.check_forward`), and ``prune_level`` or ``levels`` are
    refused for it unless it has pruning levels (``prune_level`` and ``load_from_full``). Its
    problems name the entry's ``name``. Plans check each model with it; sweeps every model their
    space can draw (:mod:`studies.sweepfile`).

    ``cache`` (a dict kept by the caller) holds each configuration's build and trial prune, so
    models that differ only in settings that do not change them are built once."""
    cache = {} if cache is None else cache
    user = is_user_model(spec.name)
    if not user and spec.name not in models.list_models():
        close = difflib.get_close_matches(str(spec.name), models.list_models(), n=3)
        return f"model {spec.name!r} is not registered" + (f" (close matches: {', '.join(close)})"
                                                           if close else "") \
            + "; a model of your own: name = \"package.module:callable\""
    for key in MODEL_SET:
        if key in spec.kwargs:
            return f"key {key!r} is not a plan setting here: {MODEL_SET[key]}"
    for dataset in {d.dataset: d for d in datasets}.values():
        io = _in_out(dataset)
        kwargs = {**io, **models.sized_arguments(spec.name, dataset.size), **spec.kwargs}
        key = repr((spec.name, sorted(kwargs.items())))
        if key not in cache:
            cache[key] = _build(spec.name, kwargs, user)
        model = cache[key]
        if isinstance(model, str):
            return model
        if user:
            if (key, dataset.size) not in cache:
                try:
                    models.check_forward(model, (io["in_channels"], dataset.size, dataset.size))
                    cache[key, dataset.size] = None
                except models.UserModelError as err:
                    cache[key, dataset.size] = f"name {spec.name!r}: {err.detail}"
            if cache[key, dataset.size] is not None:
                return cache[key, dataset.size]
            if problem := _levels_problem(spec, model):
                return problem
        top = getattr(model, "prune_level", None)
        if spec.levels and (top is None or not getattr(model, "deep_supervision", False)):
            return "'levels' needs a deep-supervision model with pruning levels"
        bad = [lv for lv in spec.levels if not 1 <= lv <= top]
        if bad:
            return f"levels {bad} are not within 1..{top}"
        if spec.pruned:
            pruning = (spec.prune_ratio, spec.prune_importance, spec.prune_scope)
            if (key, pruning) not in cache:
                try:
                    models.prune_channels(model, spec.prune_ratio, importance=spec.prune_importance,
                                          scope=spec.prune_scope)
                    cache[key, pruning] = None
                except models.ModelConfigError as err:
                    cache[key, pruning] = str(err)
            if cache[key, pruning] is not None:
                return cache[key, pruning]
            if spec.prune_mode == "init" and not described(model):
                return (f"prune_mode 'init' rebuilds the pruned widths from lfubench's channel description, "
                        f"which {spec.name!r} has not (Torch-Pruning prunes it in place): use prune_mode "
                        "'finetune'")
    return None


def _build(name: str, kwargs: dict, user: bool):
    """The model ``name`` built with ``kwargs``, or the line that says why it cannot be: for a
    user's model ``name '...': ...`` (a ``prune_level`` its callable does not take is refused as
    a model without pruning levels)."""
    if user and "prune_level" in kwargs:
        try:
            takes = models.model_arguments(name)
        except models.UserModelError as err:
            return f"name {name!r}: {err.detail}"
        if takes is not None and "prune_level" not in takes:
            return (f"name {name!r}: prune_level needs a model with pruning levels, and {name!r} has none "
                    f"(its arguments: {', '.join(takes)})")
    try:
        return models.create_model(name, **kwargs)
    except models.UserModelError as err:
        return f"name {name!r}: {err.detail}"
    except models.ModelConfigError as err:
        return str(err)


def _levels_problem(spec: ModelSpec, model) -> str | None:
    """Why a user's ``model`` cannot take the entry's ``prune_level`` or ``levels``: it has no
    pruning levels (an integer ``prune_level`` and ``load_from_full``, as the zoo's have)."""
    asked = [k for k, v in (("prune_level", "prune_level" in spec.kwargs), ("levels", spec.levels)) if v]
    has_levels = isinstance(getattr(model, "prune_level", None), int) and callable(
        getattr(model, "load_from_full", None))
    if asked and not has_levels:
        verb = "needs" if len(asked) == 1 else "need"
        return (f"name {spec.name!r}: {' and '.join(asked)} {verb} a model with pruning levels (an integer "
                "prune_level and load_from_full), and it has none")
    return None


def check_devices(loaded, devices: str | None, *, cuda_devices: int | None = None) -> None:
    """Refuse to start a plan or sweep study (``loaded``: a :class:`Plan` or
    :class:`~studies.sweepfile.SweepStudy`, already valid) that this machine cannot run as asked,
    in one line: ``[measure] device = "cuda"`` where torch sees no CUDA device (the line gives
    the ``--set`` that moves it to the CPU, with ``train.precision=fp32`` where it trains in
    fp16, which is CUDA only), a ``[measure] runtimes`` entry whose package is not installed
    here (the line names the extra: :func:`bench.runtimes.check_runtimes`), ``--devices`` with
    a plan measured on the CPU (its items would run on the CPU), or ``--devices`` beyond the
    machine's GPUs. Called by ``lfubench bench`` and ``lfubench sweep`` before any work;
    loading alone does not check the machine (a run's plan is read back for reports anywhere).

    ``cuda_devices``: the CUDA devices torch sees (default: ``torch.cuda.device_count()``,
    0 where CUDA is not available)."""
    import torch

    if cuda_devices is None:
        cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    where, device = loaded.path, loaded.measure.device
    if device == "cuda" and not cuda_devices:
        moves = ["measure.device=cpu"]
        if loaded.train.precision == "fp16":  # refused on the CPU when the plan is read
            moves.append("train.precision=fp32")
        built = f"with CUDA {torch.version.cuda}" if torch.version.cuda else "without CUDA"
        raise PlanError(f"{where}: [measure] device is 'cuda', but torch sees no CUDA device here (torch "
                        f"{torch.__version__}, built {built}); to run it on the CPU: "
                        + " ".join(f"--set {m}" for m in moves))
    try:  # a runtime whose package is missing here, in one line naming the extra to install
        check_runtimes(loaded.measure.runtimes, loaded.measure.quantize, device)
    except RuntimeUnavailable as err:
        raise PlanError(f"{where}: [measure] runtimes: {err}") from None
    if not devices:
        return
    if device != "cuda":
        raise PlanError(f"{where}: --devices {devices} names GPUs, but [measure] device is {device!r}: the "
                        "items would run on the CPU; add --set measure.device=cuda, or leave out --devices "
                        "(--workers N for several CPU workers)")
    beyond = [d.strip() for d in devices.split(",") if d.strip().partition(":")[2].isdigit()
              and int(d.strip().partition(":")[2]) >= cuda_devices]
    if beyond:
        raise PlanError(f"{where}: --devices {devices}: this machine has {cuda_devices} CUDA device(s) "
                        f"(cuda:0 to cuda:{cuda_devices - 1}); {', '.join(beyond)} is not one")


def read_toml(path: Path, what: str) -> dict:
    """The table of a TOML file; a missing or malformed file raises :class:`PlanError` naming it."""
    if not path.is_file():
        raise PlanError(f"{path}: {what} file not found")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise PlanError(f"{path}: not valid TOML: {err}") from None


def read_run_sections(raw: dict, where: str, base: Path, problems: list[str]
                      ) -> tuple[TrainConfig | None, MeasureSpec | None, list[DatasetSpec]]:
    """The sections a plan shares with a sweep study file: ``[train]``, ``[measure]`` and
    ``[[datasets]]``, read and checked; one line per problem appended to ``problems``.

    Relative dataset roots are resolved against ``base``."""
    train = train_section(raw.get("train", {}), where, problems)
    measure = read_section(MeasureSpec, raw.get("measure", {}), f"{where}: [measure]", problems)
    if train and measure and measure.device == "cpu" and train.precision == "fp16":
        problems.append(f"{where}: [train]: precision 'fp16' needs CUDA, and [measure].device is 'cpu' "
                        "(use fp32 or bf16 on the CPU)")
    if measure and measure.device == "cpu" and "tensorrt" in measure.runtimes:
        problems.append(f"{where}: [measure]: runtimes 'tensorrt' runs on NVIDIA GPUs only, and device is "
                        "'cpu' (set device = \"cuda\", or leave tensorrt out)")

    datasets: list[DatasetSpec] = []
    raw_datasets = raw.get("datasets", [])
    if not raw_datasets:
        problems.append(f"{where}: no [[datasets]]")
    for k, d in enumerate(raw_datasets if isinstance(raw_datasets, list) else []):
        at = f"{where}: datasets[{k}]" + (f" ({d['name']})" if isinstance(d, dict) and "name" in d else "")
        spec = read_section(DatasetSpec, d, at, problems)
        if spec is None:
            continue
        if spec.name in {s.name for s in datasets}:
            problems.append(f"{at}: duplicate dataset name {spec.name!r}")
        if spec.phantom:
            if spec.root:
                problems.append(f"{at}: 'root' is for real datasets; kind {spec.kind!r} generates its cases")
            left = spec.cases - max(1, round(spec.test * spec.cases)) if spec.test > 0 else spec.cases
            if spec.folds and left < spec.folds:
                problems.append(f"{at}: {spec.cases} cases leave {left} after the test split, fewer than "
                                f"folds = {spec.folds}")
        else:
            phantom_only = [k for k in PHANTOM_KEYS if k in d]
            if phantom_only:
                problems.append(f"{at}: {', '.join(phantom_only)} only apply to phantom kinds")
            if not spec.root:
                problems.append(f"{at}: kind {spec.kind!r} needs a 'root' folder")
            else:
                resolve_root(spec, base)
                if not Path(spec.root).is_dir():
                    problems.append(f"{at}: root folder {spec.root} does not exist")
                else:  # a folder that describes itself (nnunet: dataset.json) is read now
                    try:
                        dataset_for(spec.kind, spec.root)
                    except LfubenchError as err:
                        problems += [f"{at}: {line}" for line in str(err).splitlines()]
                        continue
        datasets.append(spec)
    return train, measure, datasets


def load_plan(path: str | Path, base_dir: str | Path | None = None, overrides: Sequence[str] = ()) -> Plan:
    """Read and validate a plan, with ``overrides`` (``KEY=VALUE``) applied first; raise
    :class:`PlanError` listing every problem.

    ``path`` is a plan file or the name of a shipped plan (``default``, ``lits2017``, ...; see
    :mod:`studies.shipped`). Relative dataset roots are resolved against ``base_dir`` (default:
    the plan's folder, or the working folder for a shipped plan, which is logged).
    """
    path, is_shipped = locate(path, "plan")
    where = str(path)
    raw = apply_overrides(read_toml(path, "plan"), overrides, tables=("train", "measure", "tune"))
    base = Path(base_dir) if base_dir else base_folder(path, is_shipped)
    problems: list[str] = []
    for key in raw:
        if key not in TOP_KEYS:
            problems.append(unknown_key(where, key, TOP_KEYS))

    name = raw.get("name", path.stem)
    description = raw.get("description", "")
    for key, value in (("name", name), ("description", description)):
        if not isinstance(value, str):
            problems.append(f"{where}: {key} must be a string, got {value!r}")
    seeds = raw.get("seeds", [0])
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool)
                                                      for s in seeds)):
        problems.append(f"{where}: seeds must be a non-empty list of integers, got {seeds!r}")
        seeds = [0]
    elif len(set(seeds)) != len(seeds):
        problems.append(f"{where}: seeds has duplicates: {seeds}")

    train, measure, datasets = read_run_sections(raw, where, base, problems)
    tune = tune_section(raw.get("tune"), where, problems)

    specs: list[ModelSpec] = []
    raw_models = raw.get("models", [])
    if not raw_models:
        problems.append(f"{where}: no [[models]]")
    for k, m in enumerate(raw_models if isinstance(raw_models, list) else []):
        at = f"{where}: models[{k}]"
        spec = read_section(ModelSpec, m, at, problems)
        if spec is None:
            continue
        if spec.label in {s.label for s in specs}:
            problems.append(f"{at}: duplicate model label {spec.label!r}")
        if problem := check_model(spec, datasets):
            problems.append(f"{at}: {problem}")
        specs.append(spec)

    if problems:
        raise PlanError(f"{len(problems)} problem(s) in plan:\n" + "\n".join(problems))
    return Plan(name, description, str(path), seeds, train, measure, datasets, specs, tune)
