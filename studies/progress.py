"""What a user sees while a plan runs: one log line when an item starts and one when it ends,
with an estimate of the time left (this worker's mean item time times the items not yet
complete; with several workers, roughly that over their number), a summary at the end, and
-- in a terminal -- one overall bar over the items above the training bar. Log lines go
through :mod:`logging`, so a job log (CI, ``nohup``, a cluster scheduler) shows them too."""

from __future__ import annotations

import logging
import sys
import time

import numpy as np

from lfubench.reports.record import ItemRecord

log = logging.getLogger("lfubench.cli.bench")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class PlanProgress:
    """Counts and reports the items of one worker; ``n_items`` in the plan, ``done_before``
    already complete when the worker started."""

    def __init__(self, n_items: int, done_before: int, budget: str, bar: bool) -> None:
        self.n, self.k, self.budget = n_items, done_before, budget
        self.started = time.perf_counter()
        self.ran, self.failed, self.seconds = 0, 0, 0.0
        self.bar = None
        if bar and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=n_items, initial=done_before, desc="items", unit="item", position=0,
                            dynamic_ncols=True)

    def start(self, item_id: str, position: int | None = None) -> float:
        """Log the start; ``position``: the item's place in the plan (items complete or running,
        this one included), read from the storage so that workers count alike."""
        self.k = position if position is not None else self.k + 1
        log.info("item %d/%d %s: started (budget %s)", self.k, self.n, item_id, self.budget)
        return time.perf_counter()

    def finished(self, item_id: str, record: ItemRecord, t0: float, remaining: int | None = None) -> None:
        """Log the end: time, scores, size; with ``remaining`` (items not yet complete), an
        estimate of the time left at this worker's mean item time."""
        self.ran += 1
        self.seconds += time.perf_counter() - t0
        rows = [r for r in record.metrics if r.get("stage", "final") == "final"]  # the delivered model
        top = max(r["level"] for r in rows)
        dice = {}
        for r in rows:
            if r["level"] == top and r["metric"] == "dice" and r["value"] is not None:
                dice.setdefault(r["region"], []).append(r["value"])
        final = [e for e in record.efficiency if e.get("stage", "final") == "final"]
        eff = next((e for e in final if e["level"] == top), {})
        scores = ", ".join(f"{region} {np.mean(v):.4f}" for region, v in dice.items())
        level = f" L{top}" if top else ""
        left = ""
        if remaining:
            left = f"; about {_duration(remaining * self.seconds / self.ran)} left for {remaining} item(s)"
        log.info("item %d/%d %s: done in %.1f s; best val Dice %.4f; test Dice%s %s; %s params, %.4g GMACs%s",
                 self.k, self.n, item_id, time.perf_counter() - t0, record.train["best_val_dice"], level,
                 scores, f"{eff.get('params', 0):,}", eff.get("gmacs", float("nan")), left)
        self._advance()

    def failed_item(self, item_id: str, err: BaseException, t0: float) -> None:
        self.failed += 1
        log.info("item %d/%d %s: failed after %.1f s: %s", self.k, self.n, item_id, time.perf_counter() - t0,
                 f"{type(err).__name__}: {err}".splitlines()[0])
        self._advance()

    def _advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self, complete: int) -> None:
        if self.bar is not None:
            self.bar.close()
        log.info("plan: %d/%d items complete; this worker ran %d and saw %d fail in %.1f s",
                 complete, self.n, self.ran, self.failed, time.perf_counter() - self.started)
