"""Two sweep workers on a real PostgreSQL server (the throwaway cluster of the
``postgres_url`` fixture, ``conftest.py``): exactly n trials, none lost or duplicated."""

from __future__ import annotations

from collections import Counter

from .helpers import complete_by_slot, start_sweep_worker, write_study


def test_two_sweep_workers_on_postgres_run_exactly_n_trials(postgres_url, tmp_path):
    study = write_study(tmp_path, n_trials=6)
    log = tmp_path / "runs.log"
    procs = [start_sweep_worker(str(study), postgres_url, log, 0.3) for _ in range(2)]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    starts = Counter(line.split()[2] for line in log.read_text().splitlines())
    assert starts == Counter({str(k): 1 for k in range(6)})
    done = complete_by_slot(study, postgres_url)
    assert sorted(done) == list(range(6)) and all(len(v) == 1 for v in done.values())
    assert all("'complete': 0" not in o for o in outs), outs
