"""The run folder and its storage, owned by :class:`Run`, and the worker processes that share
them (:func:`worker_devices`, :func:`spawn_workers`).

Run folder (``runs/NAME`` by default)::

    plan.toml           a plan's effective plan (file + --set overrides, every default filled in)
    study.toml          or a sweep's effective study file (the same)
    study.db            the Optuna storage (SQLite) unless --storage names another
    data/<dataset>/     generated phantoms, in the real LiTS / BraTS 2018 layouts
    cache/              preprocessed slice caches (one per dataset and preprocessing), each
                        with its splits (one file per split setting)
    items/<item>/       best.pt (state dict), model.json (its create_model config), train.json and
                        overlays.npz of each item; finetune/best.pt for a channel-pruned one
    sweep/              a sweep's tables and figures (``lfubench sweep show``)
    results.csv, results.parquet, efficiency.csv, items.csv, table.{csv,md,tex}, pareto_*.png,
    report.pdf

The storage is ``sqlite:///<absolute folder>/study.db`` unless another URL is given (a journal
file, a PostgreSQL server). Its password never leaves this process in text: logs, messages,
records and reports show the URL through :func:`masked_url`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lfubench.bench.errors import LfubenchError

if TYPE_CHECKING:
    import pandas as pd

    from lfubench.reports.record import ItemRecord

    from .plan import Plan
    from .sweepfile import SweepStudy

log = logging.getLogger(__name__)

PLAN_FILE, STUDY_FILE, STORAGE_FILE = "plan.toml", "study.toml", "study.db"

#: the study-file keys a sweep's run folder must agree on (a budget or sampler may change between runs)
FIXED_KEYS = ("seed", "train", "measure", "datasets", "search", "objectives")


def masked_url(url: str) -> str:
    """``url`` as logs, messages, records and reports show it: a password in it (after
    ``USER:`` or as a ``password=`` parameter) becomes ``***``
    (``postgresql://USER:***@HOST/DB``)."""
    url = re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url)


def slug(text: str) -> str:
    """A folder name for ``text``: its safe characters plus a short hash, so distinct texts
    never share a folder (``UNet++`` and ``UNet+`` both reduce to ``UNet``)."""
    safe = re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")
    return f"{safe}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"


class Run:
    """One run folder (``folder``, kept as given) and its storage (``storage``, by default the
    SQLite file in the folder)."""

    def __init__(self, folder: str | Path, storage: str | None = None) -> None:
        self.folder = Path(folder)
        self.own_storage = not storage
        self.storage_url = storage or f"sqlite:///{(self.folder / STORAGE_FILE).resolve()}"
        self._effective = None

    @classmethod
    def open(cls, folder: str | Path, storage: str | None = None) -> Run:
        """An existing run folder, which holds its effective plan or study file."""
        run = cls(folder, storage)
        if not run.folder.is_dir():
            raise LfubenchError(f"{run.folder}: no such run folder")
        if run.kind is None:
            raise LfubenchError(f"{run.folder}: not a run folder (no {PLAN_FILE} or {STUDY_FILE})")
        return run

    # -- layout -----------------------------------------------------------------------------
    @property
    def storage_shown(self) -> str:
        """The storage URL without its password."""
        return masked_url(self.storage_url)

    @property
    def db(self) -> Path:
        """The default SQLite storage file (used unless another storage was given)."""
        return self.folder / STORAGE_FILE

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def cache_dir(self) -> Path:
        return self.folder / "cache"

    @property
    def sweep_dir(self) -> Path:
        return self.folder / "sweep"

    def item_dir(self, item_id: str) -> Path:
        """The folder of one item's files."""
        return self.folder / "items" / slug(item_id)

    @property
    def kind(self) -> str | None:
        """``plan`` or ``sweep``: which effective file the folder holds (None: neither yet)."""
        if (self.folder / PLAN_FILE).is_file():
            return "plan"
        if (self.folder / STUDY_FILE).is_file():
            return "sweep"
        return None

    @property
    def effective_file(self) -> Path | None:
        kind = self.kind
        return None if kind is None else self.folder / (PLAN_FILE if kind == "plan" else STUDY_FILE)

    # -- the effective plan or study ----------------------------------------------------------
    def write_effective(self, spec: Plan | SweepStudy) -> None:
        """Keep the effective plan (or sweep study) in the folder, made if missing.

        A folder holding a different plan is refused (finished items would otherwise be mixed
        with items of other settings); so is one holding a study that differs in what its trials
        mean (:data:`FIXED_KEYS`; a new budget or sampler is fine, and is kept).
        """
        import tomllib

        import tomli_w

        from .plan import Plan

        is_plan = isinstance(spec, Plan)
        name = PLAN_FILE if is_plan else STUDY_FILE
        path = self.folder / name
        effective = spec.to_dict()
        self.folder.mkdir(parents=True, exist_ok=True)
        if path.exists():
            try:
                kept = tomllib.loads(path.read_text())
            except tomllib.TOMLDecodeError:
                kept = None
            kept = kept or {}
            if is_plan:
                changed = sorted(k for k in set(effective) | set(kept) if kept.get(k) != effective.get(k))
                if changed:
                    raise LfubenchError(f"{self.folder} holds a run of a different plan (differs in: "
                                        f"{', '.join(changed)}); choose another --out, or delete the folder "
                                        "to start over")
                return
            changed = [k for k in FIXED_KEYS if kept.get(k) != effective.get(k)]
            if changed:
                raise LfubenchError(f"{self.folder} holds a sweep of a different study (differs in: "
                                    f"{', '.join(changed)}); choose another --out, or delete the folder to "
                                    "start over")
        tmp = path.with_name(f".{name}.tmp")
        what = "plan" if is_plan else "study"
        tmp.write_text(f"# the effective {what} of this run: {spec.path} with its --set overrides, defaults "
                       f"filled in\n{tomli_w.dumps(effective)}")
        tmp.replace(path)
        self._effective = None

    def effective(self) -> Plan | SweepStudy:
        """The effective plan (a ``Plan``) or sweep study (a ``SweepStudy``) the folder keeps."""
        if self._effective is None:
            kind = self.kind
            if kind is None:
                raise LfubenchError(f"{self.folder}: not a run folder (no {PLAN_FILE} or {STUDY_FILE})")
            if kind == "plan":
                from .plan import load_plan

                self._effective = load_plan(self.folder / PLAN_FILE)
            else:
                from .sweepfile import load_study

                self._effective = load_study(self.folder / STUDY_FILE)
        return self._effective

    # -- what the storage holds ---------------------------------------------------------------
    def trials(self) -> list:
        """Every trial of the folder's study in its storage (read only)."""
        from .records import load_trials

        if self.own_storage and not self.db.is_file():
            what = "run" if self.kind != "sweep" else "sweep"
            raise LfubenchError(f"{self.folder}: no {STORAGE_FILE} (a {what} with another --storage: use "
                                "--storage and --study)")
        return load_trials(self.storage_url, self.effective().name)

    def records(self) -> list[ItemRecord]:
        """The records of the study's COMPLETE trials."""
        from .records import records

        return records(self.trials())

    def sweep_results(self, study: SweepStudy | None = None) -> SweepResults:
        """The results of the folder's sweep (or of ``study``, e.g. with --set overrides)."""
        return sweep_results(study if study is not None else self.effective(), self.storage_url)


# --- sweep results ------------------------------------------------------------------------------


@dataclass
class SweepResults:
    """The tables of a stored sweep (:mod:`studies.sweep`): ``trials`` (one row per trial),
    ``history`` (hypervolume or best value by trial count) and ``importances`` (fANOVA)."""

    study: SweepStudy
    trials: pd.DataFrame
    history: pd.DataFrame
    importances: pd.DataFrame

    @property
    def objectives(self) -> list[tuple[str, str]]:
        """(name, direction) of each objective, in order."""
        return list(zip(self.study.objectives.names, self.study.objectives.directions, strict=True))

    def count(self, state: str) -> int:
        """Trials in ``state`` (``complete``, ``fail``, ``pruned``, ``running``)."""
        return int((self.trials["state"] == state).sum()) if not self.trials.empty else 0

    def front(self):
        """The Pareto front table (:func:`reports.sweeps.front_table`)."""
        from lfubench.reports.sweeps import front_table

        return front_table(self.trials, self.objectives)

    def write(self, folder: str | Path) -> dict[str, list[Path]]:
        """The tables and figures, written into ``folder`` (:func:`reports.sweeps.write_sweep_outputs`)."""
        from lfubench.reports.sweeps import write_sweep_outputs

        return write_sweep_outputs(Path(folder), self.trials, self.history, self.importances, self.objectives,
                                   f"sweep: {self.study.name}")


def sweep_results(study: SweepStudy, storage_url: str) -> SweepResults:
    """The results of sweep ``study`` stored in ``storage_url`` (one clear line where the
    storage does not hold it)."""
    from .sweep import hypervolume_history, importances, open_sweep, trials_frame

    stored = open_sweep(study, storage_url)
    trials = trials_frame(stored, study)
    return SweepResults(study, trials, hypervolume_history(trials, study), importances(stored, study))


# --- workers ------------------------------------------------------------------------------------


def worker_devices(text: str | None, workers: int) -> list[str | None]:
    """``--devices`` and ``--workers`` as one entry per worker: the CUDA device index it may
    see, or None (all visible)."""
    if workers < 1:
        raise LfubenchError(f"--workers must be at least 1, got {workers}")
    if not text:
        return [None] * workers
    devices = [d.strip() for d in text.split(",") if d.strip()]
    if not devices or any(not re.fullmatch(r"cuda:\d+", d) for d in devices):
        raise LfubenchError(f"--devices must look like cuda:0,cuda:1, got {text!r}")
    if len(set(devices)) != len(devices):
        raise LfubenchError(f"--devices names a device twice: {text!r}")
    if workers not in (1, len(devices)):
        raise LfubenchError(f"--workers {workers} does not match the {len(devices)} --devices "
                            "(one worker each)")
    return [d.split(":")[1] for d in devices]


def spawn_workers(argv_prefix: Sequence[str], out: str | Path, storage: str, devices: Sequence[str | None],
                  extra: Sequence[str] = (), env: dict[str, str] | None = None) -> list[int]:
    """Start one ``lfubench`` process per entry of ``devices`` (:func:`worker_devices`) on the
    same run folder and storage: ``lfubench ARGV_PREFIX --out OUT --storage STORAGE EXTRA
    --worker-tag wK``, each seeing only its own GPU; ``env`` entries are set where the caller's
    environment does not set them. Wait for all; a worker killed or crashed (an exit code
    other than 0, or 2 for an error it reported) is one line. Return the exit codes."""
    procs = []
    for k, device in enumerate(devices):
        cmd = [sys.executable, "-m", "lfubench", *argv_prefix, "--out", str(out), "--storage", storage,
               *extra, "--worker-tag", f"w{k}"]
        child = dict(os.environ)
        for key, value in (env or {}).items():
            child.setdefault(key, value)
        if device is not None:
            child["CUDA_VISIBLE_DEVICES"] = device
        procs.append(subprocess.Popen(cmd, env=child))
    codes = [proc.wait() for proc in procs]
    if any(code not in (0, 2) for code in codes):
        raise LfubenchError(f"worker exit codes {codes}: a worker was killed or crashed; run again to resume")
    return codes


def tag_worker_logs(tag: str) -> None:
    """Prefix every log line of this worker process with ``[tag]``."""
    tagged = logging.Formatter(f"[{tag}] %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(tagged)
