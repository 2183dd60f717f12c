"""Organizations, API keys and trust domains."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aztp_agents import Aztp
from aztp_agents.errors import (
    ConflictError,
    InvalidIdError,
    PermissionDeniedError,
    ValidationError,
)
from tests.authority.helpers import TD, db_state, issue, run

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


def test_a_tenant_issues_only_in_trust_domains_assigned_to_it(
    client: Aztp, authority: Any, make_client: Callable[..., Aztp]
) -> None:
    _, key = authority.create_org("tenant", "tenant.example")
    tenant = make_client(api_key=key, trust_domain=None)
    # An unclaimed domain is not the tenant's to take (it would own it from then on).
    for td in ("google.com", "aztp.local"):
        with pytest.raises(PermissionDeniedError, match="not assigned to this organization"):
            run(tenant.secure_connect({}, "squat", config={"trustDomain": td}))
    _, other_key = authority.create_org("other", "other.example")
    authority.add_trust_domain(authority.org_by_name("other"), "google.com")  # still free
    assert set(run(make_client(api_key=other_key, trust_domain=None).get_trust_bundle())) == {
        "other.example",
        "google.com",
    }
    # The operator assigns one: then the tenant issues there.
    authority.add_trust_domain(authority.org_by_name("tenant"), "tenant-two.example")
    agent = run(tenant.secure_connect({}, "two", config={"trustDomain": "tenant-two.example"}))
    assert agent.identity.aztp_id.startswith("aztp://tenant-two.example/")
    with pytest.raises(PermissionDeniedError, match="another organization"):
        authority.add_trust_domain(authority.org_by_name("tenant"), "google.com")
    # The embedded default organization keeps taking the domains its user configures.
    mine = run(client.secure_connect({}, "mine", config={"trustDomain": "mine.example"}))
    assert mine.identity.aztp_id.startswith("aztp://mine.example/")


def test_a_reconnect_with_other_settings_is_an_error(
    client: Aztp, authority: Any, principal: Any, make_client: Callable[..., Aztp]
) -> None:
    first = run(client.secure_connect({}, "settled", config={"environment": "staging"}))
    parent = run(client.secure_connect({}, "parent-agent")).identity.aztp_id
    _, key = authority.create_org("rival", "rival.example")
    for config, says in (
        ({"environment": "staging", "trustDomain": "rival.example"}, "trust domain"),
        ({"environment": "production"}, "environment"),
        ({"environment": "not a segment!"}, "environment"),
        ({"environment": "staging", "parentIdentity": parent}, "parentIdentity"),
        ({"environment": "staging", "parentIdentity": "not-an-id"}, "aztp://"),
    ):
        with pytest.raises(
            (ConflictError, PermissionDeniedError, ValidationError, InvalidIdError), match=says
        ):
            run(client.secure_connect({}, "settled", config=config))
    with pytest.raises(ConflictError, match="method"):  # the wire's ``method`` field
        authority.secure_connect(principal, "settled", environment="staging", method="pod")
    again = run(client.secure_connect({}, "settled", config={"environment": "staging"}))
    assert again.identity.aztp_id == first.identity.aztp_id
    assert key  # the rival's domain was never taken over


def test_verification_is_audited(client: Aztp) -> None:
    a, b = issue(client, "verified-a", "verified-b")
    before = len(run(client.audit()))
    run(client.verify_identity_by_aztp_id(a))
    run(client.verify_authorize_identity_connection(a, b))
    assert len(run(client.audit())) == before + 2
