"""A remote follower gets the change records themselves (issue 14), against a real server.

* it loads the whole state once, then applies each write's records (no ``GET v1/state``),
  and a revocation is denied by the next decision after its record arrived;
* after the server restarts it resumes the feed from its position (``Last-Event-ID``)
  without a full load;
* when the log was compacted past its position while it was away, it loads the whole state
  again and is right;
* the feed never sends a colleague a record about the owner's private flow.

Every ``GET v1/state`` is counted at the client's transport.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aztp_agents import Aztp
from aztp_agents.authority import Authority
from aztp_agents.guard import Guard
from aztp_agents.remote import RemoteBackend
from aztp_agents.server.testing import LiveServer, free_port, live_server, make_org
from aztp_agents.store import Store, change_log


class Counting(httpx.HTTPTransport):
    """Counts full state loads (``GET v1/state``) and feed connections."""

    def __init__(self) -> None:
        super().__init__()
        self.state_loads = 0
        self.feeds: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/v1/state"):
            self.state_loads += 1
        if request.url.path.endswith("/v1/state/changes"):
            self.feeds.append(request.headers.get("last-event-id", ""))
        return super().handle_request(request)


class Home:
    """A server home with organization acme, and its server (restartable on its port)."""

    def __init__(self, home: Path, stack: contextlib.ExitStack) -> None:
        self.home, self.stack = home, stack
        home.mkdir(parents=True)
        self.principal, self.key = make_org(home, "acme", "acme.test")
        self.port = free_port()
        self.server: LiveServer = self.start()

    def start(self) -> LiveServer:
        self.server = self.stack.enter_context(live_server(self.home, port=self.port))
        return self.server

    @property
    def url(self) -> str:
        return self.server.base_url

    def post(self, path: str, body: dict[str, Any]) -> None:
        """A write by another client (not this process's remote backends)."""
        r = httpx.post(self.url + path, headers={"api_access_key": self.key}, json=body, timeout=10)
        assert r.status_code < 300, r.text


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    with contextlib.ExitStack() as stack:
        yield Home(tmp_path / "home", stack)


def _guard(home: Home) -> tuple[Guard, str, str, RemoteBackend, Counting]:
    counting = Counting()
    backend = RemoteBackend(home.url, api_key=home.key, transport=counting, stale_after=30)
    guard = Guard("records", client=Aztp(backend=backend))
    enrolled = guard.enroll("agent", ["tool"])
    assert backend.start(wait=5.0)
    return guard, enrolled.agent_id, enrolled.tools["tool"], backend, counting


def _until(what: Callable[[], bool], message: str, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not what():
        assert time.monotonic() < deadline, message
        time.sleep(0.005)


def _revoke(home: Home, tool: str, flow_id: str) -> None:
    home.post(
        "/aztp/revoke-identity-for-flow",
        {"aztpId": tool, "identityFlowId": flow_id, "reason": "feed test"},
    )


def test_records_are_applied_and_a_revocation_denies_the_next_decision(home: Home) -> None:
    guard, agent, tool, backend, counting = _guard(home)
    try:
        assert guard.check(agent, tool, "tool").allowed
        loads, applied = counting.state_loads, backend.stats["applied"]
        assert loads == 1  # the first start

        _revoke(home, tool, guard.flow_id)
        _until(lambda: backend.stats["applied"] > applied, "the record did not arrive")

        decision = guard.check(agent, tool, "tool")
        assert not decision.allowed and decision.reason.value == "tool_revoked_in_flow"
        assert counting.state_loads == loads  # applied, not reloaded
        assert backend.stats["fallback"] == 0
    finally:
        guard.client.close()


def test_a_new_flow_enrolled_here_needs_no_full_load(home: Home) -> None:
    """The write creating a flow is caught up as records (the live feed knows the flow is
    new), not by loading the whole state again."""
    guard, agent, tool, backend, counting = _guard(home)
    try:
        assert guard.check(agent, tool, "tool").allowed
        loads = counting.state_loads
        for n in range(3):
            other = Guard(f"another-{n}", client=guard.client)
            enrolled = other.enroll("agent", ["tool"])
            assert other.check(enrolled.agent_id, enrolled.tools["tool"], "tool").allowed
        assert counting.state_loads == loads
        assert backend.stats["catch_ups"] > 0 and backend.stats["fallback"] == 0
    finally:
        guard.client.close()


def test_a_follower_resumes_after_a_restart_without_a_full_load(home: Home) -> None:
    guard, agent, tool, backend, counting = _guard(home)
    try:
        assert guard.check(agent, tool, "tool").allowed
        loads = counting.state_loads
        position = backend._snapshot.position  # type: ignore[union-attr]
        assert position > 0

        home.server.kill()
        home.start()  # same port, same store
        _until(lambda: counting.feeds[-1].startswith(f"{position}:"), "no resumed feed connection")
        _revoke(home, tool, guard.flow_id)
        _until(
            lambda: backend._snapshot.position > position,  # type: ignore[union-attr]
            "the record did not arrive on the resumed feed",
        )

        decision = guard.check(agent, tool, "tool")
        assert decision.reason.value == "tool_revoked_in_flow"
        assert counting.state_loads == loads  # resumed from Last-Event-ID: no full load
    finally:
        guard.client.close()


def test_a_follower_behind_the_compacted_log_recovers_by_a_full_load(home: Home) -> None:
    guard, agent, tool, backend, counting = _guard(home)
    try:
        assert guard.check(agent, tool, "tool").allowed
        loads = counting.state_loads
        position = backend._snapshot.position  # type: ignore[union-attr]

        home.server.kill()
        # While it is away: a revocation, and the log compacted past the follower.
        store = Store.open_sqlite(home.home / "aztp.db")
        try:
            Authority(store).flows.revoke_flow_identity(home.principal, tool, guard.flow_id)
            with store.write(bump=False) as conn:
                head = change_log.heads(conn, [home.principal.org_id])[home.principal.org_id]
                change_log.compact(conn, home.principal.org_id, head)
        finally:
            store.close()
        assert head > position
        home.start()

        _until(lambda: counting.state_loads > loads, "no full load after the compaction")
        _until(
            lambda: backend._snapshot is not None and backend._snapshot.position >= head,
            "the loaded state is not at the head",
        )
        decision = guard.check(agent, tool, "tool")
        assert decision.reason.value == "tool_revoked_in_flow"
        # it asked to resume; was told to reset
        assert counting.feeds[-1].startswith(f"{position}:")
    finally:
        guard.client.close()


def test_a_follower_of_a_store_restored_from_a_backup_loads_it_afresh(home: Home) -> None:
    """The store is restored from a backup taken before a grant, and written again past the
    follower's position while it was away: the same positions now name other writes. The
    follower resumes saying which entry it saw at its position; the server finds another
    there and resets it, so the grant the restore undid is not kept."""
    guard, agent, tool, backend, counting = _guard(home)
    db, backup = home.home / "aztp.db", home.home / "backup.db"
    try:
        assert guard.check(agent, tool, "tool").allowed
        with (
            contextlib.closing(sqlite3.connect(db)) as src,
            contextlib.closing(sqlite3.connect(backup)) as dst,
        ):
            src.backup(dst)
        extra = guard.enroll("agent", ["tool", "extra"]).tools["extra"]  # after the backup
        _until(lambda: guard.check(agent, extra, "extra").allowed, "the grant did not arrive")
        position, loads = backend._snapshot.position, counting.state_loads  # type: ignore[union-attr]

        feeds = len(counting.feeds)
        home.server.kill()
        for leftover in ("aztp.db-wal", "aztp.db-shm"):
            (home.home / leftover).unlink(missing_ok=True)
        shutil.copyfile(backup, db)  # restored: the grant is gone
        store = Store.open_sqlite(db)
        try:  # written again while the follower is away, past its position
            authority = Authority(store, issuance_rate=None)
            org = home.principal.org_id

            def head() -> int:
                with store.read() as conn:
                    return change_log.heads(conn, [org])[org]

            n = 0
            while head() < position:
                authority.identities.secure_connect(home.principal, f"later-{n}", make_key=False)
                n += 1
        finally:
            store.close()
        home.start()

        _until(lambda: counting.state_loads > loads, "the follower was not reset")
        _until(
            lambda: not guard.check(agent, extra, "extra").allowed,
            "the follower still allows a grant the restored store does not have",
        )
        assert guard.check(agent, extra, "extra").reason.value == "tool_unknown"
        assert guard.check(agent, tool, "tool").allowed  # what the backup had still holds
        # it asked to resume there, naming the entry it saw
        assert any(f.startswith(f"{position}:") for f in counting.feeds[feeds:])
    finally:
        guard.client.close()


def test_the_feed_never_sends_a_colleague_the_owners_private_flow(home: Home) -> None:
    store = Store.open_sqlite(home.home / "aztp.db")
    try:
        authority = Authority(store)
        bob = authority.create_user(home.principal.org_id, "bob")
        _, bob_key = authority.tenants.create_api_key(bob.org_id, bob.user_id)
    finally:
        store.close()
    owner = Aztp(api_key=home.key, base_url=home.url)
    events: list[tuple[str, dict[str, Any]]] = []
    try:
        agent = owner.backend.call("secure_connect", name="private-agent")["identity"]["aztpId"]
        with (
            httpx.Client(timeout=httpx.Timeout(10, read=5)) as c,
            c.stream(
                "GET", f"{home.url}/v1/state/changes", headers={"api_access_key": bob_key}
            ) as stream,
        ):
            lines = stream.iter_lines()
            name = None
            wrote = False
            public: dict[str, Any] = {}
            for line in lines:
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: ") and name:
                    events.append((name, json.loads(line[6:])))
                if name == "revision" and not wrote:  # live: now the owner writes
                    wrote = True
                    private = owner.backend.call(
                        "create_flow", name="secret", discoverable="private"
                    )
                    owner.backend.call(
                        "add_identity_to_flow", flow_id=private["_id"], aztp_id=agent
                    )
                    public = owner.backend.call("create_flow", name="open", discoverable="public")
                    owner.backend.call("add_identity_to_flow", flow_id=public["_id"], aztp_id=agent)
                if public and any(
                    n == "changes"
                    and public["_id"] in json.dumps(d)
                    and '"member"' in json.dumps(d)
                    for n, d in events
                ):
                    break
    finally:
        owner.close()
    text = json.dumps(events)
    assert private["_id"] not in text and "secret" not in text
    assert public["_id"] in text  # the colleague does get the public flow's records
    assert home.principal.user_id not in text  # nor any owner
    assert [n for n, _ in events].count("reset") == 1  # the first event only: no position


def test_a_flow_made_private_resets_a_colleagues_follower_and_hides_it(home: Home) -> None:
    """What a colleague sees of a flow changes: its follower is reset (the owner's records
    about a now-private flow are never sent) and decides the flow as unknown; made public
    again, the next reset brings it back."""
    store = Store.open_sqlite(home.home / "aztp.db")
    try:
        authority = Authority(store)
        bob = authority.create_user(home.principal.org_id, "bob")
        _, bob_key = authority.tenants.create_api_key(bob.org_id, bob.user_id)
    finally:
        store.close()
    guard, agent, tool, _owner_backend, _ = _guard(home)
    counting = Counting()
    colleague = RemoteBackend(home.url, api_key=bob_key, transport=counting, stale_after=30)
    client = Aztp(backend=colleague)

    def visibility(value: str) -> None:
        r = httpx.put(
            f"{home.url}/identity-flow/update/{guard.flow_id}",
            headers={"api_access_key": home.key},
            json={"discoverable": value},
            timeout=10,
        )
        assert r.status_code == 200, r.text

    def decide() -> str:
        made = colleague.decide(flow_id=guard.flow_id, agent=agent, tool=tool, tool_name="tool")
        return made.reason.value

    try:
        visibility("public")
        assert colleague.start(wait=5.0)
        _until(lambda: decide() == "allowed", "the colleague does not see the public flow")
        loads = counting.state_loads

        visibility("private")
        _until(lambda: counting.state_loads > loads, "no reset when the flow went private")
        _until(lambda: decide() == "flow_unknown", "the private flow is still decided on")
        assert guard.flow_id not in colleague._snapshot.flows  # type: ignore[union-attr]
        # the owner's write to the now-private flow reaches the colleague as nothing at all
        applied = colleague.stats["applied"]
        _revoke(home, tool, guard.flow_id)
        _until(
            lambda: guard.check(agent, tool, "tool").reason.value == "tool_revoked_in_flow",
            "the owner's follower did not get the revocation",
        )
        assert decide() == "flow_unknown"
        held = colleague._snapshot
        assert held is not None
        assert guard.flow_id not in held.members and guard.flow_id not in held.flow_revoked
        loads = counting.state_loads

        visibility("public")
        _until(lambda: counting.state_loads > loads, "no reset when the flow went public")
        _until(lambda: decide() == "tool_revoked_in_flow", "the public flow is not back")
        assert colleague.stats["applied"] >= applied
    finally:
        client.close()
        guard.client.close()
