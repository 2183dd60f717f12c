"""Identity flows: flow-scoped revocation, membership, visibility, delete, health."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from aztp_agents import Aztp
from aztp_agents.errors import (
    AlreadyRevokedError,
    ConflictError,
    NotFoundError,
)
from tests.authority.helpers import issue, run

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
    # Its name is taken (names are organization-wide), but nothing else about it is told:
    # not its id, not that it is private, the same answer for create and ensure.
    with pytest.raises(ConflictError) as created:
        run(bob.create_flow("alice-private"))
    with pytest.raises(ConflictError) as ensured:  # what Guard(flow="alice-private") asks
        bob.backend.call("ensure_flow", name="alice-private", discoverable="private")
    answers = [str(created.value), str(ensured.value)]
    assert answers[0] == answers[1]
    assert private not in answers[0] and "private" not in answers[0].replace("alice-private", "")
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


def test_create_flow_on_a_taken_name_says_how_to_reuse_it(
    client: Aztp, authority: Any, principal: Any, make_client: Callable[..., Aztp]
) -> None:
    """A second run of a quick start meets its own flow: the error names the way to reuse it
    (``ensure_flow``, or the id), but only to who may see the flow."""
    mine = run(client.create_flow("rerun", discoverable="private"))
    with pytest.raises(ConflictError) as taken:
        run(client.create_flow("rerun"))
    message = str(taken.value)
    assert mine["_id"] in message and "ensure_flow('rerun')" in message
    again = run(client.ensure_flow("rerun"))
    assert again["_id"] == mine["_id"]
    assert client.sync.ensure_flow("rerun")["_id"] == mine["_id"]
    fresh = client.sync.ensure_flow("rerun-new", discoverable="public")
    assert fresh["name"] == "rerun-new" and fresh["discoverable"] == "public"

    authority.create_user(principal.org_id, "bob")
    bob = make_client(user="bob")
    with pytest.raises(ConflictError) as hidden:
        run(bob.create_flow("rerun"))
    assert mine["_id"] not in str(hidden.value) and "ensure_flow" not in str(hidden.value)
    assert "another name" in str(hidden.value)
    with pytest.raises(ConflictError):
        run(bob.ensure_flow("rerun"))  # a flow bob cannot see is not his to reuse
