"""Objectives and constraints of a sweep (``[objectives]`` of a study file), and the figures
of a trial's record they are read from.

::

    [objectives]
    maximize = ["dice:mean"]              # scores: METRIC:REGION or METRIC:mean
    minimize = ["params", "latency_ms@onnxruntime"]   # costs, and distance scores such as hd95:liver
    constraints = ["params <= 100_000", "latency_ms <= 5"]

Scores are the test-case means of a metric the pipeline computes (:data:`SCORE_METRICS`), for
one region of the dataset (``dice:liver``, ``hd95:WT``) or the mean over its regions
(``dice:mean``), at the model's own pruning level and, for a channel-pruned model, after
pruning. Costs (:data:`COSTS`) are the item's efficiency figures: ``latency_ms`` (PyTorch eager) and
``peak_mb`` (the model's own peak tensor memory, :mod:`bench.memory`) at the first batch size and
precision of ``[measure]``, on its device, unquantized; ``latency_ms@RUNTIME`` is the latency in
another runtime of ``[measure] runtimes`` (:data:`RUNTIME_COSTS`: ``latency_ms@compile``,
``latency_ms@onnxruntime``, ``latency_ms@openvino``, ``latency_ms@tensorrt``). A runtime figure
whose runtime the study does not measure, or ``latency_ms`` without ``torch`` among them, is refused
when the study is read (one line naming the figure). Overlap scores (Dice)
are maximised and distances minimised; the other direction is refused. A constraint holds a
figure to a bound; Optuna counts a trial feasible when every constraint value
(``figure - bound`` for ``<=``, ``bound - figure`` for ``>=``) is at most 0.

A figure without a value fails the trial. Within a region, test cases without a value (the
``nan`` empty-mask rule, a case where both masks are empty) are left out of its mean; a region
with no value at all has none, and then neither has the mean over regions: ``dice:mean`` is not
the mean of the other regions, which would let a model that never segments one region be
called best. :func:`record_figures` raises :class:`FigureError` for such a figure (and for a
missing or infinite one), and the sweep marks the trial FAIL with ``fail_reason``
``objective ...``, as Optuna itself marks FAIL a trial told a NaN value. A failed trial is
never on the Pareto front, never dominates another and takes no part in the hypervolume; its
record is kept.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lfubench.bench.evaluate import evaluate_cases
from lfubench.bench.metrics import DISTANCE_METRICS, OVERLAP_METRICS
from lfubench.bench.runtimes import RUNTIMES

from .schema import MeasureSpec, read_section

#: the metrics every item's test cases are scored with (bench.evaluate's default)
SCORE_METRICS = tuple(inspect.signature(evaluate_cases).parameters["metrics"].default)

#: cost figures of an item, each minimised, and what they are
COSTS = {
    "params": "parameters of the final model",
    "gmacs": "GMACs of one forward pass at the dataset's input size",
    "latency_ms": "median latency in PyTorch eager at [measure]'s first batch size and precision",
    "peak_mb": "the model's own peak tensor memory (model_peak_mb) at [measure]'s first batch size and "
               "precision",
    "train_seconds": "training seconds",
}

#: the runtime of a plain cost figure (``latency_ms``), and what joins a figure to another runtime
EAGER, AT = "torch", "@"

#: the latency in each runtime but PyTorch eager (plain ``latency_ms``), each minimised
RUNTIME_COSTS = {f"latency_ms{AT}{r}": f"median latency in {r} at [measure]'s first batch size and precision"
                 for r in RUNTIMES if r != EAGER}


def runtime_of(name: str) -> str:
    """The runtime a cost figure is read in: ``X`` for ``latency_ms@X``, else PyTorch eager's."""
    return name.partition(AT)[2] or EAGER

MAXIMIZE, MINIMIZE = "maximize", "minimize"


@dataclass
class ObjectivesSpec:
    """``[objectives]``: what a sweep optimises, and the constraints a trial must meet."""

    maximize: list[str] = field(default_factory=list, metadata={
        "doc": "scores to maximise: dice:REGION, dice:mean"})
    minimize: list[str] = field(default_factory=list, metadata={
        "doc": "costs (params, gmacs, latency_ms, peak_mb, train_seconds; latency_ms@RUNTIME for a runtime "
               "of [measure] runtimes other than torch) and distances (hd95:REGION)"})
    constraints: list[str] = field(default_factory=list, metadata={
        "doc": "'FIGURE <= BOUND' or 'FIGURE >= BOUND', FIGURE an objective name"})


def direction_of(name: str) -> str | None:
    """The one direction a figure may be optimised in (None for an unknown name)."""
    if name in COSTS or name in RUNTIME_COSTS:
        return MINIMIZE
    metric = name.split(":", 1)[0]
    if metric in OVERLAP_METRICS:
        return MAXIMIZE
    if metric in DISTANCE_METRICS:
        return MINIMIZE
    return None


@dataclass(frozen=True)
class Constraint:
    figure: str
    op: str
    bound: float

    @property
    def text(self) -> str:
        bound = int(self.bound) if self.bound.is_integer() and abs(self.bound) < 1e15 else self.bound
        return f"{self.figure} {self.op} {bound}"

    def value(self, figure: float) -> float:
        """Optuna's constraint value: at most 0 when the constraint holds."""
        return figure - self.bound if self.op == "<=" else self.bound - figure


@dataclass
class Objectives:
    """The checked objectives (names, in order, with their directions) and constraints."""

    names: list[str]
    directions: list[str]
    constraints: list[Constraint]

    @property
    def figures_needed(self) -> list[str]:
        return list(dict.fromkeys(self.names + [c.figure for c in self.constraints]))

    def to_toml(self) -> dict:
        return {"maximize": [n for n, d in zip(self.names, self.directions, strict=True) if d == MAXIMIZE],
                "minimize": [n for n, d in zip(self.names, self.directions, strict=True) if d == MINIMIZE],
                "constraints": [c.text for c in self.constraints]}


_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w:@]*)\s*(<=|>=)\s*([-+0-9_.eE]+)\s*$")


def _runtime_problem(name: str, runtimes: Sequence[str] | None) -> str | None:
    """Why a latency figure cannot be read from a study measuring ``runtimes`` (None: it can, or
    the runtimes are not known)."""
    runtime = runtime_of(name)
    if runtimes is None or runtime in runtimes:
        return None
    where = "" if runtime != EAGER else " (plain latency_ms is PyTorch eager's; name another runtime as " \
                                         "latency_ms@RUNTIME)"
    return (f"{name!r}: runtime {runtime!r} is not measured{where}; [measure] runtimes = "
            f"{list(runtimes)}; add {runtime!r} there")


def _name_problem(name: str, regions: tuple[str, ...], runtimes: Sequence[str] | None = None) -> str | None:
    if name == "latency_ms" or name in RUNTIME_COSTS:
        return _runtime_problem(name, runtimes)
    if name in COSTS:
        return None
    if AT in name:
        figure, _, runtime = name.partition(AT)
        if figure != "latency_ms":
            return f"{name!r}: only latency_ms is read per runtime (latency_ms@RUNTIME)"
        if runtime == EAGER:
            return f"{name!r}: PyTorch eager's latency is plain 'latency_ms'"
        return (f"{name!r}: {runtime!r} is not a runtime; latency_ms@RUNTIME with RUNTIME in "
                f"{', '.join(r for r in RUNTIMES if r != EAGER)}")
    metric, sep, region = name.partition(":")
    if not sep:
        return (f"{name!r} is not a figure; costs: {', '.join(COSTS)}; scores: METRIC:REGION with METRIC in "
                f"{', '.join(SCORE_METRICS)}")
    if metric not in SCORE_METRICS:
        return (f"{name!r}: metric {metric!r} is not scored by the pipeline (it scores "
                f"{', '.join(SCORE_METRICS)})")
    if region != "mean" and region not in regions:
        return (f"{name!r}: region {region!r} is not one of the dataset's regions ({', '.join(regions)}) "
                "or 'mean'")
    return None


def read_objectives(raw, where: str, regions: tuple[str, ...], problems: list[str],
                    runtimes: Sequence[str] | None = None) -> Objectives | None:
    """``[objectives]`` read and checked against the dataset's ``regions`` and the study's
    ``[measure] runtimes`` (None: not checked); one line per problem."""
    at = f"{where}: [objectives]"
    spec = read_section(ObjectivesSpec, raw if raw is not None else {}, at, problems)
    if spec is None:
        return None
    before = len(problems)
    names, directions = [], []
    for direction, listed in ((MAXIMIZE, spec.maximize), (MINIMIZE, spec.minimize)):
        for name in listed:
            bad = _name_problem(name, regions, runtimes)
            if bad:
                problems.append(f"{at} {direction}: {bad}")
            elif direction_of(name) != direction:
                problems.append(f"{at} {direction}: {name!r} is to be {direction_of(name)}d "
                                f"(list it under {direction_of(name)})")
            elif name in names:
                problems.append(f"{at}: {name!r} is listed twice")
            else:
                names.append(name)
                directions.append(direction)
    if not spec.maximize and not spec.minimize:
        problems.append(f"{at}: no objective; list at least one under maximize or minimize")
    constraints = []
    for text in spec.constraints:
        m = _CONSTRAINT.match(text)
        bound = None
        if m:
            try:
                bound = float(m.group(3).replace("_", ""))
            except ValueError:
                bound = None
        if m is None or bound is None or not math.isfinite(bound):
            problems.append(f"{at} constraints: {text!r} must look like 'FIGURE <= NUMBER' or "
                            "'FIGURE >= NUMBER' (e.g. 'params <= 100_000')")
            continue
        bad = _name_problem(m.group(1), regions, runtimes)
        if bad:
            problems.append(f"{at} constraints: {bad}")
            continue
        constraints.append(Constraint(m.group(1), m.group(2), bound))
    if len(problems) > before:
        return None
    return Objectives(names, directions, constraints)


# --- figures of a record ----------------------------------------------------------------------


class FigureError(ValueError):
    """A figure an objective or constraint needs is missing from a trial's record."""


def _final(rows: list[dict]) -> list[dict]:
    """The rows of the model an item delivers: its final stage, at its top evaluated level."""
    rows = [r for r in rows if r.get("stage", "final") == "final"]
    if not rows:
        return []
    top = max(r["level"] for r in rows)
    return [r for r in rows if r["level"] == top]


def _cost_row(rows: list[dict], name: str, measure: MeasureSpec) -> dict:
    """The unquantized efficiency row a cost figure is read from: its runtime's for a latency
    (rows recorded before runtimes were are PyTorch eager's), PyTorch eager's, else the first, for
    the others (parameters, MACs and the model's memory are the same in every runtime)."""
    rows = [r for r in rows if (r.get("quantize") or "none") == "none"]
    runtime = runtime_of(name)
    mine = [r for r in rows if (r.get("runtime") or EAGER) == runtime]
    if not mine and not name.startswith("latency_ms"):
        mine = rows
    if not mine:
        raise FigureError(f"{name}: no efficiency figures in {runtime} at batch {measure.batch_sizes[0]}, "
                          f"{measure.precision[0]}")
    return mine[0]


def record_figures(record: dict, names: list[str], measure: MeasureSpec) -> dict[str, float]:
    """The figures ``names`` of one item's record (as :func:`studies.pipeline.run_item`
    returns it); a figure that is missing or not finite raises :class:`FigureError`."""
    metrics = _final(record.get("metrics", []))
    efficiency = [r for r in _final(record.get("efficiency", []))
                  if r["batch"] == measure.batch_sizes[0] and r["precision"] == measure.precision[0]]
    out = {}
    for name in names:
        if name == "train_seconds":
            value = record["train"]["seconds"]
        elif name in COSTS or name in RUNTIME_COSTS:
            eff = _cost_row(efficiency, name, measure)
            if name not in ("params", "gmacs") and eff["status"] != "ok":
                raise FigureError(f"{name}: not measured ({eff['status']})")
            value = eff[name.partition(AT)[0]]
        else:
            metric, _, region = name.partition(":")
            by_region: dict[str, list[float]] = {}  # every region scored, with its finite values
            for r in metrics:
                if r["metric"] == metric:
                    values = by_region.setdefault(r["region"], [])
                    if r["value"] is not None and not _isnan(r["value"]):
                        values.append(float(r["value"]))
            if region == "mean":
                empty = [k for k, v in by_region.items() if not v]
                if empty:  # the mean of the regions is NaN, not the mean of the others
                    raise FigureError(f"{name}: region {', '.join(empty)} has no finite value in the "
                                      "trial's record, so the mean over regions has none")
                value = float(np.mean([np.mean(v) for v in by_region.values()])) if by_region else math.nan
            else:
                value = float(np.mean(by_region[region])) if by_region.get(region) else math.nan
        if value is None or _isnan(value) or not math.isfinite(float(value)):
            raise FigureError(f"{name}: no finite value in the trial's record (got {value})")
        out[name] = float(value)
    return out


def _isnan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)
