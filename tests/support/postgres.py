"""A throwaway PostgreSQL cluster for tests: Debian's ``postgresql`` package, a temporary
folder, a free port on 127.0.0.1, stopped by PID.

PostgreSQL refuses to run as root, so when the tests run as root (CI) the cluster is made and
run as an unprivileged user (``postgres`` if the package created it, else ``nobody``) through
``runuser``. Durability settings are off (``fsync``): a test cluster is thrown away, and tests
that restart it shut it down cleanly first.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aztp_agents.server.testing import free_port

__all__ = ["PostgresCluster", "find_bin", "postgres_available"]


def find_bin(name: str) -> str | None:
    """The newest Debian PostgreSQL binary called ``name``, else one on PATH."""
    found = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    return found[-1] if found else shutil.which(name)


def postgres_available() -> bool:
    return find_bin("initdb") is not None and find_bin("postgres") is not None


def _run_as() -> list[str]:
    """The command prefix that drops root (empty when not root)."""
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return ["runuser", "-u", user, "--"]
    raise RuntimeError("running as root and no unprivileged user to run PostgreSQL as")


@dataclass
class PostgresCluster:
    """One running cluster; :meth:`database` makes a fresh database and returns its URL."""

    folder: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    _made: int = field(default=0)

    @classmethod
    def start(cls) -> PostgresCluster:
        initdb, postgres = find_bin("initdb"), find_bin("postgres")
        if initdb is None or postgres is None:
            raise RuntimeError("PostgreSQL is not installed (Debian package: postgresql)")
        folder = Path(tempfile.mkdtemp(prefix="aztp-pg-"))
        prefix = _run_as()
        if prefix:
            user = prefix[2]
            entry = pwd.getpwnam(user)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        os.chmod(folder, 0o700)
        data = folder / "data"
        subprocess.run(
            [*prefix, initdb, "-D", str(data), "-U", "aztp", "-A", "trust", "-E", "UTF8", "-N"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        cluster = cls(folder=folder, port=free_port())
        cluster._spawn()
        return cluster

    def _spawn(self) -> None:
        postgres = find_bin("postgres")
        assert postgres is not None
        log = open(self.folder / "postgres.log", "ab")  # noqa: SIM115 - the server's stderr
        self.process = subprocess.Popen(
            [
                *_run_as(),
                postgres,
                "-D",
                str(self.folder / "data"),
                "-p",
                str(self.port),
                "-k",
                str(self.folder),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.admin_dsn, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(
                        "PostgreSQL did not start: " + (self.folder / "postgres.log").read_text()
                    ) from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    @property
    def admin_dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=aztp dbname=postgres"

    def database(self, name: str | None = None) -> str:
        """A new empty database; its SQLAlchemy URL (``postgresql+psycopg://...``)."""
        import psycopg

        self._made += 1
        name = name or f"aztp_{os.getpid()}_{self._made}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://aztp@127.0.0.1:{self.port}/{name}"

    def _postmaster_pid(self) -> int | None:
        """The postmaster's PID from its lock file (the process started may be ``runuser``)."""
        try:
            first = (self.folder / "data" / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first)
        except (OSError, ValueError):
            return None

    def stop(self, *, fast: bool = True) -> None:
        """Stop the server by PID (``fast``: SIGINT, PostgreSQL's fast shutdown), signalling
        the postmaster itself and waiting until it is gone (so a restart finds no lock)."""
        proc = self.process
        if proc is None:
            return
        postmaster = self._postmaster_pid()
        with contextlib.suppress(ProcessLookupError):
            os.kill(postmaster or proc.pid, signal.SIGINT if fast else signal.SIGTERM)
        try:
            proc.wait(timeout=30)
            deadline = time.monotonic() + 30
            while postmaster is not None and time.monotonic() < deadline:
                try:
                    os.kill(postmaster, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self._spawn()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def running_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster.start()
    try:
        yield cluster
    finally:
        cluster.close()
