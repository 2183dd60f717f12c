"""Several ``aztp-agents serve`` replicas on one PostgreSQL database (issue 15): real server
processes on free ports, stopped (or killed) by PID; one database per test."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aztp_agents.authority import Authority
from aztp_agents.server.testing import LiveServer, live_server
from aztp_agents.store import Store


@dataclass
class Cluster:
    """Replicas of one database, and an organization's API key on it."""

    database_url: str
    key: str
    servers: list[LiveServer]
    #: ``relaunch(i)``: start replica ``i`` again on its port (after a kill).
    relaunch: Callable[[int], LiveServer] = field(repr=False, default=lambda i: None)  # type: ignore[assignment,return-value]

    @property
    def urls(self) -> list[str]:
        return [s.base_url for s in self.servers]


def make_org(database_url: str, name: str = "acme", trust_domain: str = "acme.test") -> str:
    """An organization on the database (as ``aztp-agents org create`` makes it); its key."""
    store = Store.open_url(database_url)
    try:
        _, key = Authority(store).create_org(name, trust_domain)
    finally:
        store.close()
    assert key is not None
    return key


@pytest.fixture
def replicas(pg_url: str, tmp_path: Path) -> Iterator[Callable[[int], Cluster]]:
    """``replicas(n)``: ``n`` servers on one fresh, migrated database, with org ``acme``."""
    with contextlib.ExitStack() as stack:

        def launch(i: int, port: int | None = None) -> LiveServer:
            return stack.enter_context(
                live_server(tmp_path / f"replica-{i}", port=port, args=["--database-url", pg_url])
            )

        def start(n: int) -> Cluster:
            key = make_org(pg_url)
            cluster = Cluster(pg_url, key, [launch(i) for i in range(n)])

            def relaunch(i: int) -> LiveServer:
                port = int(cluster.servers[i].url.rsplit(":", 1)[1])
                cluster.servers[i] = launch(i, port)
                return cluster.servers[i]

            cluster.relaunch = relaunch
            return cluster

        yield start
