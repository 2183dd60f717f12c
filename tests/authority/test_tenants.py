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
    PermissionDeniedError,
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


def test_verification_is_audited(client: Aztp) -> None:
    a, b = issue(client, "verified-a", "verified-b")
    before = len(run(client.audit()))
    run(client.verify_identity_by_aztp_id(a))
    run(client.verify_authorize_identity_connection(a, b))
    assert len(run(client.audit())) == before + 2
