"""Links and connection authorization (federation included)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aztp_agents import Aztp, Guard, Reason
from aztp_agents.errors import (
    NotFoundError,
)
from aztp_agents.store import SCHEMA_VERSION
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


# =========================================================================================
# Flow-scoped grants (issue 18.2): an adapter's grants hold in their flow only
# =========================================================================================


def test_flow_scoped_grants_and_organization_wide_links(client: Aztp) -> None:
    """A guard's link holds in its flow only; a link made through the API holds everywhere
    (tool calls of every flow and ``verify_authorize_identity_connection``)."""
    in_a, in_b = Guard(flow="grants-a", client=client), Guard(flow="grants-b", client=client)
    agent = in_a.enroll("agent/analyst", ["tool/delete-db"]).agent_id
    delete_db = in_a.ensure_identity("tool/delete-db")
    search = in_b.enroll("agent/analyst", ["tool/search"]).tools["tool/search"]
    in_b.enroll("agent/dba", ["tool/delete-db"])  # delete-db is a member of flow B too

    assert in_a.check(agent, delete_db, "delete_db").allowed
    elsewhere = in_b.check(agent, delete_db, "delete_db")
    assert elsewhere.reason is Reason.NO_LINK
    # The denial says why (issue 16.3), without naming a flow the caller may not see.
    assert elsewhere.detail == "a grant declared for another flow holds there only"
    assert in_b.check(agent, search, "search").allowed
    # A grant scoped to a flow is not an organization-wide authorization.
    assert run(client.verify_authorize_identity_connection(agent, delete_db)) is False
    (scoped,) = run(client.list_links(delete_db))[:1]
    assert scoped["scope"] == "flow" and scoped["identityFlowIds"] == [in_a.flow_id]
    audit = run(client.audit(action="link.create"))[0]["data"]
    assert audit["scope"] == "flow" and audit["flowId"] == in_a.flow_id

    # Enrolling again in flow B adds flow B to the same link, nothing wider.
    in_b.link(agent, delete_db)
    assert in_b.check(agent, delete_db, "delete_db").allowed
    link = next(x for x in run(client.list_links(agent)) if x["targetIdentity"] == delete_db)
    assert sorted(link["identityFlowIds"]) == sorted([in_a.flow_id, in_b.flow_id])
    assert run(client.verify_authorize_identity_connection(agent, delete_db)) is False

    # Deleting a flow takes its grants with it and never widens a link that held there only.
    run(client.unlink_identities(agent, delete_db))
    in_a.link(agent, delete_db)
    run(client.delete_flow(in_a.flow_id))
    assert not [x for x in run(client.list_links(agent)) if x["targetIdentity"] == delete_db]
    gone = in_b.check(agent, delete_db, "delete_db")
    assert gone.reason is Reason.NO_LINK and gone.detail is None

    # The AZTP API's link is organization-wide: every flow, and the connection check.
    api = run(client.link_identities(agent, delete_db, "tool_access"))
    assert api["scope"] == "organization" and api["identityFlowIds"] == []
    assert in_b.check(agent, delete_db, "delete_db").allowed
    assert run(client.verify_authorize_identity_connection(agent, delete_db)) is True
    in_b.link(agent, delete_db)  # an adapter's grant never narrows an organization-wide link
    assert run(client.list_links(agent))[-1]["scope"] == "organization"


def test_an_api_link_widens_a_flow_scoped_one(client: Aztp) -> None:
    guard = Guard(flow="widen", client=client)
    crew = guard.enroll("agent/w", ["tool/t"])
    tool = crew.tools["tool/t"]
    assert run(client.verify_authorize_identity_connection(crew.agent_id, tool)) is False
    widened = run(client.link_identities(crew.agent_id, tool, "tool_access"))
    assert widened["scope"] == "organization"
    assert run(client.verify_authorize_identity_connection(crew.agent_id, tool)) is True
    assert [e["data"]["scope"] for e in run(client.audit(action="link.create"))] == [
        "flow",
        "organization",
    ]


def test_links_of_a_store_older_than_flow_scopes_stay_organization_wide(
    make_client: Callable[..., Aztp], aztp_home: Path
) -> None:
    """A schema-1 store (no ``link_flows``) is migrated on open; its links keep their
    organization-wide meaning."""
    import sqlite3

    from tests.support.cli import close_embedded

    client = make_client()
    a, b = issue(client, "old-a", "old-b")
    run(client.link_identities(a, b, "tool_access"))
    close_embedded(aztp_home)
    con = sqlite3.connect(aztp_home / "aztp.db")
    with con:
        con.execute("DROP TABLE link_flows")
        con.execute("UPDATE meta SET value = 1 WHERE key = 'schema_version'")
        con.execute("DROP TABLE alembic_version")  # made before Alembic
    con.close()

    reopened = make_client()
    (link,) = run(reopened.list_links(a))
    assert link["scope"] == "organization"
    assert run(reopened.verify_authorize_identity_connection(a, b)) is True
    con = sqlite3.connect(aztp_home / "aztp.db")
    try:
        version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert version == (SCHEMA_VERSION,)
        assert con.execute("SELECT count(*) FROM link_flows").fetchone() == (0,)
    finally:
        con.close()


# =========================================================================================
# Operator intent: a removed link is not re-created by enrollment (issue 13.4)
# =========================================================================================


def test_enrollment_does_not_recreate_a_link_an_operator_removed(client: Aztp) -> None:
    guard = Guard(flow="intent", client=client)
    crew = guard.enroll("agent/i", ["tool/i"])
    tool = crew.tools["tool/i"]
    run(client.unlink_identities(crew.agent_id, tool, reason="too broad"))

    again = guard.enroll("agent/i", ["tool/i"])  # what the next process start does
    assert again.tools["tool/i"] == tool
    assert run(client.list_links(crew.agent_id)) == []
    assert guard.check(crew.agent_id, tool).reason is Reason.NO_LINK
    (removal,) = run(client.list_link_removals(crew.agent_id))
    assert removal["state"] == "removed_by_operator"
    assert removal["reason"] == "too broad"
    assert removal["identityFlowIds"] == [guard.flow_id]
    # an unrelated identity has no removals
    (other,) = issue(client, "intent-other")
    assert run(client.list_link_removals(other)) == []

    restored = run(client.restore_link(crew.agent_id, tool))
    assert [x["identityFlowIds"] for x in restored["links"]] == [[guard.flow_id]]
    assert guard.check(crew.agent_id, tool).allowed
    assert run(client.list_link_removals()) == []
    assert [e["action"] for e in run(client.audit()) if e["action"].startswith("link.")] == [
        "link.create",
        "link.delete",
        "link.restore",
    ]
    with pytest.raises(NotFoundError):
        run(client.restore_link(crew.agent_id, tool))


def test_restoring_an_organization_wide_link_and_a_symmetric_one_from_either_end(
    client: Aztp,
) -> None:
    a, b = issue(client, "intent-a", "intent-b")
    run(client.link_identities(a, b))  # 'linked' is symmetric
    run(client.unlink_identities(b, a))  # removed from the other end
    (removal,) = run(client.list_link_removals(a))
    assert (removal["sourceIdentity"], removal["scope"]) == (a, "organization")
    assert run(client.verify_authorize_identity_connection(a, b)) is False
    restored = run(client.restore_link(b, a))
    assert [x["scope"] for x in restored["links"]] == ["organization"]
    assert run(client.verify_authorize_identity_connection(b, a)) is True


def test_restoring_a_link_whose_flow_is_gone_leaves_it_to_enrollment(client: Aztp) -> None:
    guard = Guard(flow="gone", client=client)
    crew = guard.enroll("agent/g", ["tool/g"])
    tool = crew.tools["tool/g"]
    run(client.unlink_identities(crew.agent_id, tool))
    run(client.delete_flow(guard.flow_id))
    restored = run(client.restore_link(crew.agent_id, tool))
    # not widened to the whole organization: nothing to put back until a crew declares it
    assert (restored["restored"], restored["links"]) == (1, [])
    assert run(client.list_links(crew.agent_id)) == []
    fresh = Guard(flow="gone", client=client)
    fresh.enroll("agent/g", ["tool/g"])
    assert fresh.check(crew.agent_id, tool).allowed


def test_link_removals_of_a_store_older_than_operator_intent(
    make_client: Callable[..., Aztp], aztp_home: Path
) -> None:
    """A schema-2 store (no ``link_removals``) is migrated on open; unlink records there."""
    import sqlite3

    from tests.support.cli import close_embedded

    client = make_client()
    a, b = issue(client, "mig-a", "mig-b")
    run(client.link_identities(a, b, "tool_access"))
    close_embedded(aztp_home)
    con = sqlite3.connect(aztp_home / "aztp.db")
    with con:
        con.execute("DROP TABLE link_removals")
        con.execute("UPDATE meta SET value = 2 WHERE key = 'schema_version'")
        con.execute("DROP TABLE alembic_version")  # made before Alembic
    con.close()

    reopened = make_client()
    run(reopened.unlink_identities(a, b))
    assert [x["sourceIdentity"] for x in run(reopened.list_link_removals())] == [a]
