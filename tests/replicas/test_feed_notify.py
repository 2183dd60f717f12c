"""LISTEN/NOTIFY wakes the change feed of every replica (issue 15).

The replicas' safety poll is made far longer than the test's bounds
(``AZTP_FEED_SAFETY_POLL``), so only a notification can wake replica 2's feed in time: a
revocation acknowledged by replica 1 reaches a follower of replica 2 as a record, and its
next decision is a denial — also after PostgreSQL restarted (the listener reconnects).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from aztp_agents import Aztp
from aztp_agents.guard import Guard
from aztp_agents.remote import RemoteBackend

from .conftest import Cluster

#: Far beyond every bound below: a record that arrives came by notification.
SAFETY_POLL = 120.0


def _until(what: Callable[[], bool], message: str, limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while not what():
        assert time.monotonic() < deadline, message
        time.sleep(0.01)


def _revoke_via(url: str, key: str, tool: str, flow_id: str, *, revoke: bool = True) -> int:
    path = "/aztp/revoke-identity-for-flow" if revoke else "/v1/flows/reinstate"
    body: dict[str, Any] = {"aztpId": tool, "identityFlowId": flow_id}
    if revoke:
        body["reason"] = "cross-replica"
    r = httpx.post(url + path, headers={"api_access_key": key}, json=body, timeout=10)
    return r.status_code


def _metric(url: str, name: str) -> float:
    """A value of replica ``url``'s ``aztp_change_feed_<name>`` metric."""
    text = httpx.get(
        url + "/metrics", headers={"Authorization": "Bearer feed-metrics-token-0123"}, timeout=5
    ).text
    for line in text.splitlines():
        if line.startswith(f"aztp_change_feed_{name} "):
            return float(line.split()[1])
    raise AssertionError(f"no aztp_change_feed_{name} in /metrics")


def test_a_revocation_via_replica_1_reaches_a_follower_of_replica_2_by_notification(
    replicas: Callable[[int], Cluster],
    postgres_cluster: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AZTP_FEED_SAFETY_POLL", str(SAFETY_POLL))
    monkeypatch.setenv("AZTP_METRICS_TOKEN", "feed-metrics-token-0123")
    cluster = replicas(2)
    one, two = cluster.urls
    backend = RemoteBackend(two, api_key=cluster.key, stale_after=SAFETY_POLL)
    guard = Guard("cross", client=Aztp(backend=backend))
    try:
        enrolled = guard.enroll("agent", ["tool"])
        agent, tool = enrolled.agent_id, enrolled.tools["tool"]
        assert backend.start(wait=10.0)
        assert guard.check(agent, tool, "tool").allowed
        started = time.monotonic()

        for round_ in range(2):
            applied = backend.stats["applied"]
            _until(lambda: _metric(two, "listening") == 1, "replica 2 is not listening")
            heard = _metric(two, "notifications_total")
            assert _revoke_via(one, cluster.key, tool, guard.flow_id) == 200
            _until(
                lambda applied=applied: backend.stats["applied"] > applied,
                "replica 2's feed was not woken by the notification",
            )
            decision = guard.check(agent, tool, "tool")
            assert decision.reason.value == "tool_revoked_in_flow", round_
            assert backend.stats["fallback"] == 0
            assert time.monotonic() - started < SAFETY_POLL  # no safety poll could have run
            assert _metric(two, "notifications_total") > heard  # woken by the notification
            if round_ == 0:
                # PostgreSQL restarts: the listener of replica 2 reconnects by itself.
                assert _revoke_via(one, cluster.key, tool, guard.flow_id, revoke=False) < 300
                _until(lambda: guard.check(agent, tool, "tool").allowed, "reinstate not seen")
                postgres_cluster.restart()
                # Writes succeed again, and the follower's stream is back.
                _until(
                    lambda: httpx.get(two + "/identity-flow/health", timeout=5).status_code == 200,
                    "replica 2 not healthy",
                )
    finally:
        guard.client.close()
