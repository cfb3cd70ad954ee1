"""Sweep study files (``studies/sweeps/*.toml``): the sections of a plan (``[train]``,
``[measure]``, one ``[[datasets]]`` entry; the same schema and checks, :mod:`studies.plan`),
plus the search space, the objectives and the sampler, validated completely before any
work starts. A small study::

    name = "smoke"
    seed = 0                 # the training seed of every trial
    n_trials = 4             # trials in all, across workers and restarts
    # timeout = 600          # seconds each worker keeps starting new trials

    [train]                  # as in a plan
    epochs = 1
    [measure]
    device = "cpu"
    [[datasets]]             # exactly one
    name = "lits"
    kind = "phantom-lits"

    [search]                 # studies.space.SearchSpec
    family = ["lfunet", "unet"]
    base_width = [4, 8]
    groups = [1, 4]          # LFU-Net only, and only values dividing the width
    prune_ratio = {low = 0.0, high = 0.5, step = 0.25}

    [objectives]             # studies.objectives.ObjectivesSpec
    maximize = ["dice:mean"]
    minimize = ["params"]
    constraints = ["params <= 100_000"]

    [sampler]                # SamplerSpec
    name = "nsga2"
    seed = 0

    # [pruner]               # PrunerSpec: one objective only
    # name = "median"        # none (default) | median | halving
    # n_startup_trials = 4

Every model the search space can draw is built, and trial-pruned where it is pruned, as a
plan's models are (:func:`check_space`), so a trial that could not be built is refused here
rather than failing at run time. Every problem is one line naming the file and the key.
``--set`` overrides settings as for plans (``n_trials=20``, ``sampler.name=tpe``,
``search.base_width=[4,8,16]``, ``datasets.lits.cases=6``), and a per-family setting as
``search.FAMILY.KEY=VALUE`` (``search.lfunet.groups=[4,8]``).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lfubench import models
from lfubench.bench.datasets import get_dataset
from lfubench.bench.train import TrainConfig

from .objectives import MAXIMIZE, Objectives, read_objectives
from .plan import Plan, _value, apply_overrides, check_model, read_run_sections, read_toml
from .schema import (
    TRAIN_SKIP,
    DatasetSpec,
    MeasureSpec,
    ModelSpec,
    PlanError,
    read_section,
    section_dict,
    unknown_key,
)
from .shipped import base_folder, locate
from .space import KEYS, Space, families, read_space

TOP_KEYS = ("name", "description", "seed", "n_trials", "timeout", "train", "measure", "datasets", "search",
            "objectives", "sampler", "pruner")

#: tables whose keys --set may name as TABLE.KEY (and search.FAMILY.KEY)
TABLES = ("train", "measure", "search", "objectives", "sampler", "pruner")

#: the samplers a study may name
SAMPLERS = ("nsga2", "tpe", "gp")

#: the pruners a study may name
PRUNERS = ("none", "median", "halving")


@dataclass
class SweepSettings:
    """The top-level settings of a study file (besides ``name`` and ``description``)."""

    seed: int = field(default=0, metadata={"doc": "training seed of every trial"})
    n_trials: int | None = field(default=None, metadata={
        "min": 1, "doc": "trials in all, across workers and restarts"})
    timeout: float | None = field(default=None, metadata={
        "min": 0, "exclusive": True, "doc": "seconds after which a worker starts no new trial"})


@dataclass
class SamplerSpec:
    """``[sampler]``: the sampler, always named and seeded (lfubench never relies on Optuna's
    default, which changed between its versions for several objectives)."""

    name: str | None = field(default=None, metadata={
        "choices": SAMPLERS, "doc": "default: nsga2 for several objectives, tpe for one"})
    seed: int = field(default=0, metadata={"doc": "the sampler's random seed"})
    population_size: int = field(default=8, metadata={
        "min": 2, "doc": "NSGA-II: trials per generation (the first generation is random)"})
    n_startup_trials: int = field(default=5, metadata={
        "min": 0, "doc": "TPE and GP: random trials before the model is used"})


@dataclass
class PrunerSpec:
    """``[pruner]``: stop poor trials early, judged by their validation Dice after each
    validation of the main training run (every ``[train].val_every`` epochs; the step is the
    epoch). Single-objective studies only: Optuna's ``Trial.report`` and ``should_prune`` raise
    for several objectives. Every setting is passed to Optuna explicitly (neither pruner draws
    random numbers, so neither takes a seed)."""

    name: str = field(default="none", metadata={
        "choices": PRUNERS, "doc": "none, median (Optuna's MedianPruner) or halving (its "
                                   "SuccessiveHalvingPruner)"})
    n_startup_trials: int = field(default=5, metadata={
        "min": 0, "doc": "median: trials completed before any is pruned"})
    n_warmup_steps: int = field(default=0, metadata={
        "min": 0, "doc": "median: a trial is not pruned before this epoch"})
    min_resource: int = field(default=1, metadata={
        "min": 1, "doc": "halving: epochs every trial trains before the first rung"})
    reduction_factor: int = field(default=3, metadata={
        "min": 2, "doc": "halving: rung k is at min_resource x reduction_factor^k epochs; the best "
                         "1/reduction_factor of the trials there go on"})


@dataclass
class SweepStudy:
    name: str
    description: str
    path: str
    settings: SweepSettings
    train: TrainConfig
    measure: MeasureSpec
    dataset: DatasetSpec
    space: Space
    objectives: Objectives
    sampler: SamplerSpec
    pruner: PrunerSpec = field(default_factory=PrunerSpec)

    def plan(self) -> Plan:
        """The plan whose item pipeline runs each trial (no models: the sampler names them)."""
        return Plan(self.name, self.description, self.path, [self.settings.seed], self.train, self.measure,
                    [self.dataset], [])

    def to_dict(self) -> dict:
        """The effective study, every default filled in, as a TOML-able table."""
        return {"name": self.name, "description": self.description, **section_dict(self.settings),
                "train": section_dict(self.train, TRAIN_SKIP), "measure": section_dict(self.measure),
                "datasets": [section_dict(self.dataset)], "search": self.space.to_toml(),
                "objectives": self.objectives.to_toml(), "sampler": section_dict(self.sampler),
                "pruner": section_dict(self.pruner)}


def apply_family_overrides(raw: dict, overrides: Sequence[str]) -> tuple[dict, list[str], list[str]]:
    """Apply the ``search.FAMILY.KEY=VALUE`` overrides to (a copy of) ``raw``; return it, the
    other overrides, and one line per malformed one. The key and value are checked when
    ``[search]`` is read, as if the file said them."""
    rest, problems, found = [], [], []
    for text in overrides:
        key, sep, value = text.partition("=")
        parts = key.strip().split(".")
        if not sep or parts[0] != "search" or len(parts) < 3:
            rest.append(text)
        elif len(parts) != 3 or not all(parts) or parts[1] in KEYS:
            problems.append(f"--set {text!r}: use search.KEY=VALUE or search.FAMILY.KEY=VALUE (a setting "
                            "of one family, as in a [search.FAMILY] table)")
        elif parts[1] not in models.list_models() and not models.is_reference(parts[1]):
            close = difflib.get_close_matches(parts[1], families(), n=1)
            problems.append(f"--set {text!r}: {parts[1]!r} is not a model family"
                            + (f" (did you mean {close[0]!r}?)" if close else "")
                            + f"; families: {', '.join(families())}")
        else:
            found.append((parts[1], parts[2], _value(value.strip())))
    if found:
        raw = {**raw, "search": dict(raw.get("search") or {})}
        for family, key, value in found:
            table = raw["search"].get(family, {})
            raw["search"][family] = {**(table if isinstance(table, dict) else {}), key: value}
    return raw, rest, problems


def check_space(space: Space, dataset: DatasetSpec, where: str, problems: list[str]) -> None:
    """Build (and, where it is pruned, trial-prune) every model ``space`` can draw for
    ``dataset``, by the check of a plan's models (:func:`studies.plan.check_model`), each
    configuration once; one line per problem, naming the family and the settings that all its
    failing models share, with how many of the family's models fail so."""
    cache: dict = {}
    for family in space.families:
        specs = space.combinations(family)
        failing: dict[str, list[ModelSpec]] = {}
        for spec in specs:
            if problem := check_model(spec, [dataset], cache):
                failing.setdefault(problem, []).append(spec)
        for problem, bad in failing.items():
            settings = [{**s.kwargs, **{k: getattr(s, k) for k in KEYS[1:] if k not in s.kwargs
                                        and space.param(family, k) is not None}} for s in bad]
            shared = [f"{k}={v!r}" for k, v in settings[0].items() if all(s.get(k) == v for s in settings)]
            problems.append(f"{where}: [search] {' '.join([family, *shared])}: {problem} ({len(bad)} of "
                            f"{len(specs)} of {family}'s combinations)")


def load_study(path: str | Path, overrides: Sequence[str] = ()) -> SweepStudy:
    """Read and validate a study file, with ``overrides`` (``KEY=VALUE``) applied first; raise
    :class:`~studies.schema.PlanError` listing every problem, one line each."""
    path, is_shipped = locate(path, "study")
    where = str(path)
    raw, rest, bad = apply_family_overrides(read_toml(path, "study"), overrides)
    try:
        raw = apply_overrides(raw, rest, tables=TABLES)
    except PlanError as err:
        bad = str(err).splitlines()[1:] + bad
    if bad:
        raise PlanError(f"{len(bad)} problem(s) in --set:\n" + "\n".join(bad))
    problems: list[str] = []
    for key in raw:
        if key not in TOP_KEYS:
            problems.append(unknown_key(where, key, TOP_KEYS) + (
                " (a sweep draws its models from [search])" if key in ("models", "seeds") else ""))
    name = raw.get("name", path.stem)
    description = raw.get("description", "")
    for key, value in (("name", name), ("description", description)):
        if not isinstance(value, str):
            problems.append(f"{where}: {key} must be a string, got {value!r}")
    top = {k: raw[k] for k in ("seed", "n_trials", "timeout") if k in raw}
    settings = read_section(SweepSettings, top, where, problems)
    if settings and settings.n_trials is None and settings.timeout is None:
        problems.append(f"{where}: give n_trials, timeout or both (the study's budget)")
    train, measure, datasets = read_run_sections(raw, where, base_folder(path, is_shipped), problems)
    if len(datasets) > 1:
        problems.append(f"{where}: a sweep takes one [[datasets]] entry (its objectives name its regions), "
                        f"got {len(datasets)}: {', '.join(d.name for d in datasets)}")
    space = read_space(raw.get("search"), where, problems)
    if space is not None and len(datasets) == 1:
        check_space(space, datasets[0], where, problems)
    regions = get_dataset(datasets[0].dataset).regions if datasets else ()
    objectives = read_objectives(raw.get("objectives"), where, regions, problems,
                                 measure.runtimes if measure is not None else None)
    sampler = read_section(SamplerSpec, raw.get("sampler", {}), f"{where}: [sampler]", problems)
    if sampler and objectives:
        if sampler.name is None:
            sampler = dataclasses.replace(sampler, name="nsga2" if len(objectives.names) > 1 else "tpe")
    pruner = read_section(PrunerSpec, raw.get("pruner", {}), f"{where}: [pruner]", problems)
    if pruner and objectives and pruner.name != "none":
        names = objectives.names
        if len(names) > 1:
            problems.append(f"{where}: [pruner] name {pruner.name!r}: pruners need one objective, the study "
                            f"has {len(names)} ({', '.join(names)}); Optuna's Trial.report and should_prune "
                            "raise for multi-objective studies (keep one objective, or name = \"none\")")
        elif objectives.directions[0] != MAXIMIZE:
            problems.append(f"{where}: [pruner] name {pruner.name!r}: a pruner judges trials by validation "
                            f"Dice, which is maximized, but the objective {names[0]} is minimized "
                            "(name = \"none\", or maximize a dice score)")
    if problems:
        raise PlanError(f"{len(problems)} problem(s) in study:\n" + "\n".join(problems))
    return SweepStudy(name, description, str(path), settings, train, measure, datasets[0], space, objectives,
                      sampler, pruner)
