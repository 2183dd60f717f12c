"""A client given several replicas follows one and moves to the next when it dies; a change
acknowledged by one replica is honoured by a client following another."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from aztp_agents import Aztp
from aztp_agents.client._remote import RemoteBackend
from aztp_agents.guard import Guard
from tests.authority.helpers import REPO, run
from tests.replicas.conftest import Cluster

#: A hang guard for conditions that become true by themselves (not a performance bound).
PATIENCE_S = 30.0


def test_a_client_moves_to_the_next_replica_when_the_one_it_follows_is_killed(
    replicas: Callable[[int], Cluster],
) -> None:
    cluster = replicas(2)
    first, second = cluster.servers
    client = Aztp(api_key=cluster.key, base_url=cluster.urls)
    try:
        before = run(client.secure_connect({}, "before-kill")).identity.aztp_id
        assert client.backend.base_url == first.base_url + "/"  # type: ignore[attr-defined]
        first.kill()  # SIGKILL by PID, as a crash
        # A write (not idempotent) still goes through: the dead replica refused the connection,
        # so the request was never sent there.
        after = run(client.secure_connect({}, "after-kill")).identity.aztp_id
        assert client.backend.base_url == second.base_url + "/"  # type: ignore[attr-defined]
        assert run(client.verify_identity_by_aztp_id(before)) is True
        assert run(client.verify_identity_by_aztp_id(after)) is True
    finally:
        client.close()


def test_a_comma_separated_aztp_url_is_a_list_of_replicas(
    replicas: Callable[[int], Cluster],
) -> None:
    cluster = replicas(2)
    env = {
        **os.environ,
        "AZTP_URL": ",".join(cluster.urls),
        "AZTP_API_KEY": cluster.key,
        "PYTHONPATH": str(REPO),
    }
    cluster.servers[0].kill()
    done = subprocess.run(
        [sys.executable, "-m", "aztp_agents.cli", "identity", "issue", "via-env"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert "via-env" in done.stdout


def _guard(url: str | list[str], key: str, flow: str, **kw: float) -> tuple[Guard, str, str]:
    backend = RemoteBackend(url, api_key=key, **kw)
    guard = Guard(flow, client=Aztp(backend=backend))
    enrolled = guard.enroll("agent", ["tool"])
    assert backend.start(wait=10.0)
    return guard, enrolled.agent_id, enrolled.tools["tool"]


_REVOKER = """
import asyncio, sys
import pytest

from aztp_agents import Aztp
c = Aztp(base_url=sys.argv[1])
asyncio.run(c.revoke_flow_identity(sys.argv[2], sys.argv[3], "compromised"))
print("acked")
"""


def test_a_revocation_acknowledged_by_one_replica_is_honoured_through_another(
    replicas: Callable[[int], Cluster],
) -> None:
    cluster = replicas(2)
    one, two = cluster.urls
    guard, agent, tool = _guard(two, cluster.key, "cross")  # follows replica 2 only
    try:
        assert guard.check(agent, tool, "tool").allowed
        # Another process revokes the tool in the flow through replica 1.
        done = subprocess.run(
            [sys.executable, "-c", _REVOKER, one, tool, guard.flow_id],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "AZTP_API_KEY": cluster.key, "PYTHONPATH": str(REPO)},
        )
        assert done.returncode == 0 and "acked" in done.stdout, done.stderr
        deadline = time.monotonic() + PATIENCE_S
        while (decision := guard.check(agent, tool, "tool")).allowed:
            assert time.monotonic() < deadline, "replica 2's followers never saw the revocation"
            time.sleep(0.01)
        assert decision.reason.value == "tool_revoked_in_flow"
        for _ in range(20):  # and never an allow again
            assert guard.check(agent, tool, "tool").reason.value == "tool_revoked_in_flow"
    finally:
        guard.client.close()


def test_a_revocation_made_here_through_replica_1_is_honoured_at_once_by_a_guard_on_replica_2(
    replicas: Callable[[int], Cluster],
) -> None:
    """In one process, a write acknowledged through any client makes every follower re-read
    before its next decision: replica 2 must then already answer with the new state."""
    cluster = replicas(2)
    one, two = cluster.urls
    guard, agent, tool = _guard(two, cluster.key, "same-process")
    operator = Aztp(api_key=cluster.key, base_url=one)
    try:
        assert guard.check(agent, tool, "tool").allowed
        asyncio.run(operator.revoke_flow_identity(tool, guard.flow_id, "compromised"))
        decision = guard.check(agent, tool, "tool")
        assert decision.reason.value == "tool_revoked_in_flow"
    finally:
        operator.close()
        guard.client.close()


def test_decisions_fail_closed_when_no_replica_answers(
    replicas: Callable[[int], Cluster],
) -> None:
    cluster = replicas(2)
    guard, agent, tool = _guard(cluster.urls, cluster.key, "outage", stale_after=1.0)
    try:
        assert guard.check(agent, tool, "tool").allowed
        for server in cluster.servers:
            server.kill()
        deadline = time.monotonic() + PATIENCE_S
        while (decision := guard.check(agent, tool, "tool")).allowed:
            assert time.monotonic() < deadline, "still allowing with no replica alive"
            time.sleep(0.02)
        assert decision.reason.value == "authority_unavailable"
        for _ in range(10):  # and it stays closed
            assert guard.check(agent, tool, "tool").reason.value == "authority_unavailable"
    finally:
        guard.client.close()


def test_server_urls_are_one_a_list_or_comma_separated_and_each_must_be_http() -> None:
    from aztp_agents.errors import ValidationError

    backend = RemoteBackend(" http://127.0.0.1:1 ,https://b.example/astha/v1/", api_key="k")
    try:
        assert backend.base_urls == ("http://127.0.0.1:1/", "https://b.example/astha/v1/")
        assert backend.base_url == "http://127.0.0.1:1/"
    finally:
        backend.close()
    for bad in ("http://a,ftp://b", [], ",", ["http://a", 3]):
        with pytest.raises(ValidationError, match="http"):
            RemoteBackend(bad, api_key="k")  # type: ignore[arg-type]
