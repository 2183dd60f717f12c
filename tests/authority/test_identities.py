"""Identities and their credentials: idempotent secure_connect, revoke/reissue, records, JWT-SVIDs and bundles."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from aztp_agents import Aztp
from aztp_agents.errors import (
    AlreadyRevokedError,
    NotFoundError,
    PermissionDeniedError,
)
from tests.authority.helpers import TD, aztp, issue, run, serial_of

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
