"""Prometheus ``/metrics`` of ``aztp-agents serve``: scraped from a real server process.

* no token configured -> no ``/metrics`` (404), a wrong token or an API key -> 401;
* request counts and latencies by route template (never the raw path);
* decisions by reason: taken at the server (``source="server"``) and taken at a remote
  enforcement point, then recorded here (``source="remote"``);
* change-feed followers come and go with a remote client;
* the audit writer's gauges; 429 refusals (an in-process server with a tiny issuance limit,
  which the command line cannot configure).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families

from aztp_agents import Aztp
from aztp_agents.authority import Authority
from aztp_agents.guard import Guard
from aztp_agents.remote import RemoteBackend
from aztp_agents.server import create_app
from aztp_agents.server.testing import LiveServer, live_server, make_org, serving
from aztp_agents.store import Store

TOKEN = "scrape-token-0123456789abcdef"
TD = "acme.test"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, token: str = TOKEN) -> Samples:
    response = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def eventually(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll until ``check()`` holds (a bound against hanging, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    home = tmp_path_factory.mktemp("metrics-home")
    _, key = make_org(home, "acme", TD)
    token_file = home.parent / "metrics-token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    with live_server(home, args=["--metrics-token-file", str(token_file)]) as srv:
        yield srv, key
    assert "Traceback" not in srv.log(), srv.log()


def test_without_a_token_there_is_no_metrics_endpoint(tmp_path: Path) -> None:
    make_org(tmp_path, "acme", TD)
    with live_server(tmp_path) as srv:
        response = httpx.get(f"{srv.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 404


def test_the_token_may_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_org(tmp_path, "acme", TD)
    monkeypatch.setenv("AZTP_METRICS_TOKEN", TOKEN)
    with live_server(tmp_path) as srv:
        assert value(scrape(srv.url), "aztp_change_feed_followers") == 0
        wrong = httpx.get(f"{srv.url}/metrics", headers={"Authorization": "Bearer " + "x" * 20})
        assert wrong.status_code == 401


def test_a_short_token_is_refused_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "token"
    bad.write_text("short\n")
    with pytest.raises(Exception, match="at least 16 characters"):
        live_server(tmp_path / "home", args=["--metrics-token-file", str(bad)], startup_timeout=15)


def test_wrong_token_or_an_api_key_is_401(server: tuple[LiveServer, str]) -> None:
    srv, key = server
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-0123456789abcdef"},
        {"Authorization": f"Bearer {key}"},  # an API key opens the API, not the metrics
        {"api_access_key": key},
        {"Authorization": f"Basic {TOKEN}"},
    ):
        response = httpx.get(f"{srv.url}/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "aztp_" not in response.text
    # the method is checked only for a bearer of the token (nothing shows /metrics exists)
    assert httpx.post(f"{srv.url}/metrics").status_code == 401
    post = httpx.post(f"{srv.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert post.status_code == 405
    # and the metrics token opens nothing of the API
    response = httpx.get(f"{srv.url}/v1/flows", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 401


def test_requests_by_route_template_and_status(server: tuple[LiveServer, str]) -> None:
    srv, key = server
    headers = {"api_access_key": key}
    before = scrape(srv.url)
    flow = httpx.post(
        f"{srv.url}/v1/flows/ensure", headers=headers, json={"name": "metrics-flow"}
    ).json()["data"]
    for _ in range(3):
        assert httpx.get(f"{srv.url}/v1/flows/{flow['_id']}", headers=headers).status_code == 200
    assert httpx.get(f"{srv.url}/v1/flows/{'0' * 24}", headers=headers).status_code == 404
    assert httpx.get(f"{srv.url}/no/such/route/{flow['_id']}").status_code == 404

    after = scrape(srv.url)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/v1/flows/{flow_id}"
    assert grew("aztp_http_requests_total", method="GET", route=route, status="200") == 3
    assert grew("aztp_http_requests_total", method="GET", route=route, status="404") == 1
    assert grew("aztp_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert grew("aztp_http_request_duration_seconds_count", method="GET", route=route) == 4
    assert grew("aztp_http_request_duration_seconds_sum", method="GET", route=route) > 0
    # the raw path never becomes a label
    assert not any(flow["_id"] in dict(labels).get("route", "") for _, labels in after)


def test_decisions_by_reason_from_the_server_and_from_a_remote_guard(
    server: tuple[LiveServer, str],
) -> None:
    srv, key = server
    before = scrape(srv.url)
    backend = RemoteBackend(srv.url, api_key=key)
    remote = Aztp(backend=backend)
    try:
        guard = Guard(flow="metrics-prod", client=remote)
        enrollment = guard.enroll("analyst", ["lookup", "erase"])
        assert backend.start(wait=5.0)  # following the feed: decisions are taken here
        agent, lookup, erase = (
            enrollment.agent_id,
            enrollment.tools["lookup"],
            enrollment.tools["erase"],
        )
        assert guard.check(agent, lookup, "lookup").allowed
        remote.sync.revoke_identity(erase, "compromised")
        denied = guard.check(agent, erase, "erase")
        assert denied.reason.value == "tool_revoked"
        # the remote guard follows the change feed: one open stream at least
        eventually(lambda: value(scrape(srv.url), "aztp_change_feed_followers") >= 1, "a follower")
        streams = [
            dict(labels)["stream"]
            for name, labels in scrape(srv.url)
            if name == "aztp_change_feed_follower_lag_revisions"
        ]
        assert streams and all(s.isdigit() for s in streams)  # one series per open stream
        # its decisions reach the server in audit batches
        eventually(
            lambda: (
                value(
                    scrape(srv.url), "aztp_decisions_total", reason="tool_revoked", source="remote"
                )
                - value(before, "aztp_decisions_total", reason="tool_revoked", source="remote")
                == 1
            ),
            "the remote denial recorded at the server",
        )
        # one decision taken at the server itself (an enforcement point's fallback)
        answer = httpx.post(
            f"{srv.url}/v1/decisions",
            headers={"api_access_key": key},
            json={"flowId": guard.flow_id, "agent": agent, "tool": erase, "toolName": "erase"},
        )
        assert answer.json()["data"]["reason"] == "tool_revoked"
        after = scrape(srv.url)
        assert (
            value(after, "aztp_decisions_total", reason="allowed", source="remote")
            - value(before, "aztp_decisions_total", reason="allowed", source="remote")
            == 1
        )
        assert (
            value(after, "aztp_decisions_total", reason="tool_revoked", source="server")
            - value(before, "aztp_decisions_total", reason="tool_revoked", source="server")
            == 1
        )
        assert backend.stats["fallback"] == 0  # so "remote" is where they were all taken
        assert value(after, "aztp_change_feed_max_lag_revisions") >= 0
        assert value(after, "aztp_audit_writer_backlog") >= 0
        # the server's audit writer commits the three decisions (in its next window)
        eventually(
            lambda: value(scrape(srv.url), "aztp_audit_writer_records_total") >= 3,
            "the audit writer's records",
        )
    finally:
        remote.close()
    eventually(
        lambda: value(scrape(srv.url), "aztp_change_feed_followers") == 0,
        "the follower's stream closed",
    )


def test_rate_limit_refusals_are_counted(tmp_path: Path) -> None:
    """The issuance limit of ``serve`` (200/s, burst 1000) is not configurable from the
    command line, so this server runs in-process (uvicorn, real HTTP) with a burst of 1."""
    store = Store.open_sqlite(tmp_path / "aztp.db")
    try:
        authority = Authority(store, issuance_rate=(0.001, 1))
        _, key = authority.create_org("acme", TD)
        app = create_app(authority, metrics_token=TOKEN)
        with serving(app) as url:
            headers = {"api_access_key": key}
            statuses = []
            for name in ("first-one", "second-one"):
                response = httpx.post(f"{url}/v1/identities", headers=headers, json={"name": name})
                statuses.append(response.status_code)
            assert statuses == [201, 429] or statuses == [200, 429], statuses
            samples = scrape(url)
    finally:
        store.close()
    (route,) = {
        dict(labels)["route"]
        for name, labels in samples
        if name == "aztp_rate_limited_total" and dict(labels).get("route")
    }
    assert value(samples, "aztp_rate_limited_total", route=route) == 1
    assert route.startswith("/") and "second-one" not in route
