"""Links and connection authorization (federation included)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aztp_agents import Aztp
from aztp_agents.errors import (
    NotFoundError,
)
from tests.authority.helpers import TD, aztp, issue, run

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
