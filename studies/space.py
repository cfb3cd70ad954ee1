"""The search space of a sweep (``[search]`` of a study file): which model families, widths,
groups, pruning levels and channel-pruning settings a trial may take, and how a trial's
parameters become a :class:`studies.schema.ModelSpec`.

Each setting of the space is declared once in :class:`SearchSpec` (its kind, range and
whether it is a model constructor argument or a :class:`~studies.schema.ModelSpec` field).
In the file, a setting is one of

- a single value: fixed for every trial (``deep_supervision = true``);
- a list: a categorical choice (``family = ["lfunet", "unet", "unetpp"]``, ``groups = [1, 2, 4, 8]``);
- a table: a numeric range, ``{low = 4, high = 16, step = 4}`` (``step`` and ``log`` optional;
  floats may have a ``step``).

``[search.FAMILY]`` sub-tables override a setting for one family (``[search.unet]
base_width = [2, 4, 8]``); such a parameter is named ``FAMILY.KEY`` in the study.

The space is conditional, so no trial is wasted on a model that cannot be built:

- a constructor argument is suggested only for the families that take it (``groups`` and
  ``skip_mode`` for LFU-Net, ``prune_level`` and ``deep_supervision`` for LFU-Net and UNet++);
- ``groups`` is drawn only from the listed values that divide the trial's width; where that
  set differs between widths the parameter is named per width (``groups@w12``), because an
  Optuna parameter keeps one distribution;
- ``prune_importance``, ``prune_scope``, ``prune_mode`` are drawn only when ``prune_ratio > 0``,
  ``finetune_epochs`` only when, in addition, ``prune_mode`` is ``finetune``.

A family may be a user's own model (``"mynet:build"``, an entry-point model): it is searched over
the settings its callable names (a callable taking ``**kwargs`` gets none), like the zoo's.

A space whose choices cannot all be built (no listed ``groups`` value divides a width, a
family that takes none of a setting's values) is refused when the study file is read; then
every model the space can draw (:meth:`Space.combinations`) is built and, where it is pruned,
trial-pruned by the check a plan's models get (:func:`studies.plan.check_model`), so a width
that LFU-Net's default 8 groups do not divide, or ``bn`` importance for a model without batch
norm after every pruned convolution, is refused too (:mod:`studies.sweepfile`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna

from lfubench import models
from lfubench.models._registry import argument_default, is_user_model
from lfubench.models.blocks import PRUNE_LEVELS
from lfubench.models.lfunet import SKIP_MODES

from .schema import ModelSpec


def _model_field(name: str, key: str):
    """A range or choice of a :class:`ModelSpec` field (its one home)."""
    return ModelSpec.__dataclass_fields__[name].metadata[key]


@dataclass
class SearchSpec:
    """The settings a sweep searches over; metadata: ``kind`` (int, float, str, bool),
    ``min``/``max``/``choices`` (the allowed values), ``kwarg`` (a model constructor argument;
    otherwise a :class:`ModelSpec` field), ``builds`` (False: the setting changes neither the
    built model nor its pruning, so the check of a study file tries one value), ``doc``."""

    family: Any = field(default=None, metadata={
        "kind": str, "kwarg": False,
        "doc": "registered model families that take base_width, or your own (module:callable); required"})
    base_width: Any = field(default=None, metadata={"kind": int, "min": 1, "kwarg": True})
    groups: Any = field(default=None, metadata={
        "kind": int, "min": 1, "kwarg": True, "doc": "only values dividing the width are drawn"})
    prune_level: Any = field(default=None, metadata={"kind": int, "choices": PRUNE_LEVELS, "kwarg": True})
    deep_supervision: Any = field(default=None, metadata={"kind": bool, "kwarg": True})
    skip_mode: Any = field(default=None, metadata={"kind": str, "choices": SKIP_MODES, "kwarg": True})
    prune_ratio: Any = field(default=None, metadata={
        "kind": float, "min": _model_field("prune_ratio", "min"), "max": _model_field("prune_ratio", "max"),
        "kwarg": False})
    prune_importance: Any = field(default=None, metadata={
        "kind": str, "choices": _model_field("prune_importance", "choices"), "kwarg": False})
    prune_scope: Any = field(default=None, metadata={
        "kind": str, "choices": _model_field("prune_scope", "choices"), "kwarg": False})
    prune_mode: Any = field(default=None, metadata={
        "kind": str, "choices": _model_field("prune_mode", "choices"), "kwarg": False, "builds": False})
    finetune_epochs: Any = field(default=None, metadata={
        "kind": int, "min": _model_field("finetune_epochs", "min"), "kwarg": False, "builds": False})


#: the search keys in suggestion order (family first: the rest depends on it)
KEYS = tuple(f.name for f in dataclasses.fields(SearchSpec))

#: pruning settings drawn only when channels are pruned
PRUNE_ONLY = ("prune_importance", "prune_scope", "prune_mode", "finetune_epochs")


def families() -> list[str]:
    """Registered models a sweep can size: those that take ``base_width`` (presets do not vary).
    A user's model (``package.module:callable``, an entry-point model) is a family too: it is
    searched over the settings its callable names (:func:`user_family_problem`)."""
    return [n for n in models.list_models() if models.model_source(n) not in ("authors' preset", "user")
            and "base_width" in model_arguments(n)]


def model_arguments(name: str) -> tuple[str, ...]:
    """The constructor arguments of a model (none for a user's callable that takes ``**kwargs``:
    no search setting applies to it)."""
    return models.model_arguments(name) or ()


def user_family_problem(name: str) -> str | None:
    """Why the user's model ``name`` cannot be a sweep family (its module or callable cannot be
    imported), or None; whether it builds and runs is checked with the space's every model."""
    try:
        models.model_arguments(name)
    except models.UserModelError as err:
        return err.detail
    return None


@dataclass(frozen=True)
class Param:
    """One setting of the space: a fixed value, a list of choices or a numeric range."""

    key: str
    kind: type
    fixed: Any = None
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False

    @property
    def is_fixed(self) -> bool:
        return self.choices is None and self.low is None

    def values(self) -> list | None:
        """Every value it can take, where that is a finite list (None for a float range)."""
        if self.is_fixed:
            return [self.fixed]
        if self.choices is not None:
            return list(self.choices)
        if self.kind is int:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step:
            n = int(round((self.high - self.low) / self.step))
            return [round(self.low + k * self.step, 10) for k in range(n + 1)]
        return None

    def restricted(self, allowed: list) -> Param:
        """The same setting with only ``allowed`` values (kept in order)."""
        return Param(self.key, self.kind, choices=tuple(allowed)) if len(allowed) > 1 else \
            Param(self.key, self.kind, fixed=allowed[0])

    def distribution(self) -> optuna.distributions.BaseDistribution:
        if self.choices is not None:
            return optuna.distributions.CategoricalDistribution(self.choices)
        if self.kind is int:
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log,
                                                        step=int(self.step or 1))
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def to_toml(self):
        if self.is_fixed:
            return self.fixed
        if self.choices is not None:
            return list(self.choices)
        out = {"low": self.low, "high": self.high}
        if self.step is not None:
            out["step"] = self.step
        if self.log:
            out["log"] = True
        return out


def _kind_ok(value, kind: type) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


_KIND_NAME = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _value_problem(value, meta: dict) -> str | None:
    if "choices" in meta and value not in meta["choices"]:
        return f"{value!r} is not one of {', '.join(map(str, meta['choices']))}"
    if "min" in meta and value < meta["min"]:
        return f"{value!r} is below {meta['min']}"
    if "max" in meta and value > meta["max"]:
        return f"{value!r} is above {meta['max']}"
    return None


def read_param(key: str, raw, where: str, problems: list[str]) -> Param | None:
    """One setting of ``[search]`` as a :class:`Param`; one line per problem, naming ``where`` and ``key``."""
    meta = SearchSpec.__dataclass_fields__[key].metadata
    kind = meta["kind"]
    at = f"{where} {key}"
    before = len(problems)
    if isinstance(raw, dict):
        if kind not in (int, float):
            problems.append(f"{at}: a range needs a numeric setting; give a value or a list of "
                            f"{_KIND_NAME[kind].split(' ', 1)[-1]}s")
            return None
        allowed = ("low", "high", "step", "log")
        for k in raw:
            if k not in allowed:
                problems.append(f"{at}: unknown range key {k!r} (a range has low, high, step, log)")
        for k in ("low", "high"):
            if k not in raw:
                problems.append(f"{at}: a range needs {k!r}")
            elif not _kind_ok(raw[k], kind):
                problems.append(f"{at}: {k} must be {_KIND_NAME[kind]}, got {raw[k]!r}")
        if "step" in raw and not (_kind_ok(raw["step"], kind) and raw["step"] > 0):
            problems.append(f"{at}: step must be a positive {'integer' if kind is int else 'number'}, "
                            f"got {raw['step']!r}")
        if "log" in raw and not isinstance(raw["log"], bool):
            problems.append(f"{at}: log must be true or false, got {raw['log']!r}")
        if len(problems) > before:
            return None
        low, high, step, log = raw["low"], raw["high"], raw.get("step"), raw.get("log", False)
        if low > high:
            problems.append(f"{at}: low {low} is above high {high}")
        for v in (low, high):
            bad = _value_problem(v, meta)
            if bad:
                problems.append(f"{at}: {bad}")
        if log and (step not in (None, 1) or low <= 0):
            problems.append(f"{at}: a log range needs low > 0 and no step")
        if step and kind is float and not math.isclose((high - low) / step, round((high - low) / step)):
            problems.append(f"{at}: high - low must be a multiple of step {step}")
        if len(problems) > before:
            return None
        if kind is float:
            low, high, step = float(low), float(high), float(step) if step else None
        if low == high:
            return Param(key, kind, fixed=low)
        return Param(key, kind, low=low, high=high, step=step, log=log)
    if isinstance(raw, list):
        if not raw:
            problems.append(f"{at}: an empty list; give at least one value")
            return None
        for v in raw:
            if not _kind_ok(v, kind):
                problems.append(f"{at}: values must be {_KIND_NAME[kind]}, got {v!r}")
            elif bad := _value_problem(v, meta):
                problems.append(f"{at}: {bad}")
        if len(problems) == before and len(set(raw)) != len(raw):
            problems.append(f"{at}: duplicate values in {raw}")
        if len(problems) > before:
            return None
        values = [float(v) for v in raw] if kind is float else list(raw)
        if len(values) == 1:
            return Param(key, kind, fixed=values[0])
        return Param(key, kind, choices=tuple(values))
    if not _kind_ok(raw, kind):
        problems.append(f"{at}: must be {_KIND_NAME[kind]}, a list of choices"
                        + (" or a range {low, high}" if kind in (int, float) else "") + f", got {raw!r}")
        return None
    if bad := _value_problem(raw, meta):
        problems.append(f"{at}: {bad}")
        return None
    return Param(key, kind, fixed=float(raw) if kind is float else raw)


@dataclass
class Space:
    """The read search space: the family choice, settings shared by all families, and
    per-family overrides."""

    family: Param
    shared: dict[str, Param]
    per_family: dict[str, dict[str, Param]] = field(default_factory=dict)

    @property
    def families(self) -> list[str]:
        return self.family.values()

    def applies(self, family: str, key: str) -> bool:
        meta = SearchSpec.__dataclass_fields__[key].metadata
        return not meta["kwarg"] or key in model_arguments(family)

    def param(self, family: str, key: str) -> tuple[str, Param] | None:
        """``(parameter name, Param)`` of ``key`` for ``family``; None where it does not apply
        or is not searched (the model's or ModelSpec's default is used)."""
        if not self.applies(family, key):
            return None
        if key in self.per_family.get(family, {}):
            return f"{family}.{key}", self.per_family[family][key]
        if key in self.shared:
            return key, self.shared[key]
        return None

    def groups_for(self, family: str, width: int) -> tuple[str, Param] | None:
        """``groups`` for one width: only the values that divide it, named per width where
        the allowed set differs between the family's widths."""
        found = self.param(family, "groups")
        if found is None:
            return None
        name, param = found
        widths = [w for w in self.widths(family) if w is not None]  # None: a user's model without a default
        allowed = {w: [g for g in param.values() if w % g == 0] for w in widths}
        sub = param.values() if width is None else allowed.get(width) or [g for g in param.values()
                                                                             if width % g == 0]
        if not sub:
            raise models.ModelConfigError(f"{family}: no groups value of {param.values()} divides base_width "
                                          f"{width}")
        same = len({tuple(v) for v in allowed.values()}) == 1 and tuple(sub) == tuple(param.values())
        return (name if same else f"{name}@w{width}"), param.restricted(sub)

    def widths(self, family: str) -> list[int]:
        found = self.param(family, "base_width")
        if found is None:
            return [argument_default(family, "base_width")]
        return found[1].values()

    def to_toml(self) -> dict:
        out = {"family": self.family.to_toml(), **{k: p.to_toml() for k, p in self.shared.items()}}
        for fam, params in self.per_family.items():
            out[fam] = {k: p.to_toml() for k, p in params.items()}
        return out

    # -- a trial's model ------------------------------------------------------------------
    def suggest(self, trial: optuna.Trial) -> ModelSpec:
        """The model of one trial: every applicable setting drawn (or fixed) in the order of
        :data:`KEYS`, conditional settings only where they apply."""
        family = _draw(trial, "family", self.family)
        kwargs, fields = self._settings(family, lambda name, param: _draw(trial, name, param))
        return ModelSpec(name=family, label=f"#{trial.number} " + _label(family, kwargs, fields),
                         kwargs=kwargs, **fields)

    def _settings(self, family: str, choose: Callable[[str, Param], Any]) -> tuple[dict, dict]:
        """The constructor arguments and :class:`ModelSpec` fields of one model of ``family``,
        each applicable setting given by ``choose(parameter name, Param)`` in the order of
        :data:`KEYS`."""
        kwargs: dict[str, Any] = {}
        fields: dict[str, Any] = {}
        for key in KEYS[1:]:
            if key in PRUNE_ONLY and not fields.get("prune_ratio"):
                continue
            if key == "finetune_epochs" and fields.get("prune_mode", "finetune") != "finetune":
                continue
            if key == "groups" and self.applies(family, key):
                width = kwargs["base_width"] if "base_width" in kwargs else self.widths(family)[0]
                found = self.groups_for(family, width)
            else:
                found = self.param(family, key)
            if found is None:
                continue
            value = choose(*found)
            meta = SearchSpec.__dataclass_fields__[key].metadata
            (kwargs if meta["kwarg"] else fields)[key] = value
        return kwargs, fields

    def combinations(self, family: str) -> list[ModelSpec]:
        """Every model of ``family`` that differs in what is built: each value of a setting
        that changes the model or its pruning (an int range at its steps, a float range at its
        steps or else at its two ends), under the same conditions as :meth:`suggest`; the
        other settings (``prune_mode``, ``finetune_epochs``) at their first value."""
        out, pending = [], [()]
        while pending:
            path = pending.pop()
            taken: list[int] = []

            def choose(name: str, param: Param, path=path, taken=taken) -> Any:
                values = param.values() or [param.low, param.high]
                if not SearchSpec.__dataclass_fields__[param.key].metadata.get("builds", True):
                    values = values[:1]
                if len(taken) < len(path):
                    index = path[len(taken)]
                else:  # a new branch: this value now, the others later, in order
                    index = 0
                    pending.extend(tuple(taken) + (j,) for j in reversed(range(1, len(values))))
                taken.append(index)
                return values[index]

            kwargs, fields = self._settings(family, choose)
            out.append(ModelSpec(name=family, kwargs=kwargs, **fields))
        return out


def _label(family: str, kwargs: dict, fields: dict) -> str:
    return ModelSpec(name=family, kwargs=kwargs, **fields).label


def _draw(trial: optuna.Trial, name: str, param: Param):
    if param.is_fixed:
        return param.fixed
    if param.choices is not None:
        return trial.suggest_categorical(name, list(param.choices))
    if param.kind is int:
        return trial.suggest_int(name, int(param.low), int(param.high), step=int(param.step or 1),
                                 log=param.log)
    return trial.suggest_float(name, param.low, param.high, step=param.step, log=param.log)


# --- reading [search] -------------------------------------------------------------------------


def read_space(raw, where: str, problems: list[str]) -> Space | None:
    """``[search]`` read into a :class:`Space`; every problem appended, one line each."""
    at = f"{where}: [search]"
    if not isinstance(raw, dict) or not raw:
        problems.append(f"{at}: missing; a sweep needs at least 'family'")
        return None
    known = families()
    before = len(problems)
    shared: dict[str, Param] = {}
    subtables: dict[str, dict] = {}
    for key, value in raw.items():
        if key in KEYS:
            param = read_param(key, value, at, problems)
            if param is not None:
                shared[key] = param
        elif isinstance(value, dict) and (key in models.list_models() or models.is_reference(key)):
            subtables[key] = value
        else:
            close = difflib.get_close_matches(key, list(KEYS) + known, n=1)
            problems.append(f"{at}: unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                            + f"; settings: {', '.join(KEYS)}; or a [search.FAMILY] table")
    family = shared.pop("family", None)
    if "family" not in raw:
        problems.append(f"{at}: missing key 'family' (choose from {', '.join(known)})")
    elif family is not None:
        for name in family.values():
            if is_user_model(name):
                if problem := user_family_problem(name):
                    problems.append(f"{at} family {name!r}: {problem}")
            elif name not in known:
                close = difflib.get_close_matches(str(name), known, n=1)
                problems.append(f"{at} family: {name!r} is not a model family a sweep can size"
                                + (f" (did you mean {close[0]!r}?)" if close else "")
                                + f"; families: {', '.join(known)}")
    per_family: dict[str, dict[str, Param]] = {}
    for fam, table in subtables.items():
        sub_at = f"{where}: [search.{fam}]"
        if family is not None and fam not in family.values():
            problems.append(f"{sub_at}: {fam!r} is not among the searched families {family.values()}")
            continue
        per_family[fam] = {}
        for key, value in table.items():
            if key not in KEYS[1:]:
                problems.append(unknown_search_key(sub_at, key))
                continue
            param = read_param(key, value, sub_at, problems)
            if param is None:
                continue
            if SearchSpec.__dataclass_fields__[key].metadata["kwarg"] and key not in model_arguments(fam):
                problems.append(f"{sub_at} {key}: model {fam!r} has no argument {key!r}; its arguments: "
                                f"{', '.join(model_arguments(fam))}")
                continue
            per_family[fam][key] = param
    if len(problems) > before or family is None:
        return None
    space = Space(family, shared, per_family)
    for key in shared:
        if not any(space.applies(f, key) for f in space.families):
            problems.append(f"{at} {key}: none of the families {space.families} takes {key!r}")
    ratio_searched = "prune_ratio" in shared or any("prune_ratio" in v for v in per_family.values())
    if any(k in shared for k in PRUNE_ONLY) and not ratio_searched:
        problems.append(f"{at}: {', '.join(k for k in PRUNE_ONLY if k in shared)} apply only to pruned "
                        "models; add prune_ratio")
    for fam in space.families:
        found = space.param(fam, "groups")
        if found is None:
            continue
        if found[1].values() is None or any(g < 1 for g in found[1].values()):
            continue
        values = found[1].values()
        bad = [w for w in space.widths(fam) if w is not None and not any(w % g == 0 for g in values)]
        if bad:
            problems.append(f"{at} groups: no value of {found[1].values()} divides base_width "
                            f"{', '.join(map(str, bad))} of {fam!r}; add 1 or narrow base_width")
    return None if len(problems) > before else space


def unknown_search_key(where: str, key: str) -> str:
    close = difflib.get_close_matches(key, KEYS[1:], n=1)
    return f"{where}: unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
