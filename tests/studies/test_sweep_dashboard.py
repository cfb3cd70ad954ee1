"""A sweep's storage read by optuna-dashboard (the ``dashboard`` extra): its studies, trials,
objective names and front, through the dashboard's own web API."""

from __future__ import annotations

import io
import json
import sys

import pytest

from lfubench.studies.engine import EngineConfig

from .helpers import fake_record, write_study


def _get(app, path: str) -> dict:
    status = {}

    def start(line, headers, exc_info=None):
        status["line"] = line

    env = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "wsgi.input": io.BytesIO(),
           "wsgi.errors": sys.stderr, "SERVER_NAME": "localhost", "SERVER_PORT": "80",
           "wsgi.url_scheme": "http"}
    body = b"".join(app(env, start))
    assert status["line"] == "200 OK", (path, status, body[:200])
    return json.loads(body)


def test_dashboard_reads_a_sweep_storage(tmp_path):
    dashboard = pytest.importorskip("optuna_dashboard",
                                    reason="optuna-dashboard (the dashboard extra) is not installed")
    from lfubench.studies.sweep import Sweep
    from lfubench.studies.sweepfile import load_study

    storage = f"sqlite:///{tmp_path}/s.db"
    sweep = Sweep(load_study(write_study(tmp_path, n_trials=5)), storage, EngineConfig(grace_s=30))
    assert sweep.run(lambda spec, trial: fake_record(spec)) == {"complete": 5, "failed": 0, "pruned": 0}
    app = dashboard.wsgi(sweep.storage)
    studies = _get(app, "/api/studies")["study_summaries"]
    assert [(s["study_name"], s["directions"]) for s in studies] == [("fake", ["maximize", "minimize"])]
    detail = _get(app, f"/api/studies/{studies[0]['study_id']}")
    assert detail["objective_names"] == ["dice:mean", "params"]
    assert len(detail["trials"]) == 5 and {t["state"] for t in detail["trials"]} == {"Complete"}
    assert {t["number"] for t in detail["best_trials"]} == {t.number for t in sweep.study.best_trials}
