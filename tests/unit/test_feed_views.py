"""What one user's follower is sent of a write (decisions.views): never a record about a flow
the user may not see, never an owner, and a reset whenever what the user sees of a flow
changes or cannot be told."""

from __future__ import annotations

from aztp_agents.decisions.changes import (
    AttachedPolicies,
    FlowDeleted,
    FlowRevocation,
    FlowSettings,
    Grants,
    IdentityStatus,
    Membership,
    apply,
    decode,
    encode,
)
from aztp_agents.decisions.state import DecisionState
from aztp_agents.decisions.views import (
    UNKNOWN,
    filter_changes,
    mark_unknown,
    settings_touched,
    user_view,
    visibility,
)

ALICE, BOB = "user-alice", "user-bob"


def state() -> DecisionState:
    """Alice's private flow ``mine``, a public flow ``shared``."""
    return DecisionState(
        organization="acme",
        revision=3,
        identities={"a": "active", "t": "active"},
        members={"mine": {"a", "t"}, "shared": {"a"}},
        flow_revoked={"mine": {"t"}},
        links={("a", "t")},
        flow_links={"mine": {("a", "t")}, "shared": {("t", "a")}},
        flows={"mine": "alice-private", "shared": "shared"},
        flow_owners={"mine": ALICE, "shared": ALICE},
        public_flows={"shared"},
        position=7,
    )


def test_the_user_view_holds_only_visible_flows_public_and_without_owner() -> None:
    bob = user_view(state(), BOB)
    assert bob.flows == {"shared": "shared"}
    assert set(bob.members) == {"shared"} and bob.flow_revoked == {}
    assert set(bob.flow_links) == {"shared"}
    assert bob.flow_owners == {} and bob.public_flows == {"shared"}
    assert bob.identities == state().identities and bob.links == {("a", "t")}
    assert bob.position == 7 and bob.revision == 3
    alice = user_view(state(), ALICE)
    assert set(alice.flows) == {"mine", "shared"} and alice.public_flows == {"mine", "shared"}
    assert set(user_view(state(), None).flows) == {"mine", "shared"}  # organization-wide


def test_records_about_a_flow_the_user_may_not_see_are_never_sent() -> None:
    changes = [
        Membership("mine", "a", False),
        FlowRevocation("mine", "t", False),
        Membership("shared", "t", True),
        Grants("a", "t", True, ("mine", "shared")),
        IdentityStatus("a", "revoked"),
        AttachedPolicies("t", ()),
    ]
    visible = visibility(state(), BOB)
    sent = filter_changes(changes, visible, BOB)
    assert not sent.reset
    assert sent.records == (
        Membership("shared", "t", True),
        Grants("a", "t", True, ("shared",)),
        IdentityStatus("a", "revoked"),
        AttachedPolicies("t", ()),
    )
    everything = filter_changes(changes, visibility(state(), ALICE), ALICE)
    assert everything.records == tuple(changes)


def test_flow_settings_are_sent_without_the_owner_and_a_new_private_flow_not_at_all() -> None:
    visible = visibility(state(), BOB)
    sent = filter_changes(
        [
            FlowSettings("shared", "renamed", ALICE, True),  # rename: same visibility
            FlowSettings("new-public", "np", ALICE, True),
            FlowSettings("new-private", "npv", ALICE, False),
            Membership("new-private", "a", True),
        ],
        visible,
        BOB,
    )
    assert sent == type(sent)(
        (
            FlowSettings("shared", "renamed", None, True),
            FlowSettings("new-public", "np", None, True),
        )
    )
    assert visible == {"mine": False, "shared": True, "new-public": True, "new-private": False}


def test_a_change_of_what_the_user_sees_resets_and_keeps_the_filter_exact() -> None:
    for change, after in (
        (FlowSettings("mine", "alice-private", ALICE, True), True),  # made public: bob sees it
        (FlowSettings("shared", "shared", ALICE, False), False),  # made private: bob loses it
    ):
        visible = visibility(state(), BOB)
        sent = filter_changes([Membership("shared", "a", False), change], visible, BOB)
        assert sent.reset and sent.records == ()  # nothing of the write is sent
        assert visible[change.flow_id] is after  # exact for the writes after it
    # the owner's view of the same change is an ordinary record (she sees it either way)
    visible = visibility(state(), ALICE)
    sent = filter_changes([FlowSettings("mine", "m", ALICE, True)], visible, ALICE)
    assert not sent.reset and sent.records == (FlowSettings("mine", "m", None, True),)


def test_deleting_a_flow_is_sent_only_to_who_saw_it() -> None:
    visible = visibility(state(), BOB)
    assert filter_changes([FlowDeleted("mine")], visible, BOB).records == ()
    assert filter_changes([FlowDeleted("shared")], visible, BOB).records == (FlowDeleted("shared"),)
    assert visible == {}


def test_an_unknown_visibility_resets_on_any_record_about_the_flow() -> None:
    for change in (
        Membership("mine", "a", True),
        FlowRevocation("mine", "a", True),
        Grants("a", "t", False, ("mine",)),
        FlowSettings("mine", "m", ALICE, False),
        FlowDeleted("mine"),
    ):
        visible = visibility(state(), BOB)
        mark_unknown(visible, settings_touched([FlowSettings("mine", "x", ALICE, True)]))
        assert visible["mine"] is UNKNOWN
        assert filter_changes([change], visible, BOB).reset, change
    # records about other flows still flow
    visible = visibility(state(), BOB)
    mark_unknown(visible, {"mine"})
    assert filter_changes([Membership("shared", "a", True)], visible, BOB).records


def test_applying_the_filtered_records_to_the_user_view_gives_the_user_view_after() -> None:
    before = state()
    changes = [
        Membership("mine", "t", False),
        Membership("shared", "t", True),
        FlowSettings("shared", "shared-2", ALICE, True),
        Grants("t", "a", False, ("mine",)),
        IdentityStatus("t", "revoked"),
    ]
    for user in (ALICE, BOB, None):
        follower = user_view(before, user)
        sent = filter_changes(changes, visibility(before, user), user)
        assert not sent.reset
        apply(follower, sent.records, revision=4, position=8)
        after = state()
        apply(after, changes, revision=4, position=8)
        expected = user_view(after, user)
        for part in ("identities", "flows", "links", "public_flows", "flow_owners"):
            assert getattr(follower, part) == getattr(expected, part), (user, part)
        for part in ("members", "flow_revoked", "flow_links"):
            got = {k: v for k, v in getattr(follower, part).items() if v}
            want = {k: v for k, v in getattr(expected, part).items() if v}
            assert got == want, (user, part)


def test_a_flow_created_after_a_resumed_followers_position_is_sent_not_reset() -> None:
    """A resumed follower's flows whose settings were written since its position are
    UNKNOWN to the filter; a flow *created* since is not: the follower had none of it."""
    for public, records in (
        (True, (FlowSettings("new", "n", None, True, True), Membership("new", "a", True))),
        (False, ()),  # another user's new private flow: nothing at all, and no reset
    ):
        visible = visibility(state(), BOB)
        visible["new"] = public  # the server's state at its head knows the flow...
        mark_unknown(visible, {"new", "shared"})  # ...not what the follower saw of it
        sent = filter_changes(
            [FlowSettings("new", "n", ALICE, public, created=True), Membership("new", "a", True)],
            visible,
            BOB,
        )
        assert not sent.reset and sent.records == records
        assert visible["new"] is public
        # an update of a flow whose visibility cannot be told still resets
        assert filter_changes([FlowSettings("shared", "s", ALICE, True)], visible, BOB).reset


def test_flow_settings_say_created_only_when_created() -> None:
    created = FlowSettings("f", "n", ALICE, True, created=True)
    assert encode(created)["created"] is True and decode(encode(created)) == created
    updated = FlowSettings("f", "n", ALICE, True)
    assert "created" not in encode(updated) and decode(encode(updated)) == updated
