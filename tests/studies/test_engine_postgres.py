"""The engine on a PostgreSQL storage: a throw-away cluster started and stopped by the
``postgres_url`` fixture (``conftest.py``); skipped where no PostgreSQL server or driver is installed."""

from __future__ import annotations

from collections import Counter

from lfubench.studies.engine import Engine

from .helpers import complete_items, start_plan_worker


def test_two_workers_on_postgres_finish_every_item_exactly_once(postgres_url, tmp_path):
    log = tmp_path / "runs.log"
    Engine(postgres_url, "test", [f"item{k}" for k in range(6)]).sync()
    workers = [start_plan_worker(postgres_url, 6, 0.5, log) for _ in range(2)]
    outs = [w.communicate(timeout=120)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outs
    starts = Counter(line.split()[1] for line in log.read_text().splitlines() if line.startswith("start"))
    assert starts == Counter({f"item{k}": 1 for k in range(6)})
    done = complete_items(postgres_url, 6)
    assert sorted(done) == [f"item{k}" for k in range(6)] and all(len(v) == 1 for v in done.values())
