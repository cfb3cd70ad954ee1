"""Fixtures of the studies tests: a throw-away PostgreSQL cluster (started as the ``postgres``
user when the tests run as root), which a test may stop, start and restart; skipped where no
PostgreSQL server or driver is installed."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    """A PostgreSQL cluster in a temporary folder: ``url`` (database ``lfubench``, user
    ``postgres``, no password), and ``stop``/``start``/``restart`` as ``pg_ctl`` does them."""

    def __init__(self, bindir: Path, as_user: list[str]) -> None:
        self.bindir, self.as_user = bindir, as_user
        self.data = Path(tempfile.mkdtemp(prefix="lfubench-pg-"))  # pytest's folders are private to root
        os.chmod(self.data, 0o755)
        if as_user:
            shutil.chown(self.data, "postgres", "postgres")
        self.port = _free_port()
        self.cluster = self.data / "cluster"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/lfubench"  # the README's form, psycopg 3

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_user, str(self.bindir / tool), *args], check=check,
                              capture_output=True)

    def _pg_ctl(self, *args: str, check: bool = True) -> float:
        """Run ``pg_ctl`` on the cluster and wait for it; return the seconds it took."""
        t0 = time.monotonic()
        self._run("pg_ctl", "-D", str(self.cluster), "-l", str(self.data / "log"), "-w",
                  "-o", f"-p {self.port} -k {self.data} -h 127.0.0.1", *args, check=check)
        return time.monotonic() - t0

    def init(self) -> None:
        self._run("initdb", "-D", str(self.cluster), "-U", "postgres", "-A", "trust")
        self.start()
        self.database("lfubench")

    def database(self, name: str) -> str:
        """A new database of the cluster; its URL."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def start(self) -> float:
        return self._pg_ctl("start")

    def stop(self) -> float:
        """A fast shutdown: open connections are cut, as a failover or a minor upgrade does."""
        return self._pg_ctl("-m", "fast", "stop")

    def restart(self) -> float:
        return self._pg_ctl("-m", "fast", "restart")

    def remove(self) -> None:
        self._pg_ctl("-m", "fast", "stop", check=False)
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres():
    """A running :class:`PgCluster`, removed after the module's tests."""
    pytest.importorskip("psycopg", reason="psycopg (the postgres extra) is not installed")
    if not PG_BIN:
        pytest.skip("no PostgreSQL server installed (/usr/lib/postgresql/*/bin)")
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser to start PostgreSQL as another user")
        as_user = ["runuser", "-u", "postgres", "--"]
    cluster = PgCluster(Path(PG_BIN[-1]), as_user)
    try:
        cluster.init()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="module")
def postgres_url(postgres) -> str:
    """The URL of the module's PostgreSQL database."""
    return postgres.url
