"""What a report is made from, in one typed object: :class:`ReportInputs`.

The command line builds it (from run folders or a storage, through ``studies``) and hands it
down; everything in ``reports`` reads its facts from it, never from raw plan dictionaries. The
plan or study of a run enters as the plain facts a report shows (:class:`RunInfo`), so that
``reports`` imports neither ``studies`` nor Optuna.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from .schema import (
    BASE_EFFICIENCY_COLUMNS,
    DEPLOYMENT_COLUMNS,
    ITEM_COLUMNS,
    KEY_COLUMNS,
    ReportInputError,
    require,
)

#: the columns of :attr:`ReportInputs.failures`
FAILURE_COLUMNS = ["item", "state", "attempts", "reason"]


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset of a run's plan: its ``name``, ``kind`` (``lits``, ``phantom-brats``, ...),
    whether it is synthetic (``phantom``) and its effective ``settings`` as the plan file states
    them (shown in the setup section)."""

    name: str
    kind: str
    phantom: bool = False
    settings: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class RunInfo:
    """One run folder or storage study of a report.

    Args:
        source: where it was read from (the run folder, or ``study NAME``).
        name: the plan's or study's name (None when no plan is known).
        plan_text: the effective plan or study file (shown in the appendix).
        datasets: the plan's datasets.
        train: the effective training settings (setting -> value), shown in the setup section.
        measure: the effective measurement settings.
        widths: model label -> base width, for the models that set one.
        first_model: the label of the plan's first model (the default reference).
    """

    source: str
    name: str | None = None
    plan_text: str | None = None
    datasets: tuple[DatasetInfo, ...] = ()
    train: Mapping[str, object] = field(default_factory=dict)
    measure: Mapping[str, object] = field(default_factory=dict)
    widths: Mapping[str, float] = field(default_factory=dict)
    first_model: str | None = None


@dataclass(frozen=True)
class SweepData:
    """One sweep study of a report (the frames of :mod:`reports.sweeps`).

    Args:
        name, description: the study's.
        objectives: (name, ``maximize`` or ``minimize``) pairs.
        constraints: each constraint as text (``params <= 50000``).
        trials, hypervolume, importances: the frames :mod:`reports.sweeps` describes.
    """

    name: str
    description: str
    objectives: Sequence[tuple[str, str]]
    constraints: Sequence[str]
    trials: pd.DataFrame
    hypervolume: pd.DataFrame
    importances: pd.DataFrame


def _empty_failures() -> pd.DataFrame:
    return pd.DataFrame(columns=FAILURE_COLUMNS)


@dataclass
class ReportInputs:
    """Everything a report is made from.

    Args:
        results, efficiency, items: the tidy tables of :mod:`reports.schema`; the items'
            ``overlays`` are readable paths (absolute, or relative to the working folder) or
            missing; a file that cannot be read leaves its figure out, named in the report.
        title: the report's title.
        failures: items without a result: ``item``, ``state``, ``attempts``, ``reason``.
        environments: one hardware/software record per item (``item`` and its fields).
        runs: the runs reported (merged).
        splits: per dataset, the case ids of ``train``, ``val`` and ``test``.
        sweeps: the sweep studies among the runs.
        versions: package versions of the environment making the report.
        reference: the label the Wilcoxon tests compare against (default: the first model of the
            first run's plan when it has results, else each dataset's first).
        seed: the bootstrap's seed.
    """

    results: pd.DataFrame
    efficiency: pd.DataFrame
    items: pd.DataFrame
    title: str = "lfubench"
    failures: pd.DataFrame = field(default_factory=_empty_failures)
    environments: pd.DataFrame = field(default_factory=pd.DataFrame)
    runs: Sequence[RunInfo] = ()
    splits: Mapping[str, Mapping[str, Sequence[str]]] = field(default_factory=dict)
    sweeps: Sequence[SweepData] = ()
    versions: Mapping[str, str] = field(default_factory=dict)
    reference: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        """Check the tables' columns and an explicit reference (one clear error each)."""
        require(self.results, KEY_COLUMNS + ["case", "region", "metric", "value"], "the results table")
        require(self.efficiency, [c for c in BASE_EFFICIENCY_COLUMNS if c != "stage"], "the efficiency table")
        lacking = [c for c in DEPLOYMENT_COLUMNS if c not in self.efficiency]
        if lacking:  # a table recorded before runtimes were: PyTorch eager, unquantized
            self.efficiency = self.efficiency.assign(**dict.fromkeys(lacking))
        require(self.items, ITEM_COLUMNS[:11], "the items table")
        labels = list(dict.fromkeys(self.results["label"].astype(str)))
        if self.reference is not None and len(self.results) and self.reference not in labels:
            raise ReportInputError(f"reference {self.reference!r} is not a model of the run; its models: "
                                   f"{', '.join(labels)}")

    @property
    def datasets(self) -> list[str]:
        """The datasets with results, in order."""
        return list(dict.fromkeys(self.results["dataset"]))

    @property
    def reference_label(self) -> str | None:
        """The label tests compare against: :attr:`reference`, else the first run's first model
        when it has results, else None (each dataset's first label)."""
        if self.reference is not None:
            return self.reference
        firsts = [run.first_model for run in self.runs if run.first_model is not None][:1]
        return firsts[0] if firsts and firsts[0] in set(self.results["label"]) else None

    def widths(self) -> dict[str, float]:
        """Model label -> base width, over every run's plan."""
        return {label: w for run in self.runs for label, w in run.widths.items()}
