"""Semantics of DESIGN.md section 2, through the ``Aztp`` facade on the embedded authority.

Identity (idempotent secure_connect, revoke/reissue and credentials), flows (flow-scoped
revocation, reinstate, visibility, delete), links, policies, errors that leave nothing
half-written, the audit chain, cross-process freshness, concurrency and file permissions.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from aztp_agents import Aztp, Reason
from aztp_agents.audit import (
    CallContext,
    FieldParts,
    decode_batch,
    encode_batch,
    flatten_context,
    register_layout,
)
from aztp_agents.errors import (
    AlreadyRevokedError,
    ConflictError,
    InvalidIdError,
    InvalidNameError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)

REPO = Path(__file__).resolve().parents[2]
TD = "astha.ai"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def aztp(name: str, td: str = TD, env: str = "production") -> str:
    return f"aztp://{td}/workload/{env}/node/{name}"


def serial_of(cert_pem: str) -> int:
    return x509.load_pem_x509_certificate(cert_pem.encode()).serial_number


def issue(client: Aztp, *names: str, **config: Any) -> list[str]:
    return [
        run(client.secure_connect({}, n, config=config or None)).identity.aztp_id for n in names
    ]


def db_state(db: Path) -> dict[str, list[str]]:
    """Every row of every table (read straight from the SQLite file)."""
    con = sqlite3.connect(db)
    try:
        tables = [
            r[0]
            for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
        ]
        return {t: sorted(repr(r) for r in con.execute(f'SELECT * FROM "{t}"')) for t in tables}
    finally:
        con.close()


def run_python(code: str, *args: str, timeout: float = 120) -> str:
    """Run ``code`` in a fresh interpreter (another OS process); return its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )
    assert done.returncode == 0, f"subprocess failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


# =========================================================================================
# Identities and credentials
# =========================================================================================


def test_secure_connect_is_idempotent_with_a_fresh_credential(
    client: Aztp, authority: Any, principal: Any
) -> None:
    first = run(client.secure_connect({}, "chat-service"))
    second = run(client.secure_connect({}, "chat-service"))
    assert first.identity.aztp_id == second.identity.aztp_id == aztp("chat-service")
    assert first.identity.workload_id == second.identity.workload_id == "chat-service"
    assert serial_of(first.identity.certificate) != serial_of(second.identity.certificate)
    assert first.identity.private_key != second.identity.private_key
    assert len(run(client.list_identities())) == 1
    # Both credentials are live (re-connecting is not a reissue).
    assert authority.verify_credential(principal, first.identity.certificate)["valid"] is True
    assert authority.verify_credential(principal, second.identity.certificate)["valid"] is True
    actions = [e["action"] for e in run(client.audit(action="identity.*"))]
    assert actions == ["identity.issue", "identity.reconnect"]


def test_reissue_gives_a_new_credential_and_kills_the_old_one(
    client: Aztp, authority: Any, principal: Any
) -> None:
    agent = run(client.secure_connect({}, "payments-agent"))
    old = agent.identity.certificate
    assert authority.verify_credential(principal, old) == {
        "valid": True,
        "aztpId": agent.identity.aztp_id,
        "reason": "allowed",
    }

    run(client.revoke_identity(agent.identity.aztp_id, reason="key leaked"))
    assert authority.verify_credential(principal, old)["valid"] is False
    assert run(client.verify_identity(agent)) is False
    with pytest.raises(PermissionDeniedError, match="revoked"):
        run(client.issue_credential(agent.identity.aztp_id))
    with pytest.raises(AlreadyRevokedError):
        run(client.revoke_identity(agent.identity.aztp_id))

    answer = json.loads(run(client.reissue_identity(agent.identity.aztp_id)))
    assert answer["status"] == "active" and answer["valid"] is True
    assert "privateKey" not in answer  # never serialized
    new = answer["certificate"]
    assert serial_of(new) != serial_of(old)
    assert authority.verify_credential(principal, new)["valid"] is True
    stale = authority.verify_credential(principal, old)
    assert stale["valid"] is False and stale["reason"] == "credential_superseded"
    assert run(client.verify_identity_by_aztp_id(agent.identity.aztp_id)) is True
    # Fresh credentials after the reissue are valid too.
    assert authority.verify_credential(
        principal, run(client.issue_credential(agent.identity.aztp_id)).certificate
    )["valid"]


def test_reissue_kills_credentials_issued_in_the_same_millisecond(
    client: Aztp, authority: Any, principal: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aztp_agents.authority import identities, svids

    for module in (identities, svids):
        monkeypatch.setattr(module, "now_iso", lambda: "2030-01-01T00:00:00.000Z")
    agent = run(client.secure_connect({}, "same-ms-agent"))
    run(client.reissue_identity(agent.identity.aztp_id))
    assert authority.verify_credential(principal, agent.identity.certificate)["valid"] is False


def test_failed_trust_domain_claim_leaves_no_stale_ca(
    client: Aztp, authority: Any, principal: Any, db_path: Path
) -> None:
    from aztp_agents.authority import Authority
    from aztp_agents.store import Store

    with pytest.raises(NotFoundError):
        run(
            client.secure_connect(
                {},
                "orphan",
                config={"trustDomain": "new.example", "parentIdentity": aztp("missing")},
            )
        )
    # A second authority on the same file, as another process would have.
    other = Authority(Store.open_sqlite(db_path), default_trust_domain=TD)
    try:
        other_principal = other.local_principal()
        other.secure_connect(other_principal, "b-agent", trust_domain="new.example")
        cert = run(
            client.secure_connect({}, "a-agent", config={"trustDomain": "new.example"})
        ).identity.certificate
        assert other.verify_credential(other_principal, cert)["valid"] is True
    finally:
        other.store.close()


def test_global_and_component_identity_records(client: Aztp) -> None:
    g = run(client.identity(issue(client, "org-gateway", isGlobalIdentity=True)[0]))
    c = run(client.identity(issue(client, "worker-component")[0]))
    assert (g.is_global_identity, g.identity_type) == (True, "global")
    assert (c.is_global_identity, c.identity_type) == (False, "component")
    assert re.fullmatch(r"[0-9a-f]{24}", g.id) and g.id != c.id


def test_identity_in_another_environment_and_method_rules(client: Aztp) -> None:
    (staging,) = issue(client, "staging-api", environment="staging")
    assert staging == aztp("staging-api", env="staging")
    agent = run(client.secure_connect({}, "team/search-agent"))  # "/" is allowed inside a name
    assert (
        agent.identity.spiffe_id == "spiffe://astha.ai/workload/production/node/team/search-agent"
    )


def test_jwt_svid_and_trust_bundle(client: Aztp) -> None:
    (agent,) = issue(client, "jwt-agent")
    token = run(
        client.fetch_jwt_svid(agent, "spiffe://astha.ai/workload/production/node/search-tool")
    )
    assert token.count(".") == 2
    bundle = run(client.get_trust_bundle())
    assert set(bundle) == {TD}
    uses = {k["use"] for k in bundle[TD]["keys"]}
    assert uses == {"x509-svid", "jwt-svid"}
    assert bundle[TD]["spiffe_sequence"] >= 1 and "spiffe_refresh_hint" in bundle[TD]
    assert token not in json.dumps(run(client.audit()))  # secrets never enter the audit log
    assert [e["action"] for e in run(client.audit(action="credential.jwt"))] == ["credential.jwt"]
    run(client.revoke_identity(agent))
    with pytest.raises(PermissionDeniedError):
        run(client.fetch_jwt_svid(agent, "aud"))


# =========================================================================================
# Flows
# =========================================================================================


def test_flow_revocation_is_flow_scoped_and_survives_remove_and_readd(client: Aztp) -> None:
    a, b = issue(client, "svc-a", "svc-b")
    flow = run(client.create_flow("prod"))["_id"]
    other = run(client.create_flow("staging"))["_id"]
    for f in (flow, other):
        run(client.add_identity_to_flow(f, a))
        run(client.add_identity_to_flow(f, b))

    result = run(client.revoke_flow_identity(a, flow, reason="misbehaved"))
    assert (
        result["valid"] is True
        and result["reason"] == "misbehaved"
        and isinstance(result["issuedAt"], int)
    )
    assert run(client.verify(a, flow))["reason"] == "identity_revoked_in_flow"
    assert run(client.verify_identity_by_aztp_id(a)) is True  # globally valid
    assert run(client.verify_identity_by_aztp_id(a, other)) is True  # valid in other flows
    assert run(client.verify_identity_by_aztp_id(b, flow)) is True

    removed = run(client.remove_identity_from_flow(flow, a))
    assert [m["aztpId"] for m in removed["identities"]] == [b]
    assert run(client.verify_identity_by_aztp_id(a, flow)) is False
    readded = run(client.add_identity_to_flow(flow, a))
    assert len(readded["identities"]) == 2
    member = next(m for m in readded["identities"] if m["aztpId"] == a)
    assert member["status"] == "revoked" and member["revocationReason"] == "misbehaved"
    assert run(client.verify(a, flow))["reason"] == "identity_revoked_in_flow"

    with pytest.raises(AlreadyRevokedError, match=r"^Identity already revoked for this flow$"):
        run(client.revoke_flow_identity(a, flow, reason="again"))

    reinstated = run(client.reinstate_flow_identity(a, flow))
    assert next(m for m in reinstated["identities"] if m["aztpId"] == a)["status"] == "active"
    assert run(client.verify_identity_by_aztp_id(a, flow)) is True
    with pytest.raises(NotFoundError):  # nothing left to reinstate
        run(client.reinstate_flow_identity(a, flow))
    # ... and it can be revoked in the flow again after that.
    assert run(client.revoke_flow_identity(a, flow))["valid"] is True


def test_add_and_remove_are_idempotent(client: Aztp) -> None:
    (a,) = issue(client, "idem-agent")
    flow = run(client.create_flow("idem-flow"))["_id"]
    assert len(run(client.add_identity_to_flow(flow, a))["identities"]) == 1
    assert len(run(client.add_identity_to_flow(flow, a))["identities"]) == 1
    assert run(client.remove_identity_from_flow(flow, a))["identities"] == []
    assert run(client.remove_identity_from_flow(flow, a))["identities"] == []
    assert [e["action"] for e in run(client.audit(action="flow.*_identity"))] == [
        "flow.add_identity",
        "flow.remove_identity",
    ]


def test_global_revocation_invalidates_every_flow(client: Aztp) -> None:
    (a,) = issue(client, "everywhere")
    flows = [run(client.create_flow(f"flow-{i}"))["_id"] for i in range(3)]
    for f in flows:
        run(client.add_identity_to_flow(f, a))
    run(client.revoke_identity(a, reason="compromised"))
    assert [run(client.verify(a, f))["reason"] for f in flows] == ["identity_revoked"] * 3
    run(client.reissue_identity(a))
    assert all(run(client.verify_identity_by_aztp_id(a, f)) for f in flows)


def test_revoke_flow_identity_needs_a_member(client: Aztp) -> None:
    (a,) = issue(client, "outsider")
    flow = run(client.create_flow("members-only"))["_id"]
    with pytest.raises(NotFoundError, match="not a member"):
        run(client.revoke_flow_identity(a, flow))


def test_delete_flow_keeps_identities(client: Aztp) -> None:
    a, b = issue(client, "keep-a", "keep-b")
    flow = run(client.create_flow("doomed", tags=["x"]))["_id"]
    run(client.add_identity_to_flow(flow, a))
    run(client.add_identity_to_flow(flow, b))
    run(client.revoke_flow_identity(b, flow))
    assert run(client.delete_flow(flow)) == {"_id": flow, "name": "doomed", "deleted": True}
    with pytest.raises(NotFoundError):
        run(client.get_flow(flow))
    assert run(client.verify(a, flow))["reason"] == "flow_unknown"
    assert run(client.list_flows()) == []
    assert {i["aztpId"] for i in run(client.list_identities())} == {a, b}
    assert run(client.verify_identity_by_aztp_id(a)) and run(client.verify_identity_by_aztp_id(b))
    # The name is free again, and the new flow starts without the old memberships/revocations.
    again = run(client.create_flow("doomed"))
    assert again["_id"] != flow and again["identities"] == []
    run(client.add_identity_to_flow(again["_id"], b))
    assert run(client.verify_identity_by_aztp_id(b, again["_id"])) is True


def test_flow_names_are_unique_and_update_checks_them(client: Aztp) -> None:
    one = run(client.create_flow("one"))
    run(client.create_flow("two"))
    with pytest.raises(ConflictError, match="already exists"):
        run(client.create_flow("one"))
    with pytest.raises(ConflictError):
        run(client.update_flow(one["_id"], name="two"))
    updated = run(client.update_flow(one["_id"], metadata={"k": [1, 2]}, tags=["t"]))
    assert (
        updated["name"] == "one"
        and updated["metadata"] == {"k": [1, 2]}
        and updated["tags"] == ["t"]
    )
    typed = run(client.flow(one["_id"]))
    assert typed.name == "one" and typed.discoverable == "public"


def test_private_flow_visible_only_to_its_creator(
    client: Aztp, authority: Any, principal: Any, make_client: Callable[..., Aztp]
) -> None:
    authority.create_user(principal.org_id, "bob")
    bob = make_client(user="bob")
    assert bob.backend.principal.user_id != principal.user_id  # type: ignore[attr-defined]
    assert bob.backend.principal.org_id == principal.org_id  # type: ignore[attr-defined]
    (a,) = issue(client, "alice-agent")
    private = run(client.create_flow("alice-private", discoverable="private"))["_id"]
    public = run(client.create_flow("alice-public", discoverable="public"))["_id"]
    run(client.add_identity_to_flow(private, a))

    assert [f["name"] for f in run(bob.list_flows())] == ["alice-public"]
    assert [f["name"] for f in run(client.list_flows())] == ["alice-private", "alice-public"]
    for op in (
        bob.get_flow(private),
        bob.add_identity_to_flow(private, a),
        bob.revoke_flow_identity(a, private),
        bob.update_flow(private, description="mine now"),
        bob.delete_flow(private),
    ):
        with pytest.raises(NotFoundError):
            run(op)
    assert run(bob.verify(a, private))["reason"] == "flow_unknown"  # as if it did not exist
    assert run(client.verify_identity_by_aztp_id(a, private)) is True
    # The public flow is the organization's: bob sees it and can work with it.
    run(bob.add_identity_to_flow(public, a))
    assert run(bob.verify_identity_by_aztp_id(a, public)) is True
    assert run(client.get_flow(private))["identities"][0]["aztpId"] == a
    # Another organization sees neither flow.
    _, key = authority.create_org("other-org", "other.example")
    stranger = make_client(api_key=key, trust_domain=None)
    assert run(stranger.list_flows()) == []
    with pytest.raises(NotFoundError):
        run(stranger.get_flow(public))


def test_flow_health_thresholds(client: Aztp) -> None:
    ids = issue(client, *[f"member-{i}" for i in range(10)])
    flow = run(client.create_flow("health"))["_id"]
    for a in ids:
        run(client.add_identity_to_flow(flow, a))
    expected = [
        (100.0, "healthy"),
        (90.0, "healthy"),
        (80.0, "warning"),
        (70.0, "warning"),
        (60.0, "critical"),
    ]
    for revoked, (score, status) in enumerate(expected):
        if revoked:
            run(client.revoke_flow_identity(ids[revoked - 1], flow))
        health = run(client.get_flow_health(flow))
        assert (health["securityScore"], health["status"]) == (score, status)
        assert health["total"] == 10 and health["valid"] == 10 - revoked
    assert len(health["issues"]) == 4
    # The official flow_health() keeps its meaning: is the flow service up.
    assert run(client.flow_health())["data"]["status"] == "healthy"


def test_flow_health_of_an_empty_flow_follows_the_seed(client: Aztp) -> None:
    flow = run(client.create_flow("empty"))["_id"]
    health = run(client.get_flow_health(flow))
    assert (health["securityScore"], health["status"]) == (0, "critical")


# =========================================================================================
# Links and connection authorization
# =========================================================================================


def test_links_linked_is_symmetric_other_types_directed(client: Aztp) -> None:
    a, b, c, d = issue(client, "link-a", "link-b", "link-c", "link-d")

    def may(src: str, dst: str) -> bool:
        return run(client.verify_authorize_identity_connection(src, dst))

    assert not may(a, b) and not may(b, a)
    link = run(client.link_identities(a, b))  # relationship_type defaults to "linked"
    assert link["relationshipType"] == "linked"
    assert may(a, b) and may(b, a)
    run(client.link_identities(a, c, "parent"))
    assert may(a, c) and not may(c, a)
    run(client.link_identities(c, d, "backup_replica", metadata={"zone": "eu"}))
    assert may(c, d) and not may(d, c)
    assert not may(a, d)  # links do not chain
    # Official keyword names work too.
    assert run(client.verify_authorize_identity_connection(fromAgentID=a, toAgentID=c)) is True
    # Linking again is idempotent (same link back).
    assert run(client.link_identities(a, b))["_id"] == link["_id"]

    assert run(client.unlink_identities(a, b))["removed"] == 1
    assert not may(a, b) and not may(b, a)
    with pytest.raises(NotFoundError):
        run(client.unlink_identities(a, b))
    # Unlinking one relationship type leaves the others.
    run(client.link_identities(a, c, "data_pipeline"))
    assert run(client.unlink_identities(a, c, "parent"))["removed"] == 1
    assert may(a, c)
    assert run(client.unlink_identities(a, c))["removed"] == 1
    assert not may(a, c)


def test_a_symmetric_link_can_be_unlinked_from_either_end(client: Aztp) -> None:
    a, b = issue(client, "sym-a", "sym-b")
    run(client.link_identities(a, b))
    assert run(client.verify_authorize_identity_connection(b, a)) is True
    assert run(client.unlink_identities(b, a))["removed"] == 1
    assert run(client.verify_authorize_identity_connection(a, b)) is False


def test_connection_needs_both_identities_valid(client: Aztp) -> None:
    a, b = issue(client, "conn-a", "conn-b")
    run(client.link_identities(a, b, "service_chain"))
    assert run(client.verify_authorize_identity_connection(a, b)) is True
    run(client.revoke_identity(b))
    assert run(client.verify_authorize_identity_connection(a, b)) is False
    run(client.reissue_identity(b))
    run(client.revoke_identity(a))
    assert run(client.verify_authorize_identity_connection(a, b)) is False
    assert run(client.verify_authorize_identity_connection(a, aztp("nobody"))) is False


def test_other_trust_domains_need_federation(
    client: Aztp, authority: Any, principal: Any, make_client: Callable[..., Aztp]
) -> None:
    other_principal, key = authority.create_org("partner", "partner.example")
    partner = make_client(api_key=key, trust_domain=None)
    (theirs,) = issue(partner, "partner-api")
    (ours,) = issue(client, "our-agent")
    with pytest.raises(NotFoundError, match="federated"):
        run(client.link_identities(ours, theirs))
    authority.federate(principal, "partner.example")
    run(client.link_identities(ours, theirs, "service_chain"))
    assert (
        run(client.verify_authorize_identity_connection(ours, theirs)) is False
    )  # one-sided trust
    authority.federate(other_principal, TD)
    assert run(client.verify_authorize_identity_connection(ours, theirs)) is True
    run(partner.revoke_identity(theirs))
    assert run(client.verify_authorize_identity_connection(ours, theirs)) is False


# =========================================================================================
# Policies
# =========================================================================================

POLICY = {
    "Statement": [
        {"Effect": "Allow", "Action": "tool:*"},
        {"Effect": "Deny", "Action": "tool:delete_file"},
        {"Effect": "Audit", "Action": ["data:export"]},
    ]
}


def test_policy_evaluation_deny_wins(client: Aztp) -> None:
    (a,) = issue(client, "policy-agent")
    created = run(client.create_policy("tools-policy", POLICY))
    assert re.fullmatch(r"policy:[0-9a-f]{12}", created["code"])
    assert created["policyName"] == "tools-policy"
    run(client.attach_policy(a, created["code"]))
    policies = run(client.get_policy(a))
    assert [p["code"] for p in policies] == [created["code"]]
    statement = Aztp.get_policy_value(policies, "code", created["code"])
    assert statement == POLICY
    assert Aztp.get_policy_value(policies, "code", "policy:000000000000") is None

    checked = run(
        client.check_identity_policy_permissions(
            a, {"actions": ["tool:search", "tool:delete_file", "data:export", "net:connect"]}
        )
    )
    assert checked["actions"] == {
        "tool:search": True,
        "tool:delete_file": False,
        "data:export": True,
        "net:connect": False,
    }
    assert checked["allowed"] is False
    by_code = run(
        client.check_identity_policy_permissions(
            a, {"policyCode": created["code"], "actions": "tool:search"}
        )
    )
    assert by_code["actions"] == {"tool:search": True} and by_code["allowed"] is True
    with pytest.raises(NotFoundError):
        run(client.check_identity_policy_permissions(a, {"policy_code": "policy:ffffffffffff"}))

    assert client.is_action_allowed(statement, "tool:search") is True
    assert client.is_action_allowed(statement, "tool:delete_file") is False  # Deny wins
    assert client.is_action_allowed(statement, "data:export") is True  # Audit allows
    assert client.is_action_allowed(statement, "net:connect") is False  # no match
    assert client.is_action_allowed(None, "tool:search") is False
    assert client.is_action_allowed({"Statement": [{"Effect": "Maybe"}]}, "tool:search") is False

    run(client.detach_policy(a, created["code"]))
    assert run(client.get_policy(a)) == []


def test_is_action_allowed_fixes_the_official_deny_bug() -> None:
    official = pytest.importorskip("aztp_client").Aztp
    policy = {
        "Statement": [
            {"Effect": "Allow", "Action": ["tool:delete_file"]},
            {"Effect": "Deny", "Action": "tool:delete_file"},
        ]
    }
    assert official.is_action_allowed(None, policy, "tool:delete_file") is True  # the bug
    assert Aztp.is_action_allowed(policy, "tool:delete_file") is False


def test_policy_codes_and_documents_are_checked(client: Aztp) -> None:
    run(client.create_policy("fixed", POLICY, code="policy:abcdef012345"))
    with pytest.raises(ConflictError):
        run(client.create_policy("again", POLICY, code="policy:abcdef012345"))
    with pytest.raises(ValidationError, match="policy:"):
        run(client.create_policy("bad-code", POLICY, code="abc"))
    (a,) = issue(client, "attach-target")
    with pytest.raises(NotFoundError):
        run(client.attach_policy(a, "policy:000000000000"))


# =========================================================================================
# Tool-call decisions (order of checks)
# =========================================================================================


def test_decision_reasons_in_order(client: Aztp, authority: Any, principal: Any) -> None:
    agent, tool, stranger = issue(client, "dec-agent", "dec-tool", "dec-stranger")
    flow = run(client.create_flow("dec-flow"))["_id"]

    def decide(a: str = agent, t: str = tool, name: str = "search") -> Any:
        return authority.decide(principal, flow_id=flow, agent=a, tool=t, tool_name=name)

    assert decide(a=aztp("ghost")).reason is Reason.AGENT_UNKNOWN
    assert decide().reason is Reason.AGENT_NOT_IN_FLOW
    run(client.add_identity_to_flow(flow, agent))
    assert decide().reason is Reason.TOOL_NOT_IN_FLOW
    assert decide(t=aztp("ghost-tool")).reason is Reason.TOOL_UNKNOWN
    run(client.add_identity_to_flow(flow, tool))
    assert decide().reason is Reason.NO_LINK
    run(client.link_identities(agent, tool, "uses_tool"))
    ok = decide()
    assert ok.allowed and ok.reason is Reason.ALLOWED and ok.flow == flow
    assert decide(a=tool, t=agent).reason is Reason.NO_LINK  # directed

    deny = run(
        client.create_policy(
            "no-delete", {"Statement": [{"Effect": "Deny", "Action": "tool:delete_file"}]}
        )
    )
    run(client.attach_policy(agent, deny["code"]))
    assert decide(name="delete_file").reason is Reason.POLICY_DENIED
    assert decide(name="search").allowed  # no match leaves the link's allow
    audit = run(
        client.create_policy("watch", {"Statement": [{"Effect": "Audit", "Action": "tool:search"}]})
    )
    run(client.attach_policy(tool, audit["code"]))
    marked = decide(name="search")
    assert marked.allowed and marked.audit

    prod_only = run(
        client.create_policy(
            "no-prod-writes",
            {
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Action": "tool:write",
                        "Condition": {"StringEquals": {"env": "prod"}},
                    }
                ]
            },
        )
    )
    run(client.attach_policy(agent, prod_only["code"]))
    in_prod = authority.decide(
        principal, flow_id=flow, agent=agent, tool=tool, tool_name="write", context={"env": "prod"}
    )
    in_dev = authority.decide(
        principal, flow_id=flow, agent=agent, tool=tool, tool_name="write", context={"env": "dev"}
    )
    assert in_prod.reason is Reason.POLICY_DENIED and in_dev.allowed

    run(client.revoke_flow_identity(tool, flow))
    assert decide().reason is Reason.TOOL_REVOKED_IN_FLOW
    run(client.revoke_identity(tool))
    assert decide().reason is Reason.TOOL_REVOKED
    run(client.revoke_flow_identity(agent, flow))
    assert decide().reason is Reason.AGENT_REVOKED_IN_FLOW
    run(client.revoke_identity(agent))
    assert decide().reason is Reason.AGENT_REVOKED
    assert authority.decide(principal, flow_id="0" * 24, agent=agent, tool=tool).allowed is False
    assert decide(a=stranger).reason is Reason.AGENT_NOT_IN_FLOW
    decisions = run(client.audit(action="decision.tool_call"))
    assert len(decisions) == 18
    assert decisions[-1]["data"]["reason"] == "agent_not_in_flow"
    assert run(client.verify_audit())["ok"] is True


# =========================================================================================
# Organizations, keys, trust domains
# =========================================================================================


def test_api_keys_are_random_hashed_and_checked(
    client: Aztp, authority: Any, db_path: Path, make_client: Callable[..., Aztp]
) -> None:
    from aztp_agents.errors import AuthenticationError

    tenant, key = authority.create_org("acme", "acme.example")
    assert key and len(key) >= 43  # >= 256 bits of randomness, URL-safe
    _, other_key = authority.create_org("globex", "globex.example")
    assert key != other_key
    dump = json.dumps(db_state(db_path))
    assert key not in dump and other_key not in dump  # stored only as hashes
    acme = make_client(api_key=key, trust_domain=None)
    assert acme.backend.principal.org_id == tenant.org_id  # type: ignore[attr-defined]
    with pytest.raises(AuthenticationError):
        make_client(api_key=key[:-1] + ("A" if key[-1] != "A" else "B"))
    key_id, second = authority.create_api_key(tenant.org_id, tenant.user_id)
    assert make_client(api_key=second, trust_domain=None).backend.principal.org_id == tenant.org_id  # type: ignore[attr-defined]
    authority.revoke_api_key(tenant.org_id, key_id)
    with pytest.raises(AuthenticationError):
        make_client(api_key=second)
    assert key not in json.dumps(run(acme.audit()))


def test_a_trust_domain_belongs_to_one_organization(
    client: Aztp, authority: Any, make_client: Callable[..., Aztp]
) -> None:
    run(client.secure_connect({}, "owner-agent"))
    with pytest.raises((ConflictError, PermissionDeniedError)):
        authority.create_org("squatter", TD)
    _, key = authority.create_org("neighbour", "neighbour.example")
    neighbour = make_client(api_key=key, trust_domain=None)
    with pytest.raises(PermissionDeniedError, match="another organization"):
        run(neighbour.secure_connect({}, "owner-agent", config={"trustDomain": TD}))
    assert (
        run(neighbour.secure_connect({}, "owner-agent")).identity.aztp_id
        == "aztp://neighbour.example/workload/production/node/owner-agent"
    )
    assert set(run(neighbour.get_trust_bundle())) == {"neighbour.example"}


def test_verification_is_audited(client: Aztp) -> None:
    a, b = issue(client, "verified-a", "verified-b")
    before = len(run(client.audit()))
    run(client.verify_identity_by_aztp_id(a))
    run(client.verify_authorize_identity_connection(a, b))
    assert len(run(client.audit())) == before + 2


# =========================================================================================
# Bad input: specific errors, nothing half-written
# =========================================================================================

BAD_INPUTS: list[tuple[str, Callable[[Aztp, dict[str, str]], Any], type[Exception], str]] = [
    ("name starts with '-'", lambda c, s: c.secure_connect({}, "-agent"), InvalidNameError, "name"),
    ("name too short", lambda c, s: c.secure_connect({}, "a"), InvalidNameError, "2-64"),
    ("name too long", lambda c, s: c.secure_connect({}, "x" * 65), InvalidNameError, "2-64"),
    (
        "name with space",
        lambda c, s: c.secure_connect({}, "chat service"),
        InvalidNameError,
        "name",
    ),
    ("name not a string", lambda c, s: c.secure_connect({}, 42), InvalidNameError, "string"),
    ("name missing", lambda c, s: c.secure_connect({}, ""), ValidationError, "name is required"),
    (
        "config not a dict",
        lambda c, s: c.secure_connect({}, "ok-name", config=["x"]),
        ValidationError,
        "config",
    ),
    (
        "isGlobalIdentity not bool",
        lambda c, s: c.secure_connect({}, "ok-name", config={"isGlobalIdentity": "yes"}),
        ValidationError,
        "isGlobalIdentity",
    ),
    (
        "upper-case trust domain",
        lambda c, s: c.secure_connect({}, "ok-name", config={"trustDomain": "Astha.AI"}),
        InvalidIdError,
        "trust domain",
    ),
    (
        "unknown parent in a new trust domain",
        lambda c, s: c.secure_connect(
            {}, "ok-name", config={"trustDomain": "fresh.example", "parentIdentity": aztp("ghost")}
        ),
        NotFoundError,
        "ghost",
    ),
    (
        "malformed parent",
        lambda c, s: c.secure_connect({}, "ok-name", config={"parentIdentity": "aztp://x/y"}),
        InvalidIdError,
        "path",
    ),
    (
        "not an aztp id",
        lambda c, s: c.verify_identity_by_aztp_id("spiffe://astha.ai/workload/production/node/a"),
        ValidationError,
        "aztp://",
    ),
    (
        "upper-case trust domain in id",
        lambda c, s: c.revoke_identity("aztp://ASTHA.ai/workload/production/node/member"),
        InvalidIdError,
        "trust domain",
    ),
    (
        "trailing newline in id",
        lambda c, s: c.revoke_identity(s["member"] + "\n"),
        InvalidIdError,
        "",
    ),
    (
        "short path",
        lambda c, s: c.revoke_identity("aztp://astha.ai/workload/prod/member"),
        InvalidIdError,
        "/workload/{environment}/{method}/{name}",
    ),
    (
        "unknown identity",
        lambda c, s: c.revoke_identity(aztp("ghost")),
        NotFoundError,
        "secure_connect",
    ),
    (
        "unknown flow",
        lambda c, s: c.add_identity_to_flow("0" * 24, s["member"]),
        NotFoundError,
        "flow",
    ),
    (
        "flow id not a string",
        lambda c, s: c.add_identity_to_flow(7, s["member"]),
        ValidationError,
        "flow_id",
    ),
    (
        "unknown identity into flow",
        lambda c, s: c.add_identity_to_flow(s["flow"], aztp("ghost")),
        NotFoundError,
        "ghost",
    ),
    (
        "revoke in unknown flow",
        lambda c, s: c.revoke_flow_identity(s["member"], "f" * 24, reason="x"),
        NotFoundError,
        "flow",
    ),
    (
        "bad discoverable",
        lambda c, s: c.create_flow("new-flow", discoverable="everyone"),
        ValidationError,
        "discoverable",
    ),
    (
        "tags as a string",
        lambda c, s: c.create_flow("new-flow", tags="a,b"),
        ValidationError,
        "tags",
    ),
    (
        "metadata not JSON",
        lambda c, s: c.create_flow("new-flow", metadata={"x": object()}),
        ValidationError,
        "JSON",
    ),
    (
        "duplicate flow name",
        lambda c, s: c.create_flow("existing-flow"),
        ConflictError,
        "existing-flow",
    ),
    (
        "update unknown field value",
        lambda c, s: c.update_flow(s["flow"], discoverable="hidden"),
        ValidationError,
        "discoverable",
    ),
    (
        "bad relationship type",
        lambda c, s: c.link_identities(s["member"], s["other"], "Data-Pipeline"),
        ValidationError,
        "relationship_type",
    ),
    (
        "link metadata not a dict",
        lambda c, s: c.link_identities(s["member"], s["other"], "linked", metadata="x"),
        ValidationError,
        "metadata",
    ),
    (
        "self link",
        lambda c, s: c.link_identities(s["member"], s["member"]),
        ValidationError,
        "itself",
    ),
    (
        "link to unknown",
        lambda c, s: c.link_identities(s["member"], aztp("ghost")),
        NotFoundError,
        "ghost",
    ),
    (
        "bad policy document",
        lambda c, s: c.create_policy("p", {"Statement": [{"Effect": "Maybe", "Action": "x"}]}),
        ValidationError,
        "Statement",
    ),
    (
        "policy without actions",
        lambda c, s: c.create_policy("p", {"Statement": [{"Effect": "Allow", "Action": []}]}),
        ValidationError,
        "Action",
    ),
    (
        "jwt without audience",
        lambda c, s: c.fetch_jwt_svid(s["member"], ""),
        ValidationError,
        "audience",
    ),
    (
        "revoke twice",
        lambda c, s: c.revoke_identity(s["revoked"]),
        AlreadyRevokedError,
        "already revoked",
    ),
]


# Wrong types: a specific ValidationError, nothing written.
BAD_INPUT_GAPS = [
    pytest.param(
        "revoke reason not a string",
        lambda c, s: c.revoke_identity(s["member"], reason=5),
        ValidationError,
        "reason",
        id="revoke reason not a string",
    ),
    pytest.param(
        "flow revoke reason not a string",
        lambda c, s: c.revoke_flow_identity(s["member"], s["flow"], reason={"why": 1}),
        ValidationError,
        "reason",
        id="flow revoke reason not a string",
    ),
    pytest.param(
        "permission options not a dict",
        lambda c, s: c.check_identity_policy_permissions(s["member"], "tool:search"),
        ValidationError,
        "options",
        id="permission options not a dict",
    ),
]


@pytest.mark.parametrize(
    ("case", "call", "error", "says"),
    [pytest.param(*b, id=b[0]) for b in BAD_INPUTS] + BAD_INPUT_GAPS,
)
def test_bad_input_is_specific_and_writes_nothing(
    client: Aztp,
    db_path: Path,
    case: str,
    call: Callable[..., Any],
    error: type[Exception],
    says: str,
) -> None:
    member, other, revoked = issue(client, "member", "other", "revoked")
    run(client.revoke_identity(revoked))
    flow = run(client.create_flow("existing-flow"))["_id"]
    run(client.add_identity_to_flow(flow, member))
    before = db_state(db_path)
    audit_before = len(run(client.audit()))

    with pytest.raises(error) as caught:
        run(call(client, {"member": member, "other": other, "revoked": revoked, "flow": flow}))
    assert says.lower() in str(caught.value).lower(), str(caught.value)
    assert len(str(caught.value)) > 15  # says what to fix, not just "invalid"

    assert db_state(db_path) == before
    assert len(run(client.audit())) == audit_before
    assert run(client.verify_audit())["ok"] is True
    # The store still works normally afterwards.
    assert run(client.secure_connect({}, "after-error")).identity.valid


# =========================================================================================
# Audit log
# =========================================================================================


def _populate(client: Aztp) -> None:
    a, b = issue(client, "audit-a", "audit-b")
    flow = run(client.create_flow("audit-flow"))["_id"]
    run(client.add_identity_to_flow(flow, a))
    run(client.link_identities(a, b))
    run(client.revoke_identity(b, reason="test"))


def test_audit_chain_records_operations_and_verifies(client: Aztp) -> None:
    _populate(client)
    entries = run(client.audit())
    actions = [e["action"] for e in entries]
    for action in (
        "org.create",
        "identity.issue",
        "flow.create",
        "flow.add_identity",
        "link.create",
        "identity.revoke",
    ):
        assert action in actions
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert entries[0]["prev_hash"] == "0" * 64
    assert all(e["prev_hash"] == p["hash"] for p, e in itertools.pairwise(entries))
    report = run(client.verify_audit())
    assert report == {"ok": True, "entries": len(entries), "problem": None, "seq": None}


def _tamper_edit(con: sqlite3.Connection) -> None:
    con.execute("UPDATE audit SET data = ? WHERE seq = 3", (json.dumps({"name": "evil"}),))


def _tamper_delete(con: sqlite3.Connection) -> None:
    con.execute("DELETE FROM audit WHERE seq = 3")


def _tamper_reorder(con: sqlite3.Connection) -> None:
    con.execute("UPDATE audit SET seq = -1 WHERE seq = 3")
    con.execute("UPDATE audit SET seq = 3 WHERE seq = 4")
    con.execute("UPDATE audit SET seq = 4 WHERE seq = -1")


def _tamper_drop_tail(con: sqlite3.Connection) -> None:
    con.execute("DELETE FROM audit WHERE seq = (SELECT MAX(seq) FROM audit)")


def _tamper_rehash(con: sqlite3.Connection) -> None:
    """Edit an entry and recompute its own hash: the next entry no longer follows it."""
    from aztp_agents.audit import canonical_json, entry_hash

    org_id, seq, ts, actor, action, subject, prev_hash = con.execute(
        "SELECT org_id, seq, ts, actor, action, subject, prev_hash FROM audit WHERE seq = 3"
    ).fetchone()
    data = canonical_json({"name": "evil"})
    digest = entry_hash(org_id, seq, ts, actor, action, subject, data, prev_hash)
    con.execute("UPDATE audit SET data = ?, hash = ? WHERE seq = 3", (data, digest))


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (_tamper_edit, "entry 3 was edited"),
        (_tamper_delete, "entry 4 found where 3 was expected"),
        (_tamper_reorder, "entry 3 does not follow entry 2"),
        (_tamper_drop_tail, "dropped from the end"),
        (_tamper_rehash, "entry 4 does not follow entry 3"),
    ],
    ids=["edit", "delete", "reorder", "drop-tail", "edit-and-rehash"],
)
def test_audit_tampering_is_detected(
    client: Aztp, db_path: Path, tamper: Callable[..., None], problem: str
) -> None:
    _populate(client)
    assert run(client.verify_audit())["ok"] is True
    con = sqlite3.connect(db_path)
    with con:
        tamper(con)
    con.close()
    report = run(client.verify_audit())
    assert report["ok"] is False
    assert problem in report["problem"]


# =========================================================================================
# Cross-process freshness
# =========================================================================================

_SUBPROCESS_OPS = """
import asyncio, json, sys
from aztp_agents import Aztp
client = Aztp(home=sys.argv[1], trust_domain="astha.ai")
for op, *args in json.loads(sys.argv[2]):
    print(asyncio.run(getattr(client, op)(*args)))
"""


def in_another_process(home: Path, *ops: tuple[str, ...]) -> None:
    """Run facade calls ``(method, *args)`` on ``home`` in a fresh interpreter."""
    run_python(_SUBPROCESS_OPS, str(home), json.dumps(ops))


def test_revocation_in_another_process_denies_the_very_next_decision(
    client: Aztp, authority: Any, principal: Any, aztp_home: Path
) -> None:
    agent, tool = issue(client, "xp-agent", "xp-tool")
    flow = run(client.create_flow("xp-flow"))["_id"]
    run(client.add_identity_to_flow(flow, agent))
    run(client.add_identity_to_flow(flow, tool))
    run(client.link_identities(agent, tool))

    def decide() -> Any:
        return authority.decide(principal, flow_id=flow, agent=agent, tool=tool, tool_name="search")

    assert decide().allowed  # warm: the snapshot is cached in this process
    assert decide().allowed
    in_another_process(aztp_home, ("revoke_identity", agent, "revoked elsewhere"))
    denied = decide()
    assert not denied.allowed and denied.reason is Reason.AGENT_REVOKED
    in_another_process(aztp_home, ("reissue_identity", agent))
    assert decide().allowed
    in_another_process(aztp_home, ("revoke_flow_identity", tool, flow, "flow-only"))
    assert decide().reason is Reason.TOOL_REVOKED_IN_FLOW
    in_another_process(
        aztp_home, ("unlink_identities", agent, tool), ("reinstate_flow_identity", tool, flow)
    )
    assert decide().reason is Reason.NO_LINK
    assert run(client.verify_audit())["ok"] is True


def test_memoized_fast_path_serves_only_allowed_current_decisions(
    client: Aztp, authority: Any, principal: Any, aztp_home: Path
) -> None:
    """``decide_memoized`` answers only a call already allowed on the current state; any
    write (here or in another process) and any denial send callers to the full path, and it
    audits exactly what it answers."""
    agent, tool = issue(client, "fp-agent", "fp-tool")
    flow = run(client.create_flow("fp-flow"))["_id"]
    for ident in (agent, tool):
        run(client.add_identity_to_flow(flow, ident))
    run(client.link_identities(agent, tool))
    key = (principal.user_id, flow, agent, tool, "search", True)

    def memoized() -> Any:
        return authority.decide_memoized(principal, key, CallContext(call="m"))

    def audited() -> int:
        return len(run(client.audit(action="decision.tool_call")))

    assert memoized() is None  # nothing decided yet
    assert authority.decide(principal, flow_id=flow, agent=agent, tool=tool, tool_name="search").allowed
    before = audited()
    fast = memoized()
    assert fast is not None and fast.allowed and fast.reason is Reason.ALLOWED and fast.flow == flow
    assert audited() == before + 1
    assert run(client.audit(action="decision.tool_call"))[-1]["data"]["context"] == {"call": "m"}

    run(client.revoke_flow_identity(agent, flow, "in-process write"))  # acknowledged here
    assert memoized() is None
    denied = authority.decide(principal, flow_id=flow, agent=agent, tool=tool, tool_name="search")
    assert denied.reason is Reason.AGENT_REVOKED_IN_FLOW
    assert memoized() is None  # a denial is never served from the memo
    run(client.reinstate_flow_identity(agent, flow))
    assert authority.decide(principal, flow_id=flow, agent=agent, tool=tool, tool_name="search").allowed
    assert memoized() is not None

    in_another_process(aztp_home, ("unlink_identities", agent, tool))
    assert memoized() is None
    assert authority.decide(principal, flow_id=flow, agent=agent, tool=tool, tool_name="search").reason is Reason.NO_LINK
    assert run(client.verify_audit())["ok"] is True


def test_own_audit_commits_keep_the_snapshot_and_other_writes_still_deny_at_once(
    client: Aztp, authority: Any, principal: Any, aztp_home: Path
) -> None:
    """An audit batch moves SQLite's change counter; the writer tells the authority the
    revision did not move, so decisions keep their snapshot. A state change by another process
    between, or right after, audit batches is still seen by the very next decision."""
    agent, tool = issue(client, "ac-agent", "ac-tool")
    flow = run(client.create_flow("ac-flow"))["_id"]
    for ident in (agent, tool):
        run(client.add_identity_to_flow(flow, ident))
    run(client.link_identities(agent, tool))
    refreshes: list[int] = []
    real_refresh = authority.changes.read_revision

    def counting_refresh() -> None:
        refreshes.append(1)
        real_refresh()

    authority.changes.read_revision = counting_refresh

    def decide() -> Any:
        return authority.decide(principal, flow_id=flow, agent=agent, tool=tool, tool_name="search")

    assert decide().allowed
    for _ in range(5):  # five audit batches, each followed by decisions
        token = authority.store.change_token()
        authority.store.flush_audit()
        assert authority.store.change_token() != token  # the batch did move the counter ...
        before = len(refreshes)
        assert decide().allowed and decide().allowed
        assert len(refreshes) == before  # ... and no decision had to re-read the revision

    authority.store.flush_audit()
    in_another_process(aztp_home, ("revoke_identity", agent, "between batches"))
    assert decide().reason is Reason.AGENT_REVOKED
    in_another_process(aztp_home, ("reissue_identity", agent))
    assert decide().allowed
    in_another_process(aztp_home, ("revoke_flow_identity", agent, flow, "then a batch"))
    authority.store.flush_audit()  # our batch commits after the other process's change
    assert decide().reason is Reason.AGENT_REVOKED_IN_FLOW


def test_decision_audit_keeps_the_context_as_it_was_when_decided(
    client: Aztp, authority: Any, principal: Any
) -> None:
    """Audit data is encoded later by the writer; the context is frozen at decision time."""
    agent, tool = issue(client, "ctx-agent", "ctx-tool")
    flow = run(client.create_flow("ctx-flow"))["_id"]
    for ident in (agent, tool):
        run(client.add_identity_to_flow(flow, ident))
    run(client.link_identities(agent, tool))
    tags = ["first"]
    for i in range(3):
        authority.decide(principal, flow_id=flow, agent=agent, tool=tool, tool_name="search",
                         context={"call": f"c{i}", "n": i, "tags": tags, "ok": True, "none": None})
        tags.append(f"changed after call {i}")
    entries = run(client.audit(action="decision.tool_call"))
    contexts = [e["data"]["context"] for e in entries if e["data"].get("context", {}).get("call")]
    assert contexts == [
        {"call": "c0", "n": 0, "tags": "['first']", "ok": True, "none": None},
        {"call": "c1", "n": 1, "tags": "['first', 'changed after call 0']", "ok": True, "none": None},
        {"call": "c2", "n": 2, "tags": "['first', 'changed after call 0', 'changed after call 1']",
         "ok": True, "none": None},
    ]
    assert run(client.verify_audit())["ok"] is True


def test_field_records_are_stored_whole_and_odd_values_cannot_sink_a_batch(
    client: Aztp, authority: Any, principal: Any
) -> None:
    """Records queued as field tuples are decoded by name; True and 1 stay apart; a value that
    is not plain JSON (queued by a careless caller) is kept as text, and the batch with it."""
    register_layout("test.fields", ("flag", "count", "name"))

    class Odd:
        def __str__(self) -> str:
            return "odd-value"

    store = authority.store
    store.submit_audit(principal.org_id, (time.time(), "test.fields", "someone", "s1", (True, 1, "n", "k", Odd())))
    store.submit_audit(principal.org_id, (time.time(), "test.fields", "someone", "s2", (1, True, None)))
    store.submit_audit(principal.org_id, (time.time(), "test.text", "someone", "s3", '{"x":1}'))
    store.flush_audit()
    store.submit_audit(principal.org_id, (time.time(), "test.text", "someone", "s4", '{"y":2}'))
    entries = {e["subject"]: e for e in run(client.audit()) if e["action"].startswith("test.")}
    assert entries["s1"]["data"] == {"flag": True, "count": 1, "name": "n", "context": {"k": "odd-value"}}
    assert entries["s2"]["data"] == {"flag": 1, "count": True, "name": None}
    assert type(entries["s2"]["data"]["flag"]) is int and entries["s2"]["data"]["count"] is True
    assert entries["s3"]["data"] == {"x": 1}
    assert entries["s4"]["data"] == {"y": 2}  # the writer is still alive
    assert run(client.verify_audit())["ok"] is True


def test_shared_field_tuples_and_parts_encode_once_and_decode_per_record() -> None:
    """Records that share tuples (a memoized decision, a CallContext) are written once per
    batch; every record still decodes to its own fields, and equal-looking tuples of other
    types (True and 1) are not taken for the shared ones."""
    register_layout("test.parts", ("flag", "n"))
    fields = (True, 1)
    context = CallContext(crew="c", task="t")
    records = [
        (1.0, "test.parts", "u", "a", FieldParts((fields, context.flat))),
        (2.0, "test.parts", "u", "a", FieldParts((fields, context.flat))),
        (3.0, "test.parts", "u", "a", (1, True)),
        (4.0, "test.parts", "u", "a", fields),
        (5.0, "test.parts", "u", "a", fields),
        (6.0, "test.parts", "u", "b", FieldParts(((False, 2), flatten_context({"crew": "d"})))),
    ]
    text = encode_batch(records)
    assert len(json.loads(text)["fields"]) == 4  # two parts joined once, (1, True), fields, the last
    decoded = decode_batch(text)
    shared = {"flag": True, "n": 1, "context": {"crew": "c", "task": "t"}}
    assert [d[4] for d in decoded] == [shared, shared, {"flag": 1, "n": True}, {"flag": True, "n": 1},
                                       {"flag": True, "n": 1}, {"flag": False, "n": 2, "context": {"crew": "d"}}]
    assert type(decoded[2][4]["flag"]) is int and decoded[2][4]["n"] is True
    assert [d[0] for d in decoded] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    with pytest.raises(TypeError):
        context["crew"] = "changed"  # a CallContext is read-only: what was audited is what it says


def test_change_counter_follows_a_store_reopened_after_every_connection_closed(tmp_path: Path) -> None:
    """When every connection closes, SQLite deletes the WAL index; a store opened later must
    watch the new one, or it would miss other processes' revocations."""
    from aztp_agents.authority import Authority
    from aztp_agents.store import Store

    db = tmp_path / "aztp.db"
    first = Authority(Store.open_sqlite(db))
    p = first.local_principal()
    agent = first.secure_connect(p, "reopen-agent", make_key=False)["identity"]["aztpId"]
    tool = first.secure_connect(p, "reopen-tool", make_key=False)["identity"]["aztpId"]
    flow = first.create_flow(p, "reopen-flow")["_id"]
    for member in (agent, tool):
        first.add_identity_to_flow(p, flow, member)
    first.link_identities(p, agent, tool)
    first.store.close()
    in_another_process(tmp_path, ("list_flows",))  # another process opens and closes the store alone
    second = Authority(Store.open_sqlite(db))
    try:
        p2 = second.local_principal()
        assert second.decide(p2, flow_id=flow, agent=agent, tool=tool).allowed
        in_another_process(tmp_path, ("revoke_flow_identity", agent, flow, "elsewhere"))
        assert second.decide(p2, flow_id=flow, agent=agent, tool=tool).reason is Reason.AGENT_REVOKED_IN_FLOW
    finally:
        second.store.close()


# =========================================================================================
# Concurrency
# =========================================================================================

_WORKER = """
async def worker(client, prefix, flow_id, hub, n):
    ids = []
    for k in range(n):
        agent = await client.secure_connect({}, f"{prefix}-{k}")
        ids.append(agent.identity.aztp_id)
        await client.add_identity_to_flow(flow_id, ids[k])
        await client.link_identities(hub, ids[k], "linked")
        if k:
            await client.link_identities(ids[k - 1], ids[k], "data_pipeline")
        # Our own writes are visible to our very next decision, whatever others are doing.
        decision = client.backend.decide(flow_id=flow_id, agent=ids[k], tool=hub, tool_name="probe")
        if not decision.allowed:
            raise AssertionError(f"{ids[k]} -> hub denied after its own writes: {decision.reason}")
    await client.revoke_identity(ids[0], reason=prefix)
    decision = client.backend.decide(flow_id=flow_id, agent=ids[0], tool=hub, tool_name="probe")
    if decision.allowed:
        raise AssertionError(f"{ids[0]} allowed right after its revocation")
    await client.revoke_flow_identity(ids[1], flow_id, reason=prefix)
    return ids
"""

_PROCESS_WORKER = (
    _WORKER
    + """
import asyncio, json, pathlib, sys, time
from aztp_agents import Aztp
home, prefix, flow_id, hub, n, ready, go = sys.argv[1:]
client = Aztp(home=home, trust_domain="astha.ai")
pathlib.Path(ready).touch()
deadline = time.monotonic() + 60
while not pathlib.Path(go).exists() and time.monotonic() < deadline:
    time.sleep(0.002)
print(json.dumps(asyncio.run(worker(client, prefix, flow_id, hub, int(n)))))
"""
)


def test_concurrent_threads_and_processes_leave_a_consistent_store(
    client: Aztp, make_client: Callable[..., Aztp], aztp_home: Path, tmp_path: Path
) -> None:
    threads_n, processes_n, per_worker = 8, 2, 5
    (hub,) = issue(client, "hub")
    flow = run(client.create_flow("busy-flow"))["_id"]
    run(client.add_identity_to_flow(flow, hub))
    namespace: dict[str, Any] = {}
    exec(_WORKER, namespace)
    worker = namespace["worker"]

    go = tmp_path / "go"
    procs = []
    for j in range(processes_n):
        ready = tmp_path / f"ready-{j}"
        procs.append(
            (
                ready,
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        _PROCESS_WORKER,
                        str(aztp_home),
                        f"proc{j}",
                        flow,
                        hub,
                        str(per_worker),
                        str(ready),
                        str(go),
                    ],
                    cwd=REPO,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    deadline = time.monotonic() + 60
    while not all(r.exists() for r, _ in procs) and time.monotonic() < deadline:
        time.sleep(0.01)

    barrier = threading.Barrier(threads_n + 1)
    results: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def thread_main(i: int) -> None:
        own = make_client()  # separate client object, same home (shares the authority)
        barrier.wait()
        try:
            results[f"thread{i}"] = asyncio.run(worker(own, f"thread{i}", flow, hub, per_worker))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=thread_main, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    go.touch()
    barrier.wait()
    for t in threads:
        t.join(timeout=240)
    for j, (_, proc) in enumerate(procs):
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        results[f"proc{j}"] = json.loads(out.strip().splitlines()[-1])
    assert not errors, errors
    assert len(results) == threads_n + processes_n

    workers = len(results)
    issued = {a for ids in results.values() for a in ids}
    assert len(issued) == workers * per_worker
    identities = {i["aztpId"]: i for i in run(client.list_identities())}
    assert set(identities) == issued | {hub}  # every issued identity present, nothing extra
    for prefix, ids in results.items():
        assert ids == [aztp(f"{prefix}-{k}") for k in range(per_worker)]
        assert identities[ids[0]]["status"] == "revoked"
        assert all(identities[a]["status"] == "active" for a in ids[1:])
        assert run(client.verify(ids[1], flow))["reason"] == "identity_revoked_in_flow"
        assert run(client.verify_identity_by_aztp_id(ids[2], flow)) is True
        assert run(client.verify_authorize_identity_connection(ids[2], ids[3])) is True
        assert (
            run(client.verify_authorize_identity_connection(ids[3], hub)) is True
        )  # linked: symmetric
    members = run(client.get_flow(flow))["identities"]
    assert len(members) == workers * per_worker + 1
    assert sum(m["status"] == "revoked" for m in members) == workers
    links = client.backend.authority.list_links(client.backend.principal)  # type: ignore[attr-defined]
    assert len(links) == workers * (2 * per_worker - 1)
    assert len({link["_id"] for link in links}) == len(links)

    report = run(client.verify_audit())
    assert report["ok"] is True, report
    counts: dict[str, int] = {}
    for e in run(client.audit()):
        counts[e["action"]] = counts.get(e["action"], 0) + 1
    assert counts["identity.issue"] == workers * per_worker + 1
    assert counts["flow.add_identity"] == workers * per_worker + 1
    assert counts["link.create"] == workers * (2 * per_worker - 1)
    assert counts["identity.revoke"] == workers
    assert counts["flow.revoke_identity"] == workers


def test_concurrent_secure_connect_of_one_name_issues_one_identity(
    client: Aztp, make_client: Callable[..., Aztp]
) -> None:
    n = 8
    barrier = threading.Barrier(n)
    ids: list[str] = []
    errors: list[BaseException] = []

    def connect() -> None:
        own = make_client()
        barrier.wait()
        try:
            ids.append(run(own.secure_connect({}, "shared-name")).identity.aztp_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=connect) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert ids == [aztp("shared-name")] * n
    assert len(run(client.list_identities())) == 1
    actions = [e["action"] for e in run(client.audit(action="identity.*"))]
    assert actions.count("identity.issue") == 1 and actions.count("identity.reconnect") == n - 1
    assert run(client.verify_audit())["ok"] is True


# =========================================================================================
# Files
# =========================================================================================


def test_store_files_are_private(client: Aztp, aztp_home: Path, db_path: Path) -> None:
    run(client.secure_connect({}, "files-agent"))
    assert stat.S_IMODE(aztp_home.stat().st_mode) == 0o700
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
    for sidecar in aztp_home.glob("aztp.db-*"):  # WAL and shared-memory files hold data too
        assert stat.S_IMODE(sidecar.stat().st_mode) == 0o600, sidecar.name


def test_ca_private_keys_are_sealed_at_rest(client: Aztp, aztp_home: Path, db_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    agent = run(client.secure_connect({}, "sealed-agent"))
    master = aztp_home / "master.key"
    assert stat.S_IMODE(master.stat().st_mode) == 0o600
    con = sqlite3.connect(db_path)
    stored = [row[0] for row in con.execute("SELECT key_pem FROM trust_domains")]
    con.close()
    assert stored and all(s.startswith("aesgcm:v1:") and "PRIVATE KEY" not in s for s in stored)
    raw = db_path.read_bytes() + b"".join(p.read_bytes() for p in aztp_home.glob("aztp.db-wal"))
    assert b"PRIVATE KEY" not in raw  # the database files hold no CA key in clear
    # The sealed key still signs: a fresh credential validates against the bundle.
    assert run(client.verify_credential(agent.identity.certificate))["valid"] is True
    # With another master key the store refuses to use the CA (clear error, no garbage keys).
    from aztp_agents.authority import Authority
    from aztp_agents.errors import StoreError
    from aztp_agents.store import Store

    monkeypatch.setenv("AZTP_MASTER_KEY", "A" * 43 + "=")
    other = Authority(Store.open_sqlite(db_path))
    try:
        principal = other.local_principal()
        with pytest.raises(StoreError, match="master key"):
            other.issue_credential(principal, agent.identity.aztp_id)
    finally:
        other.store.close()


def test_default_home_is_the_test_session_folder(session_aztp_home: Path) -> None:
    from aztp_agents.client import resolve_home

    assert resolve_home() == session_aztp_home
    assert resolve_home() != Path.home() / ".aztp"


def test_federation_through_the_facade(aztp_home: Path) -> None:
    """``Aztp.federate`` / ``unfederate``: cross-domain connections need both sides' trust."""
    from aztp_agents.authority import Authority
    from aztp_agents.store import Store

    admin = Authority(Store.open_sqlite(aztp_home / "aztp.db"))
    _, red_key = admin.create_org("red", "red.test")
    _, green_key = admin.create_org("green", "green.test")
    red, green = Aztp(home=aztp_home, api_key=red_key), Aztp(home=aztp_home, api_key=green_key)
    source = run(red.secure_connect({}, "red-agent")).identity.aztp_id
    target = run(green.secure_connect({}, "green-agent")).identity.aztp_id
    with pytest.raises(NotFoundError):
        run(red.link_identities(source, target))  # not federated: the target is not reachable
    run(red.federate("green.test"))
    run(red.link_identities(source, target))
    assert run(red.verify_authorize_identity_connection(source, target)) is False  # one side only
    run(green.federate("red.test"))
    assert run(red.verify_authorize_identity_connection(source, target)) is True
    run(green.unfederate("red.test"))
    assert run(red.verify_authorize_identity_connection(source, target)) is False
