"""The plan schema: one dataclass per section, each setting declared once with its type,
range and default, and one validator that reads a raw TOML table into it.

Sections and where their settings are declared:

- ``[train]``: :class:`bench.train.TrainConfig` (its field types, defaults and ``min``
  metadata); ``seed``, ``device`` and ``progress`` are set by the pipeline and rejected here
  (:data:`PIPELINE_SET` says where each belongs);
- ``[measure]``: :class:`MeasureSpec`;
- ``[tune]`` (optional): :class:`TuneSpec`;
- ``[[datasets]]``: :class:`DatasetSpec`;
- ``[[models]]``: :class:`ModelSpec` (declared fields; every other key is a constructor
  argument of the model, checked by building it).

Field metadata understood by :func:`read_section`: ``min``/``max`` (inclusive unless
``exclusive``), ``choices``, ``multiple_of``, ``length`` (lists), ``each_min`` (list items;
strict with ``exclusive``), ``distinct`` (no repeated list item), ``doc`` (one line for
messages). Code below the schema receives these dataclasses and never reads a raw plan
dictionary.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from lfubench.bench.datasets import KINDS, PHANTOM_PREFIX, dataset_for, get_dataset
from lfubench.bench.errors import LfubenchError
from lfubench.bench.latency import PRECISIONS, Timing
from lfubench.bench.metrics import EMPTY_CONVENTIONS
from lfubench.bench.runtimes import QUANTIZE, RUNTIMES
from lfubench.bench.train import TrainConfig
from lfubench.models.pruning import IMPORTANCE as PRUNE_IMPORTANCE
from lfubench.models.pruning import SCOPES as PRUNE_SCOPES

log = logging.getLogger(__name__)

#: what a model entry's prune_mode may be
PRUNE_MODES = ("finetune", "init")


class PlanError(LfubenchError):
    """A plan failed validation; the message lists every problem, one line each."""


#: keys of [train] that the pipeline sets itself, and where the user sets them instead
PIPELINE_SET = {
    "seed": "list the seeds at the top level (seeds = [0, 1, 2]); each item trains with its own",
    "device": "set [measure].device: training, evaluation and measurement run on that device",
    "progress": "progress bars are a command-line switch (lfubench bench --no-progress)",
}

#: [train] keys of earlier versions, and what replaced them
RETIRED = {
    "amp": "replaced by precision = \"fp32\" | \"bf16\" | \"fp16\" (default: bf16 on CUDA, fp32 on the CPU)",
}


@dataclass
class MeasureSpec:
    """How latency and memory are measured for every item and pruning level.

    With ``int8`` in ``quantize``, every runtime of ``runtimes`` that runs int8 times the model
    quantized after training (calibrated on training slices of the item's dataset), and each of
    them that quantizes on the CPU (:data:`bench.quantize.SCORED_RUNTIMES`: ``onnxruntime``, its
    QDQ model on the CPU execution provider; ``openvino``, its NNCF model) also scores it on the
    test cases by the same evaluation as the model as trained, at every level and stage (results
    rows with ``quantize`` ``int8`` and that ``runtime``), for the int8 gate of the report's
    deployment table. A plan whose runtimes include neither scores no int8 model.
    """

    device: str = field(default="cpu", metadata={"choices": ("cpu", "cuda")})
    batch_sizes: list[int] = field(default_factory=lambda: [1], metadata={"each_min": 1, "length": (1, None)})
    precision: list[str] = field(default_factory=lambda: ["fp32"],
                                 metadata={"choices": tuple(PRECISIONS), "length": (1, None)})
    channels_last: bool = True
    warmup: int = field(default=Timing.max_warmup, metadata={
        "min": Timing.min_warmup, "doc": "most warm-up iterations (warm-up stops earlier once stable)"})
    iterations: int = field(default=Timing.max_iters, metadata={
        "min": Timing.min_iters, "doc": "most timed iterations"})
    threads: int | None = field(default=None, metadata={"min": 1})
    runtimes: list[str] = field(default_factory=lambda: ["torch"], metadata={
        "choices": RUNTIMES, "length": (1, None),
        "doc": "inference runtimes to time (bench.runtimes); the tables show torch's"})
    quantize: list[str] = field(default_factory=lambda: ["none"], metadata={
        "choices": QUANTIZE, "length": (1, None),
        "doc": "weights as trained (none) and/or int8 post-training quantized (ONNX-based runtimes)"})
    energy: bool = field(default=False, metadata={
        "doc": "read the energy counter after each measured loop (adds at least 1 s per row)"})

    def timing(self) -> Timing:
        return Timing(max_warmup=self.warmup, max_iters=self.iterations)


@dataclass
class DatasetSpec:
    """One dataset of a plan: a real folder (``lits``, ``brats``) or generated phantoms."""

    name: str = field(metadata={"doc": "its name in item ids and tables"})
    kind: str = field(metadata={"choices": tuple(KINDS)})
    root: str | None = field(default=None, metadata={"doc": "the dataset folder (real kinds)"})
    cases: int = field(default=12, metadata={"min": 3, "phantom": True})
    shape: list[int] | None = field(default=None, metadata={
        "length": (3, 3), "each_min": 8, "phantom": True, "doc": "X, Y, Z voxels of each phantom"})
    phantom_seed: int = field(default=0, metadata={"phantom": True})
    size: int | None = field(default=None, metadata={
        "min": 16, "multiple_of": 16, "doc": "in-plane network input; default: the dataset's"})
    split_seed: int = 0
    test: float = field(default=0.2, metadata={"min": 0, "max": 1, "exclusive_max": True})
    folds: int | None = field(default=None, metadata={
        "min": 2, "doc": "cross-validation folds; default min(5, cases left after the test split)"})
    empty: str | None = field(default=None, metadata={
        "choices": EMPTY_CONVENTIONS, "doc": "empty-mask rule; default: the dataset's"})

    def __post_init__(self) -> None:
        """Fill the defaults that come from the dataset table."""
        if self.kind in KINDS:
            info = get_dataset(self.kind)
            if self.size is None:
                self.size = info.default_size
            if self.empty is None:
                self.empty = info.empty
            if self.phantom and self.shape is None:
                self.shape = list(info.phantom_shape)

    @property
    def dataset(self) -> str:
        """The dataset's kind: ``"lits"``, ``"brats"`` (the keys of :data:`bench.datasets.DATASETS`),
        or for a folder that describes itself (``nnunet``: its ``dataset.json``) the folder's own kind
        (:func:`bench.datasets.dataset_for`, which registers it)."""
        if self.phantom or not self.root:
            return KINDS[self.kind]
        return dataset_for(self.kind, self.root).kind

    @property
    def phantom(self) -> bool:
        return self.kind.startswith(PHANTOM_PREFIX)


@dataclass
class ModelSpec:
    """One model of a plan; keys other than these fields are constructor arguments."""

    name: str = field(metadata={
        "doc": "a registered model or preset (lfubench zoo), or a user's package.module:callable"})
    label: str | None = field(default=None, metadata={
        "doc": "its name in tables; default from the name and arguments"})
    levels: list[int] = field(default_factory=list, metadata={
        "each_min": 1, "doc": "pruning levels to evaluate (deep-supervision models)"})
    prune_ratio: float = field(default=0.0, metadata={
        "min": 0, "max": 0.9, "doc": "fraction of channels removed per layer (models.prune_channels)"})
    prune_importance: str = field(default="l1", metadata={"choices": PRUNE_IMPORTANCE})
    prune_scope: str = field(default="local", metadata={"choices": PRUNE_SCOPES})
    prune_mode: str = field(default="finetune", metadata={
        "choices": PRUNE_MODES, "doc": "finetune: train, prune, fine-tune; init: train the pruned widths "
                                       "from scratch"})
    finetune_epochs: int | None = field(default=None, metadata={
        "min": 0, "doc": "fine-tuning budget after pruning; default a quarter of [train]'s (at least 1)"})
    finetune_lr: float | None = field(default=None, metadata={
        "min": 0, "exclusive": True, "doc": "fine-tuning's peak learning rate; default [train]'s"})
    kwargs: dict = field(default_factory=dict, metadata={"extra": True})

    def __post_init__(self) -> None:
        if self.label is None:
            self.label = self.name + "".join(f" {k}={v}" for k, v in self.kwargs.items())
            if self.pruned:
                self.label += f" r={self.prune_ratio:g} {self.prune_importance}-{self.prune_mode}"
                if self.prune_scope != "local":
                    self.label += f" {self.prune_scope}"

    @property
    def pruned(self) -> bool:
        """Whether channels are pruned (``prune_ratio > 0``)."""
        return self.prune_ratio > 0


@dataclass
class TuneSpec:
    """``[tune]``: the hyperparameter search every model of a plan gets alike (:mod:`studies.tune`).

    Each listed setting is searched over its values (a grid over every list given); every trial
    trains the item's model from the same initial weights for the same budget (``steps``), and
    the values whose trial scores the best validation Dice (the training folds' validation cases,
    never the test cases) train the delivered model at the ``[train]`` budget. A setting not
    listed keeps its ``[train]`` value.
    """

    lr: list[float] | None = field(default=None, metadata={
        "length": (1, None), "each_min": 0, "exclusive": True, "distinct": True,
        "doc": "peak learning rates to try"})
    batch_size: list[int] | None = field(default=None, metadata={
        "length": (1, None), "each_min": 1, "distinct": True, "doc": "batch sizes to try"})
    weight_decay: list[float] | None = field(default=None, metadata={
        "length": (1, None), "each_min": 0, "distinct": True, "doc": "AdamW weight decays to try"})
    steps: int | None = field(default=None, metadata={
        "min": 1, "doc": "optimizer steps per trial; default: the [train] budget (the winning trial is "
                         "then kept as the delivered model)"})

    #: the searchable settings (fields of bench.train.TrainConfig), in grid order
    SEARCHED: typing.ClassVar[tuple[str, ...]] = ("lr", "batch_size", "weight_decay")

    def __post_init__(self) -> None:
        for name in ("lr", "weight_decay"):  # TOML integers among the numbers
            if getattr(self, name) is not None:
                setattr(self, name, [float(v) for v in getattr(self, name)])

    @property
    def search(self) -> dict[str, list]:
        """The settings searched and their values, in :attr:`SEARCHED` order."""
        return {k: list(getattr(self, k)) for k in self.SEARCHED if getattr(self, k) is not None}


def tune_section(raw, where: str, problems: list[str]) -> TuneSpec | None:
    """``[tune]`` read into a :class:`TuneSpec` (None when absent: no search); a section that
    lists no setting to search is one problem."""
    if raw is None:
        return None
    before = len(problems)
    spec = read_section(TuneSpec, raw, f"{where}: [tune]", problems)
    if spec is not None and not spec.search:
        problems.append(f"{where}: [tune]: nothing to search; list values of at least one of "
                        f"{', '.join(TuneSpec.SEARCHED)} (e.g. lr = [0.001, 0.01])")
    return spec if len(problems) == before else None


#: model keys the pipeline sets from the dataset
MODEL_SET = {
    "in_channels": "the dataset sets it (lits: 3 adjacent slices, brats: 4 modalities)",
    "num_classes": "the dataset sets it (lits: 3, brats: 4)",
}


# --- reading a section ------------------------------------------------------------------------


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0]).removeprefix('an ').removeprefix('a ')}s"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a table",
            type(None): "absent"}.get(tp, str(tp))


def _conforms(value, tp) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in typing.get_args(tp))
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, typing.get_args(tp)[0]) for v in value)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is type(None):
        return value is None
    return isinstance(value, tp)


def _range_problem(value, meta: dict) -> str | None:
    """What is wrong with a value of the right type, or None."""
    items = value if isinstance(value, list) else [value]
    if "length" in meta and isinstance(value, list):
        lo, hi = meta["length"]
        if len(value) < lo or (hi is not None and len(value) > hi):
            want = f"exactly {lo}" if lo == hi else f"at least {lo}"
            return f"must have {want} item(s), got {len(value)}"
    if "choices" in meta:
        bad = [v for v in items if v not in meta["choices"]]
        if bad:
            return f"{bad[0]!r} is not one of {', '.join(map(str, meta['choices']))}"
    if "each_min" in meta:
        strict = isinstance(value, list) and meta.get("exclusive")
        bad = [v for v in items if (v <= meta["each_min"] if strict else v < meta["each_min"])]
        if bad:
            return f"items must be {'>' if strict else '>='} {meta['each_min']}, got {bad[0]}"
    if meta.get("distinct") and isinstance(value, list) and len(set(value)) != len(value):
        return f"has duplicates: {value}"
    if isinstance(value, list) or value is None or isinstance(value, str | bool):
        return None
    if "min" in meta and (value <= meta["min"] if meta.get("exclusive") else value < meta["min"]):
        return f"must be {'>' if meta.get('exclusive') else '>='} {meta['min']}, got {value}"
    if "max" in meta and (value >= meta["max"] if meta.get("exclusive_max") else value > meta["max"]):
        return f"must be {'<' if meta.get('exclusive_max') else '<='} {meta['max']}, got {value}"
    if "multiple_of" in meta and value % meta["multiple_of"]:
        return f"must be a multiple of {meta['multiple_of']}, got {value}"
    return None


def unknown_key(where: str, key: str, allowed) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f"{where}: unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def read_section(cls, raw, where: str, problems: list[str], *, rejected: dict[str, str] | None = None,
                 skip: tuple[str, ...] = ()):
    """Read the TOML table ``raw`` into the dataclass ``cls``; append one line per problem
    (unknown key, rejected key, missing key, wrong type, out of range) to ``problems``.

    Returns the instance, or None when a problem prevents building it. Fields named in
    ``skip`` are not settable from the plan (their defaults are used). A field whose metadata
    has ``extra`` collects every undeclared key (model constructor arguments).
    """
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a table, got {raw!r}")
        return None
    rejected = rejected or {}
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
    extra = next((n for n, f in fields.items() if f.metadata.get("extra")), None)
    values: dict = {}
    before = len(problems)
    for key, value in raw.items():
        if key in rejected:
            problems.append(f"{where}: key {key!r} is not a plan setting here: {rejected[key]}")
        elif key not in fields or key == extra:
            if extra is not None:
                values.setdefault(extra, {})[key] = value
            else:
                problems.append(unknown_key(where, key, fields))
        else:
            meta = fields[key].metadata
            if not _conforms(value, hints[key]):
                problems.append(f"{where}: {key} must be {_type_name(hints[key])}, got {value!r}")
                continue
            bad = _range_problem(value, meta)
            if bad:
                problems.append(f"{where}: {key} {bad}")
                continue
            values[key] = float(value) if hints[key] is float else value
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in values:
            problems.append(f"{where}: missing key {name!r}")
    if len(problems) > before:
        return None
    return cls(**values)


def section_dict(obj, skip: tuple[str, ...] = ()) -> dict:
    """The settings of a section as a TOML-able table (None values left out)."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name in skip or value is None:
            continue
        if f.metadata.get("extra"):
            out.update(value)
        else:
            out[f.name] = list(value) if isinstance(value, tuple | list) else value
    return out


def resolve_root(spec: DatasetSpec, base: Path) -> None:
    """Make a relative dataset root absolute against ``base`` (the plan's folder, or the working
    folder for a shipped plan), and log where it points."""
    if spec.root and not Path(spec.root).is_absolute():
        resolved = str((base / spec.root).resolve())
        log.info("dataset %s: relative root %r resolved against %s: %s", spec.name, spec.root, base, resolved)
        spec.root = resolved


#: [train] fields a plan may not set
TRAIN_SKIP = tuple(PIPELINE_SET)


def train_section(raw, where: str, problems: list[str]) -> TrainConfig | None:
    """``[train]`` read into a :class:`bench.train.TrainConfig` (pipeline-set fields rejected)."""
    return read_section(TrainConfig, raw, f"{where}: [train]", problems, rejected={**PIPELINE_SET, **RETIRED},
                        skip=TRAIN_SKIP)
