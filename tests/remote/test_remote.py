"""The remote client (``aztp_agents.remote.RemoteBackend``) against a real server process.

* the seed 000 flow scenario through ``Aztp()`` embedded and ``Aztp(api_key, base_url)``
  remote gives the same answers (one parametrized suite; ids and times normalized);
* the private key never crosses the wire (every request and answer inspected);
* a revocation made by another process reaches a remote Guard here before its next decision
  once the change feed delivered it; a revocation acknowledged here is never followed by an
  allow here;
* feed down (server killed) -> decisions deny within the stale bound (fail closed);
* 4xx -> typed errors with the server's message; retries only for idempotent operations.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aztp_agents import Aztp
from aztp_agents.audit_check import check_decision_order
from aztp_agents.authority import Authority
from aztp_agents.errors import (
    AlreadyRevokedError,
    AuthenticationError,
    AuthorityUnavailableError,
    AztpError,
    ConflictError,
    InvalidIdError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ValidationError,
)
from aztp_agents.guard import Guard
from aztp_agents.remote import ROUTES, RemoteBackend
from aztp_agents.server.testing import live_server
from aztp_agents.store import Store
from tests.support.remote import Server, make_tls, start_server

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("aztp_agents.server") is None,
    reason="the server (aztp_agents.server) is not built yet",
)

TD = "seed.test"


# ============================================================================ fixtures


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("remote") / "home")
    yield srv
    srv.stop()


@pytest.fixture
def lone_server(tmp_path: Path) -> Iterator[Server]:
    """A server of this test alone (it may be killed)."""
    srv = start_server(tmp_path / "home")
    yield srv
    srv.stop()


_ORG_SEQ = iter(range(1, 10_000))


@pytest.fixture
def org_key(server: Server) -> str:
    """A fresh organization on the shared server (names, flows and trust domain its own)."""
    n = next(_ORG_SEQ)
    return server.org(f"org{n}", f"org{n}.test")


@pytest.fixture
def remote(server: Server, org_key: str) -> Iterator[Aztp]:
    client = Aztp(api_key=org_key, base_url=server.url)
    yield client
    client.close()


# ============================================================================ seed 000 scenario

FLOWS = [
    {
        "name": "development-flow",
        "description": "Development environment workflow",
        "discoverable": "public",
        "tags": ["development", "testing", "env:dev"],
        "metadata": {
            "environment": "development",
            "project": "aztp-testing",
            "created_by": "functional_test",
            "version": "1.0",
        },
    },
    {
        "name": "production-flow",
        "description": "Production deployment workflow",
        "discoverable": "private",
        "tags": ["production", "critical", "env:prod"],
        "metadata": {
            "environment": "production",
            "project": "aztp-testing",
            "security_level": "high",
            "astha-flow": {"id": "flow_123", "folderId": "folder_456"},
        },
    },
    {
        "name": "testing-flow",
        "description": "Automated testing workflow",
        "discoverable": "public",
        "tags": ["testing", "automation", "ci/cd"],
        "metadata": {"environment": "testing", "automation": True, "test_suite": "integration"},
    },
]

_HEX24 = re.compile(r"^[0-9a-f]{24}$")
_HEX24_IN = re.compile(r"\b[0-9a-f]{24}\b")
_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?$")
_VOLATILE = {
    "issuedAt",
    "expiresAt",
    "latencyUs",
    "revision",
    "serial",
    "hostname",
    "timestamp",
    "token",
    "kid",
    "x5c",
    "x",
    "y",
    "spiffe_sequence",
    "entries",
    "seq",
    "hash",
    "prev_hash",
}


def normalize(value: Any) -> Any:
    """Answers with ids, times, keys and certificates replaced by placeholders."""
    if isinstance(value, dict):
        return {k: ("<volatile>" if k in _VOLATILE else normalize(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    if isinstance(value, str):
        if _HEX24.match(value):
            return "<id>"
        if _ISO.match(value):
            return "<time>"
        if "-----BEGIN" in value:
            return "<pem>"
        return _HEX24_IN.sub("<id>", value)
    return value


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _key_matches_cert(key_pem: str, cert_pem: str) -> bool:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from aztp_agents.credentials import load_private_key

    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    cert_key = x509.load_pem_x509_certificate(cert_pem.encode()).public_key().public_bytes(*fmt)
    return load_private_key(key_pem).public_key().public_bytes(*fmt) == cert_key


async def _error(coro: Any) -> tuple[str, str]:
    try:
        await coro
    except AztpError as exc:
        return type(exc).__name__, exc.message
    return "no error", ""


async def seed_scenario(c: Aztp) -> list[tuple[str, Any]]:
    """Seed 000 (flow management) plus the extensions, through the public API only."""
    out: list[tuple[str, Any]] = []

    def rec(step: str, value: Any) -> Any:
        out.append((step, value))
        return value

    for cfg in FLOWS:
        flow = await c.create_flow(**cfg)
        assert _HEX24.match(flow["_id"])
        rec("create_flow", flow)

    agent1 = await c.secure_connect({}, "service1", config={"isGlobalIdentity": False})
    agent2 = await c.secure_connect({}, "service2", config={"isGlobalIdentity": False})
    for agent in (agent1, agent2):
        ident = agent.identity
        assert ident.valid and _key_matches_cert(ident.private_key, ident.certificate)
        rec(
            "secure_connect",
            {
                "aztpId": ident.aztp_id,
                "workloadId": ident.workload_id,
                "valid": ident.valid,
                "spiffeId": ident.spiffe_id,
                "status": ident.status,
            },
        )
    id1 = json.loads(await c.get_identity(agent1))["data"]["aztpId"]
    id2 = json.loads(await c.get_identity(agent2))["data"]["aztpId"]
    assert id1 == f"aztp://{TD}/workload/production/node/service1"
    rec("get_identity", json.loads(await c.get_identity(agent1)))
    rec("get_identity_by_name", json.loads(await c.get_identity_by_name("service2")))
    again = await c.secure_connect({}, "service1", config={"isGlobalIdentity": False})
    assert (
        again.identity.aztp_id == id1 and again.identity.certificate != agent1.identity.certificate
    )

    flow = await c.create_flow(
        name="identity-management-demo",
        description="Demonstration of identity management in flows",
        discoverable="public",
        tags=["demo", "testing"],
        metadata={"project": "identity-demo", "environment": "development"},
    )
    fid = flow["_id"]
    assert len((await c.add_identity_to_flow(fid, id1))["identities"]) == 1
    rec("add_identity_to_flow", await c.add_identity_to_flow(fid, id2))
    assert rec(
        "verify_in_flow",
        [await c.verify_identity_by_aztp_id(i, identity_flow_id=fid) for i in (id1, id2)],
    ) == [True, True]
    assert (
        len(
            rec("remove_identity_from_flow", await c.remove_identity_from_flow(fid, id1))[
                "identities"
            ]
        )
        == 1
    )
    assert (
        rec("verify_after_removal", await c.verify_identity_by_aztp_id(id1, identity_flow_id=fid))
        is False
    )
    assert len((await c.add_identity_to_flow(fid, id1))["identities"]) == 2

    rec(
        "revoke_flow_identity",
        await c.revoke_flow_identity(
            aztp_id=id2,
            identity_flow_id=fid,
            reason="Testing flow-specific revocation in documentation demo",
        ),
    )
    assert (
        rec(
            "flow_verify_after_revoke",
            await c.verify_identity_by_aztp_id(id2, identity_flow_id=fid),
        )
        is False
    )
    assert rec("global_verify_after_flow_revoke", await c.verify_identity_by_aztp_id(id2)) is True
    rec("verify_detail", await c.verify(id2, fid))
    assert (
        rec("revoke_flow_twice", await _error(c.revoke_flow_identity(id2, fid, "again")))[0]
        == "AlreadyRevokedError"
    )

    rec("link_identities", await c.link_identities(id1, id2, "linked", {"purpose": "demo"}))
    assert rec("authorize", await c.verify_authorize_identity_connection(id1, id2)) is True
    assert rec("authorize_reverse", await c.verify_authorize_identity_connection(id2, id1)) is True

    rec("revoke_identity", json.loads(await c.revoke_identity(id1, "compromised")))
    assert rec("verify_revoked", await c.verify_identity_by_aztp_id(id1)) is False
    assert rec("authorize_revoked", await c.verify_authorize_identity_connection(id1, id2)) is False
    rec("revoke_twice", await _error(c.revoke_identity(id1, "again")))
    reissued = rec("reissue_identity", json.loads(await c.reissue_identity(id1)))
    assert "privateKey" not in reissued
    assert rec("verify_reissued", await c.verify_identity_by_aztp_id(id1)) is True

    rec("update_flow", await c.update_flow(fid, description="updated", tags=["demo", "updated"]))
    rec("flow_health", await c.get_flow_health(fid))
    rec("reinstate_flow_identity", await c.reinstate_flow_identity(id2, fid))
    assert (
        rec("verify_reinstated", await c.verify_identity_by_aztp_id(id2, identity_flow_id=fid))
        is True
    )
    rec("discover_identity", json.loads(await c.discover_identity()))
    rec("discover_in_td", json.loads(await c.discover_identity(TD, id1)))
    assert rec("get_policy_empty", await c.get_policy(id1)) == []

    code = "policy:0650537f8614"
    doc = {
        "Statement": [
            {"Effect": "Allow", "Action": "tool:*"},
            {"Effect": "Deny", "Action": "tool:delete"},
        ]
    }
    rec("create_policy", await c.create_policy("tool-access", doc, code=code))
    rec("attach_policy", await c.attach_policy(id1, code))
    policies = rec("get_policy", await c.get_policy(id1))
    statement = Aztp.get_policy_value(policies, "code", code)
    assert Aztp.is_action_allowed(statement, "tool:read") and not Aztp.is_action_allowed(
        statement, "tool:delete"
    )
    rec(
        "check_permissions",
        await c.check_identity_policy_permissions(
            id1, {"policy_code": code, "actions": ["tool:read", "tool:delete"]}
        ),
    )
    rec("oiap_evaluate", await c.oiap_evaluate(id1, "documents", "user-1"))
    rec("detach_policy", await c.detach_policy(id1, code))
    rec("unlink_identities", await c.unlink_identities(id1, id2))
    assert (
        rec("authorize_unlinked", await c.verify_authorize_identity_connection(id1, id2)) is False
    )

    token = await c.fetch_jwt_svid(id1, "spiffe://seed.test/api")
    claims = _claims(token)
    rec("jwt_svid", {"sub": claims["sub"], "aud": claims["aud"]})
    bundle = await c.get_trust_bundle()
    rec("trust_bundle", {td: sorted(k["use"] for k in jwks["keys"]) for td, jwks in bundle.items()})
    rec("trust_bundle_one", sorted(await c.get_trust_bundle(TD)))
    cred = await c.issue_credential(id1, ttl=600)
    assert _key_matches_cert(cred.private_key, cred.certificate)
    rec(
        "issue_credential",
        {"aztpId": cred.aztp_id, "valid": cred.valid, "spiffeId": cred.spiffe_id},
    )

    rec("list_flows", sorted(f["name"] for f in await c.list_flows()))
    rec("get_flow", await c.get_flow(fid))
    rec("list_identities", [i["name"] for i in await c.list_identities()])
    rec("delete_flow", await c.delete_flow(fid))
    rec("get_deleted_flow", await _error(c.get_flow(fid)))
    rec("unknown_name", await _error(c.get_identity_by_name("nobody-here")))
    rec("bad_id", await _error(c.verify("aztp://Seed.Test/workload/production/node/x")))
    rec("duplicate_flow", await _error(c.create_flow(**FLOWS[0])))
    rec("audit_flow_actions", [e["action"] for e in await c.audit(action="flow.*")])
    rec("verify_audit", (await c.verify_audit())["ok"])
    return out


def guard_scenario(c: Aztp) -> list[tuple[str, Any]]:
    """A Guard on the client: allow, then a flow revocation made through the same client is
    honoured by the very next decision (no waiting)."""
    guard = Guard("guarded", client=c)
    enrolled = guard.enroll("researcher", ["search", "delete"])
    if hasattr(c.backend, "start"):
        assert c.backend.start(wait=5.0)
    agent, search = enrolled.agent_id, enrolled.tools["search"]
    out = [("allowed", guard.check(agent, search, "search").reason.value)]
    asyncio.run(c.revoke_flow_identity(search, guard.flow_id, "test"))
    out.append(("after_flow_revoke", guard.check(agent, search, "search").reason.value))
    asyncio.run(c.reinstate_flow_identity(search, guard.flow_id))
    out.append(("after_reinstate", guard.check(agent, search, "search").reason.value))
    out.append(
        (
            "unknown_tool",
            guard.check(agent, f"aztp://{TD}/workload/production/node/ghost", "x").reason.value,
        )
    )
    c.backend.call("revoke_identity", aztp_id=agent, reason="test")
    out.append(("after_revoke", guard.check(agent, search, "search").reason.value))
    return out


_TRANSCRIPTS: dict[str, list[tuple[str, Any]]] = {}


@pytest.fixture
def seed_client(
    request: pytest.FixtureRequest,
    make_client: Callable[..., Aztp],
    server: Server,
    tmp_path: Path,
) -> Iterator[Aztp]:
    """The seed scenario's client: embedded or remote, on SQLite or on PostgreSQL."""
    kind = request.param
    if kind == "embedded":
        yield make_client(trust_domain=TD)
        return
    if kind == "remote":
        client = Aztp(api_key=server.org("seed", TD), base_url=server.url)
        yield client
        client.close()
        return
    pg_url = request.getfixturevalue("pg_url")
    if kind == "embedded-postgresql":
        client = Aztp(database_url=pg_url, trust_domain=TD)
        yield client
        client.close()
        return
    store = Store.open_url(pg_url)
    try:
        _, key = Authority(store).create_org("seed", TD)
    finally:
        store.close()
    assert key is not None
    with live_server(tmp_path / "pg-home", args=["--database-url", pg_url]) as live:
        client = Aztp(api_key=key, base_url=live.base_url)
        yield client
        client.close()


@pytest.mark.parametrize(
    "seed_client",
    ["embedded", "remote", "embedded-postgresql", "remote-postgresql"],
    indirect=True,
)
def test_seed_000_scenario(seed_client: Aztp, request: pytest.FixtureRequest) -> None:
    transcript = asyncio.run(seed_scenario(seed_client)) + guard_scenario(seed_client)
    expected_guard = [
        ("allowed", "allowed"),
        ("after_flow_revoke", "tool_revoked_in_flow"),
        ("after_reinstate", "allowed"),
        ("unknown_tool", "tool_unknown"),
        ("after_revoke", "agent_revoked"),
    ]
    assert transcript[-5:] == expected_guard
    kind = request.node.callspec.params["seed_client"]
    _TRANSCRIPTS[kind] = normalize(transcript)
    embedded = _TRANSCRIPTS.get("embedded")
    if embedded is not None:  # every way of running it tells the same story
        for other, got_steps in _TRANSCRIPTS.items():
            assert [s for s, _ in got_steps] == [s for s, _ in embedded], other
            for (step, got), (_, want) in zip(got_steps, embedded, strict=True):
                assert got == want, f"step {step!r}: {other} {got!r} != embedded {want!r}"


def test_every_facade_operation_has_a_route() -> None:
    import inspect

    from aztp_agents import guard as guard_module
    from aztp_agents.client import _base as client_module

    source = inspect.getsource(client_module) + inspect.getsource(guard_module)
    ops = set(re.findall(r"""_call\(\s*"([a-z_]+)\"""", source)) | set(
        re.findall(r"""\.call\(\s*"([a-z_]+)\"""", source)
    )
    assert ops and ops <= set(ROUTES), sorted(ops - set(ROUTES))


# ============================================================================ private keys


def test_private_key_never_crosses_the_wire(server: Server, org_key: str) -> None:
    seen: list[tuple[str, str, bytes, bytes]] = []

    def on_response(response: httpx.Response) -> None:
        response.read()
        seen.append(
            (
                response.request.method,
                response.request.url.path,
                response.request.content,
                response.content,
            )
        )

    async def aon_response(response: httpx.Response) -> None:
        await response.aread()
        seen.append(
            (
                response.request.method,
                response.request.url.path,
                response.request.content,
                response.content,
            )
        )

    backend = RemoteBackend(
        server.url,
        api_key=org_key,
        event_hooks={"response": [on_response]},
        async_event_hooks={"response": [aon_response]},
    )
    client = Aztp(backend=backend)
    try:
        sync_agent = client.secure_connect_sync(None, "keys-sync")
        async_agent = asyncio.run(client.secure_connect(None, "keys-async"))
        aztp_id = async_agent.identity.aztp_id
        cred = asyncio.run(client.issue_credential(aztp_id))
        asyncio.run(client.revoke_identity(aztp_id, "rotate"))
        reissued = backend.call("reissue_identity", aztp_id=aztp_id)
        asyncio.run(client.reissue_identity(aztp_id))  # async path, too
    finally:
        client.close()
    for key_pem, cert_pem in (
        (sync_agent.identity.private_key, sync_agent.identity.certificate),
        (async_agent.identity.private_key, async_agent.identity.certificate),
        (cred.private_key, cred.certificate),
        (reissued["privateKey"], reissued["certificate"]),
    ):
        assert "PRIVATE KEY" in key_pem and _key_matches_cert(key_pem, cert_pem)
    assert (
        len(
            {
                sync_agent.identity.private_key,
                async_agent.identity.private_key,
                cred.private_key,
                reissued["privateKey"],
            }
        )
        == 4
    )
    issuing = [
        s
        for s in seen
        if s[1].endswith(("/v1/identities", "/credential", "reissue-revoked-identity"))
    ]
    assert len(issuing) == 5
    for _method, _path, request_body, _answer in issuing:
        assert b"CERTIFICATE REQUEST" in request_body
    for method, path, request_body, answer in seen:
        assert b"PRIVATE KEY" not in request_body, (method, path)
        assert b"PRIVATE KEY" not in answer, (method, path)


# ============================================================================ propagation

_REVOKER = textwrap.dedent("""
    import os, sys, httpx
    url, aztp_id, flow_id = sys.argv[1:4]
    r = httpx.post(url + "/aztp/revoke-identity-for-flow", headers={"api_access_key": os.environ["AZTP_API_KEY"]},
                   json={"aztpId": aztp_id, "identityFlowId": flow_id, "reason": "other process"}, timeout=10)
    r.raise_for_status()
    print("acked", flush=True)
""")


def _remote_guard(
    url: str, key: str, flow: str, **kwargs: Any
) -> tuple[Guard, str, str, RemoteBackend]:
    backend = RemoteBackend(url, api_key=key, **kwargs)
    guard = Guard(flow, client=Aztp(backend=backend))
    enrolled = guard.enroll("agent", ["tool"])
    assert backend.start(wait=5.0)
    return guard, enrolled.agent_id, enrolled.tools["tool"], backend


def test_revocation_by_another_process_reaches_the_guard(server: Server, org_key: str) -> None:
    guard, agent, tool, backend = _remote_guard(server.url, org_key, "propagation")
    try:
        assert guard.check(agent, tool, "tool").allowed
        before = backend.feed_revision
        done = subprocess.run(
            [sys.executable, "-c", _REVOKER, server.url, tool, guard.flow_id],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "AZTP_API_KEY": org_key},
        )
        assert done.returncode == 0 and "acked" in done.stdout, done.stderr
        acked = time.monotonic()
        while backend.feed_revision <= before:  # the feed delivers the new revision ...
            assert time.monotonic() - acked < 2.0, (
                "the change feed did not deliver the revocation within 2 s"
            )
            time.sleep(0.001)
        decision = guard.check(agent, tool, "tool")  # ... and the next decision honours it
        assert not decision.allowed and decision.reason.value == "tool_revoked_in_flow"
        assert decision.revision >= backend.feed_revision > before
        assert backend.stats["local"] >= 2 and backend.stats["fallback"] == 0
    finally:
        guard.client.close()


def test_revocation_acknowledged_here_is_never_followed_by_an_allow(
    server: Server, org_key: str
) -> None:
    guard, agent, tool, backend = _remote_guard(server.url, org_key, "read-your-writes")
    writer = Aztp(api_key=org_key, base_url=server.url)  # another client in this process
    try:
        for _ in range(20):
            assert guard.check(agent, tool, "tool").allowed
            writer.backend.call(
                "revoke_flow_identity", aztp_id=tool, flow_id=guard.flow_id, reason="x"
            )
            assert guard.check(agent, tool, "tool").reason.value == "tool_revoked_in_flow"
            asyncio.run(writer.reinstate_flow_identity(tool, guard.flow_id))
        assert backend.stats["fallback"] == 0
    finally:
        writer.close()
        guard.client.close()


def test_async_decisions_are_local_and_audited(server: Server, org_key: str) -> None:
    guard, agent, tool, backend = _remote_guard(
        server.url, org_key, "async-flow", audit_interval=0.05
    )
    try:

        async def run() -> list[Any]:
            return [await guard.acheck(agent, tool, "tool", context={"run": i}) for i in range(25)]

        decisions = asyncio.run(run())
        assert all(d.allowed for d in decisions) and backend.stats["local"] >= 25
        deadline = time.monotonic() + 5
        while backend.stats["audit_sent"] < 25 and time.monotonic() < deadline:
            time.sleep(0.02)
        entries = asyncio.run(guard.client.audit(action="decision.*"))
        mine = [e for e in entries if e.get("subject") == agent or agent in json.dumps(e)]
        assert len(mine) >= 25
    finally:
        guard.client.close()


def test_a_remote_guards_grants_hold_in_their_flow_only(server: Server, org_key: str) -> None:
    """Issue 18.2 over the wire: the guard's links carry its flow (``identityFlowId``), and the
    replica's state (``flowLinks``) decides a grant of another flow as ``no_link``."""
    guard_a, agent, tool, backend = _remote_guard(server.url, org_key, "scoped-a")
    guard_b = Guard("scoped-b", client=guard_a.client)
    try:
        guard_b.ensure_identity("agent")
        guard_b.ensure_identity("tool")  # a member of flow B, granted to nobody there
        assert guard_a.check(agent, tool, "tool").allowed
        assert guard_b.check(agent, tool, "tool").reason.value == "no_link"
        assert backend.stats["local"] >= 2
        (link,) = asyncio.run(guard_a.client.list_links(tool))
        assert link["scope"] == "flow" and link["identityFlowIds"] == [guard_a.flow_id]
        assert (
            asyncio.run(guard_a.client.verify_authorize_identity_connection(agent, tool)) is False
        )
    finally:
        guard_a.client.close()


def test_an_operator_removal_outlasts_a_remote_guards_enrollment(
    server: Server, org_key: str
) -> None:
    """Issue 13.4 over the wire: the guard's links are ``declared``; a link an operator
    removed is not re-created by the next enrollment, and ``restore_link`` gives it back."""
    guard, agent, tool, _backend = _remote_guard(server.url, org_key, "intent")
    operator = Aztp(api_key=org_key, base_url=server.url)
    try:
        asyncio.run(operator.unlink_identities(agent, tool, reason="review"))
        again = Guard("intent", client=guard.client)  # the next process start
        again.enroll("agent", ["tool"])
        assert again.check(agent, tool, "tool").reason.value == "no_link"
        (removal,) = asyncio.run(operator.list_link_removals(agent))
        assert removal["reason"] == "review" and removal["state"] == "removed_by_operator"
        restored = asyncio.run(operator.restore_link(agent, tool))
        assert [x["identityFlowIds"] for x in restored["links"]] == [[guard.flow_id]]
        assert again.check(agent, tool, "tool").allowed
    finally:
        operator.close()
        guard.client.close()


def test_explain_over_the_wire_agrees_with_the_guard(server: Server, org_key: str) -> None:
    """Issue 16.3 over the wire: ``explain`` through a real server gives the reason the
    remote guard decides, every check, the removed link's fix and the denying statement."""
    guard, agent, tool, _backend = _remote_guard(server.url, org_key, "why")
    operator = Aztp(api_key=org_key, base_url=server.url).sync
    try:
        flow = guard.flow_id
        assert flow is not None
        ok = operator.explain(agent, tool, flow, "tool")
        assert ok["allowed"] and ok["reason"] == "allowed" and ok["linkScope"] == "flow"
        assert [c["status"] for c in ok["checks"]] == ["pass"] * 11

        operator.unlink_identities(agent, tool, reason="review")
        assert guard.check(agent, tool, "tool").reason.value == "no_link"
        gone = operator.explain(agent, tool, flow, "tool")
        assert gone["reason"] == "no_link"
        (link,) = [c for c in gone["checks"] if c["check"] == "link"]
        assert (
            link["status"] == "fail" and link["fix"] == f"aztp-agents restore-link {agent} {tool}"
        )

        operator.restore_link(agent, tool)
        deny = operator.create_policy(
            "no-tool",
            {"Statement": [{"Sid": "NoTool", "Effect": "Deny", "Action": "tool:tool"}]},
        )
        operator.attach_policy(tool, deny["code"])
        (listed,) = operator.list_policies()  # GET v1/policies (issue 16.7)
        assert (listed["code"], listed["attachedTo"]) == (deny["code"], [tool])
        decision = guard.check(agent, tool, "tool")
        assert decision.reason.value == "policy_denied"
        assert decision.detail == (
            f'a Deny statement matches: "NoTool" Deny tool:tool (attached to {tool})'
        )
        why = operator.explain(agent, tool, flow, "tool")
        assert why["reason"] == "policy_denied" and not why["allowed"]
        (statement,) = why["statements"]
        assert statement["policyCode"] == deny["code"] and statement["sid"] == "NoTool"
        assert why["detail"] == (
            f'denied by {deny["code"]} (no-tool) statement "NoTool" (#0): Deny tool:tool on *'
        )
        with pytest.raises(ValidationError):
            operator.explain("not-an-id", tool, flow)
    finally:
        operator.close()
        guard.client.close()


def test_feed_down_fails_closed_within_the_stale_bound(lone_server: Server) -> None:
    guard, agent, tool, backend = _remote_guard(
        lone_server.url, lone_server.key, "outage", stale_after=1.5
    )
    try:
        assert guard.check(agent, tool, "tool").allowed
        lone_server.kill()
        killed = time.monotonic()
        while True:
            decision = guard.check(agent, tool, "tool")
            if not decision.allowed:
                break
            assert time.monotonic() - killed < 1.5 + 0.5, "still allowing past the stale bound"
            time.sleep(0.02)
        assert decision.reason.value == "authority_unavailable"
        denied_after = time.monotonic() - killed
        assert denied_after <= 2.0
        for _ in range(10):  # and it stays closed
            assert guard.check(agent, tool, "tool").reason.value == "authority_unavailable"
        assert (
            asyncio.run(guard.acheck(agent, tool, "tool")).reason.value == "authority_unavailable"
        )
        assert lone_server.key not in decision.detail
    finally:
        started = time.monotonic()
        guard.client.close()
        assert time.monotonic() - started < 3
        threads = [t for t in (backend._follower, backend._auditor) if t is not None]
        for thread in threads:  # both end by themselves soon after close()
            thread.join(timeout=3)
        assert threads and not any(t.is_alive() for t in threads)


# ============================================================================ errors


def test_4xx_become_typed_errors_with_the_servers_message(server: Server, remote: Aztp) -> None:
    async def run() -> None:
        with pytest.raises(NotFoundError, match="not found"):
            await remote.identity("aztp://org1.test/workload/production/node/nobody")
        flow = await remote.create_flow("dup")
        with pytest.raises(ConflictError, match="already exists"):
            await remote.create_flow("dup")
        agent = await remote.secure_connect(None, "twice")
        await remote.add_identity_to_flow(flow["_id"], agent.identity.aztp_id)
        await remote.revoke_flow_identity(agent.identity.aztp_id, flow["_id"])
        with pytest.raises(AlreadyRevokedError, match="already revoked"):
            await remote.revoke_flow_identity(agent.identity.aztp_id, flow["_id"])
        with pytest.raises((InvalidIdError, ValidationError)):
            await remote.verify("aztp://UPPER.case/workload/production/node/x")
        with pytest.raises(ValidationError):
            await remote.create_flow("bad", discoverable="sometimes")

    asyncio.run(run())
    bad = Aztp(api_key="aztp_not-a-real-key", base_url=server.url)
    try:
        with pytest.raises(AuthenticationError) as info:
            bad.backend.call("list_flows")
        assert "aztp_not-a-real-key" not in str(info.value)
    finally:
        bad.close()


def _mock(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> RemoteBackend:
    async def ahandler(request: httpx.Request) -> httpx.Response:
        return handler(request)

    return RemoteBackend(
        "http://aztp.invalid",
        api_key="aztp_secret-key-value",
        transport=httpx.MockTransport(handler),
        async_transport=httpx.MockTransport(ahandler),
        backoff=0.001,
        **kwargs,
    )


def _answer(status: int, message: str, code: str, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, json={"success": False, "message": message, "data": {"code": code}}, headers=headers
    )


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (400, "invalid_request", ValidationError),
        (401, "unauthenticated", AuthenticationError),
        (403, "forbidden", PermissionDeniedError),
        (404, "not_found", NotFoundError),
        (409, "conflict", ConflictError),
        (409, "already_revoked", AlreadyRevokedError),
        (429, "rate_limited", RateLimitedError),
        (413, "too_large", ValidationError),
        (503, "store_error", AuthorityUnavailableError),
    ],
)
def test_status_mapping(status: int, code: str, error: type[AztpError]) -> None:
    backend = _mock(
        lambda request: _answer(status, f"server says {code}", code, **{"retry-after": "3"}),
        retries=1,
    )
    try:
        with pytest.raises(error, match=f"server says {code}") as info:
            backend.call("get_flow", flow_id="abc")
        assert type(info.value) is error
        if error is RateLimitedError:
            assert info.value.retry_after == 3.0
        assert "secret-key-value" not in str(info.value)
    finally:
        backend.close()


def test_retries_only_for_idempotent_calls() -> None:
    calls: dict[str, int] = {}
    failing = {"fail": 2}

    def handler(request: httpx.Request) -> httpx.Response:
        calls[request.url.path] = calls.get(request.url.path, 0) + 1
        if request.url.path.endswith("/unreachable") or (
            "revoke" in request.url.path and "connect" in failing
        ):
            raise httpx.ConnectError("connection refused", request=request)
        if calls[request.url.path] <= failing["fail"]:
            return _answer(503, "busy", "store_error")
        return httpx.Response(
            200, json={"success": True, "message": "ok", "data": {"_id": "f", "identities": []}}
        )

    backend = _mock(handler, retries=3)
    try:
        # GET (idempotent): two 503s, then success.
        assert backend.call("get_flow", flow_id="f1")["_id"] == "f"
        assert calls["/v1/flows/f1"] == 3
        # POST not idempotent: one attempt, the 503 surfaces.
        with pytest.raises(AuthorityUnavailableError):
            backend.call("revoke_identity", aztp_id="aztp://a.test/workload/production/node/x")
        assert calls["/aztp/revoke-identity"] == 1
        # POST marked idempotent: retried.
        assert backend.call(
            "add_identity_to_flow", flow_id="f1", aztp_id="aztp://a.test/workload/production/node/x"
        )
        assert calls["/identity-flow/add-identity-to-flow"] == 3
        # 4xx: never retried.
        failing["fail"] = 0
        backend2 = _mock(
            lambda r: (
                calls.__setitem__("404", calls.get("404", 0) + 1),
                _answer(404, "nope", "not_found"),
            )[1]
        )
        with pytest.raises(NotFoundError):
            backend2.call("get_flow", flow_id="zz")
        assert calls["404"] == 1
        backend2.close()
        # Connection errors: retried for idempotent calls, not for the others; async path too.
        failing["connect"] = 1
        with pytest.raises(AuthorityUnavailableError, match="may or may not"):
            backend.call(
                "revoke_flow_identity",
                aztp_id="aztp://a.test/workload/production/node/x",
                flow_id="f",
            )
        assert calls["/aztp/revoke-identity-for-flow"] == 1
        with pytest.raises(AuthorityUnavailableError):
            asyncio.run(backend.acall("get_flow", flow_id="unreachable"))
        assert calls["/v1/flows/unreachable"] == 3
        with pytest.raises(AuthorityUnavailableError):
            asyncio.run(
                backend.acall("revoke_identity", aztp_id="aztp://a.test/workload/production/node/x")
            )
        assert calls["/aztp/revoke-identity"] == 2
    finally:
        backend.close()


def test_every_route_is_marked_and_reads_are_idempotent() -> None:
    for op, route in ROUTES.items():
        if route.method in ("GET", "PUT"):
            assert route.idempotent, op
        if route.method == "GET":
            assert not route.writes, op
    assert (
        not ROUTES["revoke_identity"].idempotent and not ROUTES["revoke_flow_identity"].idempotent
    )
    assert not ROUTES["create_flow"].idempotent and not ROUTES["delete_flow"].idempotent


def test_nothing_secret_in_logs(
    server: Server, org_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    guard, agent, tool, backend = _remote_guard(server.url, org_key, "logs")
    try:
        guard.check(agent, tool, "tool")
        with pytest.raises(NotFoundError):
            backend.call("get_flow", flow_id="0" * 24)
    finally:
        guard.client.close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert org_key not in text and "PRIVATE KEY" not in text


def test_remote_client_needs_a_key_and_an_http_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZTP_API_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="API key"):
        RemoteBackend("http://127.0.0.1:1")
    with pytest.raises(ValidationError, match="http"):
        RemoteBackend("ftp://example.org", api_key="k")


# ============================================================================ TLS and prefix


def test_tls_verification_is_on_by_default_and_takes_a_ca_bundle(tmp_path: Path) -> None:
    cert, key, ca = make_tls(tmp_path / "tls")
    srv = start_server(tmp_path / "home", tls=(cert, key, ca))
    try:
        assert srv.url.startswith("https://")
        untrusted = RemoteBackend(srv.url, api_key=srv.key, retries=1)  # system CAs only
        with pytest.raises(
            AuthorityUnavailableError, match=r"could not reach.*CERTIFICATE_VERIFY_FAILED"
        ):
            untrusted.call("list_flows")
        untrusted.close()
        guard, agent, tool, backend = _remote_guard(srv.url, srv.key, "tls-flow", verify=str(ca))
        try:
            assert guard.check(agent, tool, "tool").allowed and backend.stats["fallback"] == 0
            assert backend.feed_fresh()  # the change feed runs over TLS too
        finally:
            guard.client.close()
    finally:
        srv.stop()


def test_server_under_a_prefix(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "home", prefix="/astha/v1")
    try:
        guard, agent, tool, backend = _remote_guard(srv.url, srv.key, "prefixed")
        try:
            assert guard.check(agent, tool, "tool").allowed and backend.stats["fallback"] == 0
            health = asyncio.run(guard.client.flow_health())
            assert health["success"] is True
        finally:
            guard.client.close()
    finally:
        srv.stop()


def test_async_path_never_blocks_the_event_loop(server: Server, org_key: str) -> None:
    blockbuster = pytest.importorskip("blockbuster")
    guard, agent, tool, backend = _remote_guard(server.url, org_key, "non-blocking")
    client = guard.client
    flow_id = guard.flow_id

    async def run() -> list[str]:
        await client.list_flows()  # the loop's pooled client exists before BlockBuster starts
        with blockbuster.blockbuster_ctx():
            reasons = [(await guard.acheck(agent, tool, "tool")).reason.value]
            await client.revoke_flow_identity(tool, flow_id, "async")  # a write: replica reloaded
            reasons.append((await guard.acheck(agent, tool, "tool")).reason.value)
            await client.reinstate_flow_identity(tool, flow_id)
            reasons.append((await guard.acheck(agent, tool, "tool")).reason.value)
            agent_b = await client.secure_connect(
                None, "async-issued"
            )  # key pair + CSR on the loop
            assert agent_b.identity.private_key
        return reasons

    try:
        assert asyncio.run(run()) == ["allowed", "tool_revoked_in_flow", "allowed"]
        assert backend.stats["fallback"] == 0  # local decisions, the replica reloaded on the loop
    finally:
        client.close()


def test_audit_checkpoints_over_the_wire(remote: Aztp) -> None:
    """A checkpoint signed by the server verifies there, with the public key it hands out, and
    an edited one does not (issue 13.6)."""

    async def go() -> None:
        cp = await remote.audit_checkpoint()
        key = await remote.audit_checkpoint_key()
        assert cp["checkpoint"]["kid"] == key["kid"] and cp["checkpoint"]["seq"] >= 1
        await remote.create_flow("after-the-checkpoint")
        report = await remote.verify_audit(cp, public_key=key["public_key"])
        assert report["ok"] is True and report["checkpoint"]["seq"] == cp["checkpoint"]["seq"]
        assert (await remote.verify_audit(json.dumps(cp)))["ok"] is True
        assert (await remote.verify_audit())["ok"] is True
        edited = {**cp, "checkpoint": {**cp["checkpoint"], "seq": cp["checkpoint"]["seq"] + 1}}
        report = await remote.verify_audit(edited)
        assert report["ok"] is False and "signature does not verify" in report["problem"]
        with pytest.raises(ValidationError, match="Ed25519"):
            await remote.verify_audit(cp, public_key="not a key")

    asyncio.run(go())


def test_remote_decisions_keep_the_time_they_were_taken(server: Server, org_key: str) -> None:
    """A decision taken at the enforcement point before a revocation, uploaded after it, is
    recorded at the time it was decided (the server adds receivedAt), on the revision it was
    decided on, and 'audit check' passes (issue 13.9)."""
    guard, agent, tool, backend = _remote_guard(
        server.url,
        org_key,
        "decided-at",
        audit_interval=3600.0,  # uploaded at close only
    )
    writer = Aztp(api_key=org_key, base_url=server.url)
    try:
        allowed = guard.check(agent, tool, "tool")
        assert allowed.allowed and backend.stats["local"] >= 1
        writer.backend.call("revoke_flow_identity", aztp_id=tool, flow_id=guard.flow_id)
        denied = guard.check(agent, tool, "tool")
        assert not denied.allowed
    finally:
        guard.client.close()  # sends the queued decision records now, after the revocation
    try:
        entries = asyncio.run(writer.audit())
    finally:
        writer.close()
    (revoke,) = [e for e in entries if e["action"] == "flow.revoke_identity"]
    decisions = [
        e for e in entries if e["action"] == "decision.tool_call" and e["subject"] == agent
    ]
    assert [d["data"]["allowed"] for d in decisions] == [True, False]
    first, second = decisions
    assert first["ts"] < revoke["ts"] <= first["data"]["receivedAt"]  # decided before, sent after
    assert first["data"]["revision"] < revoke["data"]["revision"] <= second["data"]["revision"]
    assert check_decision_order(entries).ok


def test_a_known_crew_shape_is_secured_from_the_replica_without_a_request(
    server: Server, org_key: str
) -> None:
    """A crew per request on a remote client: once the replica holds the enrollment, the same
    shape is secured again with no request to the server (the requests are counted at the
    transport) and the credentials issued the first time."""
    sent: list[str] = []
    backend = RemoteBackend(
        server.url,
        api_key=org_key,
        event_hooks={"request": [lambda request: sent.append(request.url.path)]},
    )
    client = Aztp(backend=backend)
    try:
        first = Guard("per-request", client=client)
        team = first.enroll("agent", ["tool"])
        assert backend.start(wait=5.0)
        deadline = time.monotonic() + 5
        while not first.check(team.agent_id, team.tools["tool"], "tool").allowed:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        while backend.stats["local"] == 0:  # decided on the replica: it is current
            assert time.monotonic() < deadline
            first.check(team.agent_id, team.tools["tool"], "tool")
        sent.clear()
        again = Guard("per-request", client=client)
        same = again.enroll("agent", ["tool"])
        assert same == team and sent == []  # no request at all
        cert = again.identities[team.agent_id].certificate
        assert cert == first.identities[team.agent_id].certificate
        assert again.check(same.agent_id, same.tools["tool"], "tool").allowed
    finally:
        client.close()
