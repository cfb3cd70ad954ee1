"""Fixtures of the studies tests: a throw-away PostgreSQL cluster (started as the ``postgres``
user when the tests run as root), which a test may stop, start and restart, or one of a test's
own with password authentication; skipped where no PostgreSQL server or driver is installed."""

from __future__ import annotations

import contextlib
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
    """A PostgreSQL cluster in a temporary folder: ``url`` (database ``lfubench``, user ``user``, no
    password in it), and ``stop``/``start``/``restart`` as ``pg_ctl`` does them.

    Without a ``password`` every local connection is trusted; with one, the server asks every
    connection for it (scram-sha-256), and ``password_url`` is ``url`` with the password in it.
    """

    def __init__(self, bindir: Path, as_user: list[str], user: str = "postgres",
                 password: str | None = None) -> None:
        self.bindir, self.as_user, self.user, self.password = bindir, as_user, user, password
        self.data = Path(tempfile.mkdtemp(prefix="lfubench-pg-"))  # pytest's folders are private to root
        os.chmod(self.data, 0o755)
        if as_user:
            shutil.chown(self.data, "postgres", "postgres")
        self.port = _free_port()
        self.cluster = self.data / "cluster"
        self.url = f"postgresql://{user}@127.0.0.1:{self.port}/lfubench"  # the README's form, psycopg 3
        self.password_url = self.url.replace(f"{user}@", f"{user}:{password}@") if password else self.url

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = ["env", f"PGPASSWORD={self.password}"] if self.password else []  # for the client tools
        return subprocess.run([*self.as_user, *env, str(self.bindir / tool), *args], check=check,
                              capture_output=True)

    def _pg_ctl(self, *args: str, check: bool = True) -> float:
        """Run ``pg_ctl`` on the cluster and wait for it; return the seconds it took."""
        t0 = time.monotonic()
        self._run("pg_ctl", "-D", str(self.cluster), "-l", str(self.data / "log"), "-w",
                  "-o", f"-p {self.port} -k {self.data} -h 127.0.0.1", *args, check=check)
        return time.monotonic() - t0

    def init(self) -> None:
        auth = ["-A", "trust"]
        if self.password:
            pwfile = self.data / "pw"
            pwfile.write_text(self.password)
            if self.as_user:
                shutil.chown(pwfile, "postgres", "postgres")
            auth = ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
        self._run("initdb", "-D", str(self.cluster), "-U", self.user, *auth)
        self.start()
        self.database("lfubench")

    def database(self, name: str) -> str:
        """A new database of the cluster; its URL."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name)
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


@contextlib.contextmanager
def _running_cluster(user: str = "postgres", password: str | None = None):
    """A running :class:`PgCluster`, removed on leaving; skips the test where no PostgreSQL server
    or driver is installed."""
    pytest.importorskip("psycopg", reason="psycopg (the postgres extra) is not installed")
    if not PG_BIN:
        pytest.skip("no PostgreSQL server installed (/usr/lib/postgresql/*/bin)")
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser to start PostgreSQL as another user")
        as_user = ["runuser", "-u", "postgres", "--"]
    cluster = PgCluster(Path(PG_BIN[-1]), as_user, user, password)
    try:
        cluster.init()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="module")
def postgres():
    """A running :class:`PgCluster` (user ``postgres``, trusted), removed after the module's tests."""
    with _running_cluster() as cluster:
        yield cluster


@pytest.fixture
def make_postgres():
    """``make_postgres(user=..., password=...)``: a running :class:`PgCluster` of its own (with a
    password: password authentication), removed after the test."""
    with contextlib.ExitStack() as stack:
        yield lambda **kwargs: stack.enter_context(_running_cluster(**kwargs))


@pytest.fixture(scope="module")
def postgres_url(postgres) -> str:
    """The URL of the module's PostgreSQL database."""
    return postgres.url
