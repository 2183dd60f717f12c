"""Remote followers fed the change feed equal a freshly loaded state, as their user sees it.

The change-log state machine (``test_change_log``) runs random sequences of every write; here
each organization also has followers as the server's change feed serves them — one per user
(the flows' owner, a colleague who sees only public flows, and an organization-wide caller) —
in process: the server's :class:`~aztp_agents.server.change_feed.FeedCursor` makes the
events, the follower loads ``GET v1/state``'s bytes (:func:`state_chunks`) on a reset and
applies ``changes`` with the same :func:`~aztp_agents.decisions.changes.apply` as the remote
client. Followers also drop their stream at random and resume from their position.

After every step each follower equals the user's view of a freshly loaded state part by
part, decides like it for every (agent, tool, flow, tool name), and was never sent a record
about a flow its user could not see, nor a flow's owner.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from aztp_agents.authority import Authority
from aztp_agents.authority.decision_state import load_state
from aztp_agents.client._replica import snapshot_from_state
from aztp_agents.decisions import Reason
from aztp_agents.decisions.changes import FlowDeleted, FlowSettings, apply, decode
from aztp_agents.decisions.rules import decide_tool_call
from aztp_agents.decisions.state import DecisionState
from aztp_agents.decisions.views import user_view
from aztp_agents.server.change_feed import FeedCursor, position_mark, state_chunks, user_state
from aztp_agents.store import change_log

from . import test_change_log as base
from .test_change_log import ORGS, ChangeLogMachine, normalized


class Follower:
    """One remote follower (the client's protocol, without HTTP): its state, and what it
    was sent since the last check."""

    def __init__(self, server: Authority, org_id: str, user_id: str | None) -> None:
        self.server, self.org_id, self.user_id = server, org_id, user_id
        self.state: DecisionState | None = None
        self.sent: list[Any] = []
        self.loads = 0
        #: (position, the mark of the entry there), as the client keeps it
        self.marked: tuple[int, str | None] = (-1, None)
        self.cursor = FeedCursor(server, org_id, user_id)
        self._take(self.cursor.open(None))

    def resume(self) -> None:
        """The stream dropped: a new one from the follower's position."""
        assert self.state is not None
        self.cursor = FeedCursor(self.server, self.org_id, self.user_id)
        position = self.state.position
        mark = self.marked[1] if self.marked[0] == position else None
        self._take(self.cursor.open(position, mark))

    def poll(self) -> None:
        self._take(self.cursor.poll())

    def _take(self, events: list[Any]) -> None:
        for name, position, data in events:
            if name == "reset":
                if data.get("entry") and self.state is not None and self.state.position >= position:
                    continue  # as the client: loaded at or after that write
                view = user_state(self.server, self.org_id, self.user_id)
                mark = position_mark(self.server, self.org_id, view.position)
                data = json.loads(b"".join(state_chunks(view, mark)))["data"]
                self.state = snapshot_from_state(data)
                self.marked = (self.state.position, data["mark"])
                self.loads += 1
                assert self.state.position >= position
            elif name == "changes":
                assert self.state is not None
                assert data["position"] == position
                if position <= self.state.position:
                    continue
                assert data["from"] <= self.state.position, "records missed"
                records = [decode(r) for r in data["records"]]
                self.sent.extend(records)
                apply(self.state, records, revision=data["revision"], position=position)
                # the mark names the log's entry at that position
                with self.server.store.read() as conn:
                    assert data["mark"] == change_log.mark_at(conn, self.org_id, position)
                self.marked = (position, data["mark"])


class FeedFollowerMachine(ChangeLogMachine):
    def __init__(self) -> None:
        super().__init__()
        self.server = Authority(self.store, issuance_rate=None)  # the feed's server
        self.followers: dict[tuple[str, str], Follower] = {}
        self.users: dict[tuple[str, str], str | None] = {}

    @initialize()
    def orgs(self) -> None:
        super().orgs()
        self.follow()

    def follow(self) -> None:
        """Followers start (after the organizations exist): one per kind of user."""
        for org, p in self.principals.items():
            colleague = self.here.create_user(p.org_id, f"colleague-{org}").user_id
            for kind, user in (("owner", p.user_id), ("colleague", colleague), ("org", None)):
                self.users[(org, kind)] = user
                self.followers[(org, kind)] = Follower(self.server, p.org_id, user)

    @precondition(lambda self: bool(self.followers))
    @rule(which=st.sampled_from(sorted(itertools.product(ORGS, ("owner", "colleague", "org")))))
    def reconnect(self, which: tuple[str, str]) -> None:
        self.followers[which].resume()

    @invariant()
    def followers_equal_a_fresh_user_view(self) -> None:
        for (org, kind), follower in self.followers.items():
            p = self.principals[org]
            follower.poll()
            fresh = load_state(self.store, p.org_id)
            user = self.users[(org, kind)]
            view = user_view(fresh, user)
            got = follower.state
            assert got is not None
            assert normalized(got) == normalized(view), (org, kind)
            assert got.position == fresh.position, (org, kind)
            # Isolation: nothing about a flow the user cannot see; never an owner. (A flow
            # deleted since was visible when its deletion was sent, checked by the view.)
            seen = set(view.flows)
            for record in follower.sent:
                if isinstance(record, FlowSettings):
                    assert record.owner is None
                if isinstance(record, FlowDeleted):
                    continue
                flows = getattr(record, "flows", None)
                mentioned = set(flows) if flows is not None else {getattr(record, "flow_id", "")}
                assert mentioned - {""} <= seen | _deleted_since(record, follower.sent), record
            follower.sent.clear()
            for args in self.decision_args(org):
                want = (
                    decide_tool_call(fresh, **args)[0]
                    if user is None or fresh.flow_visible(args["flow_id"], user)
                    else Reason.FLOW_UNKNOWN
                )
                assert decide_tool_call(got, **args)[0] is want, (org, kind, args)


def _deleted_since(record: Any, sent: list[Any]) -> set[str]:
    """Flows a later record in ``sent`` deleted (visible when the record was sent)."""
    later = sent[sent.index(record) + 1 :]
    return {r.flow_id for r in later if isinstance(r, FlowDeleted)}


@pytest.fixture(autouse=True)
def _tmp(tmp_path_factory: pytest.TempPathFactory) -> None:
    base._TMP = tmp_path_factory


TestFeedFollowers = FeedFollowerMachine.TestCase
TestFeedFollowers.settings = settings(
    max_examples=40,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def test_the_machine_reaches_resets_resumes_and_records(tmp_path: Path) -> None:
    """The follower in this file meets every event kind (a property that cannot fail for
    want of events is no property)."""
    base._TMP = type("F", (), {"mktemp": staticmethod(lambda name: tmp_path / name)})()
    (tmp_path / "changelog").mkdir()
    m = FeedFollowerMachine()
    m.orgs()
    acme = ("acme", "colleague")
    follower = m.followers[acme]
    assert follower.loads == 1  # no position: a reset, one load
    m.create_flow("acme", "f2", public=True, here=False)
    m.followers_equal_a_fresh_user_view()
    m.reconnect(acme)
    m.membership("acme", "f2", "ag", "add", here=False)
    m.followers_equal_a_fresh_user_view()
    assert follower.loads == 1  # created flow and membership applied as records, resumed
    m.update_flow("acme", "f2", public=False, here=True)  # the colleague loses it: reset
    m.followers_equal_a_fresh_user_view()
    assert follower.loads == 2
    m.teardown()
