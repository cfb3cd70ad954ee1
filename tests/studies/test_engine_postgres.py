"""The engine on a PostgreSQL storage: a throw-away cluster started (as the ``postgres`` user)
and stopped by the test; skipped where no PostgreSQL server or driver is installed."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from lfubench.studies.engine import Engine
from tests.studies.test_engine import _complete, _worker

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    pytest.importorskip("psycopg", reason="psycopg (the postgres extra) is not installed")
    if not PG_BIN:
        pytest.skip("no PostgreSQL server installed (/usr/lib/postgresql/*/bin)")
    bindir = Path(PG_BIN[-1])
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser to start PostgreSQL as another user")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = Path(tempfile.mkdtemp(prefix="lfubench-pg-"))  # pytest's folders are private to root
    os.chmod(data, 0o755)
    if as_user:
        shutil.chown(data, "postgres", "postgres")
    port = _free_port()
    cluster = data / "cluster"
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(cluster), "-U", "postgres", "-A", "trust"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(cluster), "-l", str(data / "log"), "-w",
                    "-o", f"-p {port} -k {data} -h 127.0.0.1", "start"], check=True, capture_output=True)
    try:
        subprocess.run([*as_user, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                        "-U", "postgres", "lfubench"], check=True, capture_output=True)
        yield f"postgresql://postgres@127.0.0.1:{port}/lfubench"  # the README's form, psycopg 3
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(cluster), "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def test_two_workers_on_postgres_finish_every_item_exactly_once(postgres_url, tmp_path):
    log = tmp_path / "runs.log"
    Engine(postgres_url, "test", [f"item{k}" for k in range(6)]).sync()
    workers = [_worker(postgres_url, 6, 0.5, log) for _ in range(2)]
    outs = [w.communicate(timeout=120)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outs
    starts = Counter(line.split()[1] for line in log.read_text().splitlines() if line.startswith("start"))
    assert starts == Counter({f"item{k}": 1 for k in range(6)})
    done = _complete(postgres_url, 6)
    assert sorted(done) == [f"item{k}" for k in range(6)] and all(len(v) == 1 for v in done.values())
