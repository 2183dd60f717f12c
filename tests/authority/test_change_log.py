"""Decision state that follows the change log equals the state loaded afresh, after any write.

A hypothesis state machine runs random sequences of every write that changes decision state
(several organizations, flows, memberships, flow revocations, links org-wide and flow-scoped,
policies, identity revocations, flow deletions, compaction of the log) through two
authorities on one store: ``here`` (its own writes are applied to its state right after they
commit) and ``there`` (another enforcement point: ``here`` learns of its writes only from the
log). After each step, ``here``'s incrementally kept state gives the same decision as a state
loaded afresh for every (agent, tool, flow, tool name) it knows, and equals it part by part.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from aztp_agents.authority import Authority
from aztp_agents.authority.decision_state import load_state
from aztp_agents.decisions import Reason
from aztp_agents.decisions.rules import decide_tool_call
from aztp_agents.decisions.state import DecisionState
from aztp_agents.errors import AztpError
from aztp_agents.store import Store, change_log

ORGS = ("acme", "globex")
NAMES = ("ag", "t1", "t2")
FLOWS = ("f1", "f2")
TOOL_NAMES = ("search", "delete_file")
POLICIES = {
    "allow-search": {"Statement": [{"Effect": "Allow", "Action": "tool:search"}]},
    "deny-delete": {"Statement": [{"Effect": "Deny", "Action": "tool:delete_file"}]},
    "allow-all": {"Statement": [{"Effect": "Allow", "Action": "tool:*"}]},
}


def normalized(state: DecisionState) -> dict[str, Any]:
    """The parts of a state that decisions read, with empty containers dropped."""

    def sets(table: dict[str, set[Any]]) -> dict[str, list[Any]]:
        return {k: sorted(v) for k, v in table.items() if v}

    return {
        "identities": dict(state.identities),
        "members": sets(state.members),
        "flow_revoked": sets(state.flow_revoked),
        "links": sorted(state.links),
        "flow_links": sets(state.flow_links),
        "policies": {
            k: sorted(json.dumps(s.model_dump(mode="json"), sort_keys=True) for s in v)
            for k, v in state.policies.items()
            if v
        },
        "flows": dict(state.flows),
        "flow_owners": dict(state.flow_owners),
        "public_flows": sorted(state.public_flows),
    }


class ChangeLogMachine(RuleBasedStateMachine):
    def decision_args(self, org: str) -> Iterator[dict[str, Any]]:
        """Every (agent, tool, flow, tool name) of the organization's identities and flows
        (and a flow that does not exist), as keyword arguments of a decision."""
        ids = [v for (o, _), v in self.ids.items() if o == org]
        flows = [v for (o, _), v in self.flows.items() if o == org] + ["no-such-flow"]
        for agent, tool, flow_id, name in itertools.product(ids, ids, flows, TOOL_NAMES):
            if agent != tool:
                yield {"flow_id": flow_id, "agent": agent, "tool": tool, "tool_name": name}

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(_TMP.mktemp("changelog"))
        self.store = Store.open_sqlite(self.folder / "aztp.db")
        self.here = Authority(self.store, issuance_rate=None)
        self.there = Authority(self.store, issuance_rate=None)
        self.principals: dict[str, Any] = {}
        self.ids: dict[tuple[str, str], str] = {}
        self.flows: dict[tuple[str, str], str] = {}
        self.codes: dict[tuple[str, str], str] = {}
        #: The state object ``here`` holds per organization: the same one step after step
        #: (kept current in place), replaced only after the log was compacted past it.
        self.held: dict[str, DecisionState] = {}
        self.compacted: set[str] = set()

    @initialize()
    def orgs(self) -> None:
        for n, org in enumerate(ORGS):
            p, _ = self.here.create_org(org, f"{org}.example", with_key=False)
            self.principals[org] = p
            for i, name in enumerate(NAMES):
                if (i + n) % 2 == 0:  # some identities exist from the start, others come later
                    self._issue(org, name, self.there)
            # A populated start (random steps then change it): a flow with every identity
            # that exists, a flow-scoped and an organization-wide link.
            self.create_flow(org, FLOWS[0], public=n == 0, here=False)
            for name in NAMES:
                self.membership(org, FLOWS[0], name, "add", here=False)
            self.link(org, NAMES[0], NAMES[-1], "uses_tool", FLOWS[0], True, here=False)
            self.link(org, NAMES[-1], NAMES[0], "linked", None, False, here=False)
            self.here.decisions.state(p.org_id)  # held from now on: kept current by the log

    def teardown(self) -> None:
        self.store.close()

    # --- helpers -----------------------------------------------------------------------

    def _by(self, here: bool) -> Authority:
        return self.here if here else self.there

    def _issue(self, org: str, name: str, by: Authority) -> None:
        doc = by.identities.secure_connect(self.principals[org], name, make_key=False)
        self.ids[(org, name)] = doc["identity"]["aztpId"]

    def _attempt(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        # refused (not found, already revoked, ...): a refused write changes nothing
        with contextlib.suppress(AztpError):
            fn(*args, **kwargs)

    # --- every write -------------------------------------------------------------------

    @rule(org=st.sampled_from(ORGS), name=st.sampled_from(NAMES), here=st.booleans())
    def issue(self, org: str, name: str, here: bool) -> None:
        self._issue(org, name, self._by(here))

    @rule(org=st.sampled_from(ORGS), name=st.sampled_from(NAMES), here=st.booleans())
    def revoke(self, org: str, name: str, here: bool) -> None:
        if (org, name) in self.ids:
            p = self.principals[org]
            self._attempt(self._by(here).identities.revoke_identity, p, self.ids[(org, name)])

    @rule(org=st.sampled_from(ORGS), name=st.sampled_from(NAMES), here=st.booleans())
    def reissue(self, org: str, name: str, here: bool) -> None:
        if (org, name) in self.ids:
            p = self.principals[org]
            by = self._by(here)
            self._attempt(by.identities.reissue_identity, p, self.ids[(org, name)], make_key=False)

    @rule(
        org=st.sampled_from(ORGS),
        flow=st.sampled_from(FLOWS),
        public=st.booleans(),
        here=st.booleans(),
    )
    def create_flow(self, org: str, flow: str, public: bool, here: bool) -> None:
        if (org, flow) in self.flows:
            return
        p = self.principals[org]
        doc = self._by(here).flows.create_flow(
            p, f"{flow}-{len(self.flows)}", discoverable="public" if public else "private"
        )
        self.flows[(org, flow)] = doc["_id"]

    @rule(
        org=st.sampled_from(ORGS),
        flow=st.sampled_from(FLOWS),
        public=st.booleans(),
        here=st.booleans(),
    )
    def update_flow(self, org: str, flow: str, public: bool, here: bool) -> None:
        if (org, flow) in self.flows:
            self._by(here).flows.update_flow(
                self.principals[org],
                self.flows[(org, flow)],
                name=f"{flow}-renamed-{public}",
                discoverable="public" if public else "private",
            )

    @rule(org=st.sampled_from(ORGS), flow=st.sampled_from(FLOWS), here=st.booleans())
    def delete_flow(self, org: str, flow: str, here: bool) -> None:
        flow_id = self.flows.pop((org, flow), None)
        if flow_id is not None:
            self._by(here).flows.delete_flow(self.principals[org], flow_id)

    @rule(
        org=st.sampled_from(ORGS),
        flow=st.sampled_from(FLOWS),
        name=st.sampled_from(NAMES),
        op=st.sampled_from(("add", "remove", "revoke", "reinstate")),
        here=st.booleans(),
    )
    def membership(self, org: str, flow: str, name: str, op: str, here: bool) -> None:
        if (org, flow) not in self.flows or (org, name) not in self.ids:
            return
        p, flow_id, aztp_id = self.principals[org], self.flows[(org, flow)], self.ids[(org, name)]
        flows = self._by(here).flows
        if op == "add":
            self._attempt(flows.add_identity_to_flow, p, flow_id, aztp_id)
        elif op == "remove":
            self._attempt(flows.remove_identity_from_flow, p, flow_id, aztp_id)
        elif op == "revoke":
            self._attempt(flows.revoke_flow_identity, p, aztp_id, flow_id)
        else:
            self._attempt(flows.reinstate_flow_identity, p, aztp_id, flow_id)

    @rule(
        org=st.sampled_from(ORGS),
        source=st.sampled_from(NAMES),
        dest=st.sampled_from(NAMES),
        kind=st.sampled_from(("linked", "uses_tool")),
        flow=st.none() | st.sampled_from(FLOWS),
        declared=st.booleans(),
        here=st.booleans(),
    )
    def link(
        self,
        org: str,
        source: str,
        dest: str,
        kind: str,
        flow: str | None,
        declared: bool,
        here: bool,
    ) -> None:
        if (org, source) not in self.ids or (org, dest) not in self.ids or source == dest:
            return
        if flow is not None and (org, flow) not in self.flows:
            return
        self._attempt(
            self._by(here).links.link_identities,
            self.principals[org],
            self.ids[(org, source)],
            self.ids[(org, dest)],
            kind,
            flow_id=None if flow is None else self.flows[(org, flow)],
            declared=declared,
        )

    @rule(org=st.sampled_from(ORGS), restore=st.booleans(), here=st.booleans(), data=st.data())
    def unlink(self, org: str, restore: bool, here: bool, data: st.DataObject) -> None:
        """Remove a link that exists, or restore one an operator removed."""
        p, links = self.principals[org], self._by(here).links
        docs = links.list_link_removals(p) if restore else links.list_links(p)
        if not docs:
            return
        doc = data.draw(st.sampled_from(docs))
        op = links.restore_link if restore else links.unlink_identities
        self._attempt(op, p, doc["sourceIdentity"], doc["targetIdentity"])

    @rule(
        org=st.sampled_from(ORGS),
        name=st.sampled_from(NAMES),
        policy=st.sampled_from(sorted(POLICIES)),
        attach=st.booleans(),
        here=st.booleans(),
    )
    def policy(self, org: str, name: str, policy: str, attach: bool, here: bool) -> None:
        if (org, name) not in self.ids:
            return
        p, by = self.principals[org], self._by(here)
        if (org, policy) not in self.codes:
            self.codes[(org, policy)] = by.policies.create_policy(p, policy, POLICIES[policy])[
                "code"
            ]
        code, aztp_id = self.codes[(org, policy)], self.ids[(org, name)]
        if attach:
            self._attempt(by.policies.attach_policy, p, aztp_id, code)
        else:
            self._attempt(by.policies.detach_policy, p, aztp_id, code)

    @rule(org=st.sampled_from(ORGS))
    def compact(self, org: str) -> None:
        """The log is compacted up to its head: a reader behind it must load afresh."""
        org_id = self.principals[org].org_id
        with self.store.write(bump=False) as conn:
            head = change_log.heads(conn, [org_id])[org_id]
            change_log.compact(conn, org_id, head)
        self.compacted.add(org)

    # --- the property ------------------------------------------------------------------

    @invariant()
    def follows_the_log(self) -> None:
        if not self.principals:
            return
        for org, p in self.principals.items():
            fresh = load_state(self.store, p.org_id)
            # First without I/O, before the state catches up (a write by ``there`` is known
            # here only by its signals): an answer from memory is the right one now.
            point = self.here.decisions.for_principal(p.org_id, p.user_id)
            self.here.changes.confirm_files()
            for args in self.decision_args(org):
                now = point.decide_now(
                    args["flow_id"], args["agent"], args["tool"], args["tool_name"], True
                )
                if now is not None:
                    assert now.reason is decide_tool_call(fresh, **args)[0], args
            kept = self.here.decisions.state(p.org_id)
            if org in self.held and org not in self.compacted:
                assert kept is self.held[org], "reloaded instead of following the log"
            self.held[org] = kept
            self.compacted.discard(org)
            assert normalized(kept) == normalized(fresh), org
            assert kept.position == fresh.position
            for args in self.decision_args(org):
                assert decide_tool_call(kept, **args) == decide_tool_call(fresh, **args), args
                # and through the cache's own decision path (the memo included)
                made = self.here.decide(p, **args)
                assert made.reason is decide_tool_call(fresh, **args)[0], args
                assert made.allowed is (made.reason is Reason.ALLOWED)


_TMP: Any = None


@pytest.fixture(autouse=True)
def _tmp(tmp_path_factory: pytest.TempPathFactory) -> None:
    global _TMP
    _TMP = tmp_path_factory


TestChangeLog = ChangeLogMachine.TestCase
TestChangeLog.settings = settings(
    max_examples=60,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


# =========================================================================================
# Following the log: what each kind of write costs the states held elsewhere
# =========================================================================================


@pytest.fixture
def two(tmp_path: Path) -> Any:
    """Two enforcement points (``here``, ``there``) on one store, two organizations."""
    store = Store.open_sqlite(tmp_path / "aztp.db")
    here, there = Authority(store, issuance_rate=None), Authority(store, issuance_rate=None)
    acme, _ = here.create_org("acme", "acme.example", with_key=False)
    globex, _ = here.create_org("globex", "globex.example", with_key=False)
    yield store, here, there, acme, globex
    store.close()


def _crew(by: Authority, p: Any) -> tuple[str, str, str]:
    agent = by.identities.secure_connect(p, "agent", make_key=False)["identity"]["aztpId"]
    tool = by.identities.secure_connect(p, "tool", make_key=False)["identity"]["aztpId"]
    flow = by.flows.create_flow(p, "prod")["_id"]
    for who in (agent, tool):
        by.flows.add_identity_to_flow(p, flow, who)
    by.links.link_identities(p, agent, tool, "uses_tool")
    return agent, tool, flow


def test_another_organizations_write_keeps_the_state_and_its_memo(two: Any) -> None:
    store, here, there, acme, globex = two
    agent, tool, flow = _crew(there, acme)
    other = _crew(there, globex)
    assert here.decide(acme, flow_id=flow, agent=agent, tool=tool, tool_name="search").allowed
    held = here.decisions.state(acme.org_id)
    memo, position = held.memo, held.position

    there.identities.revoke_identity(globex, other[0])  # another tenant's revocation

    after = here.decide(acme, flow_id=flow, agent=agent, tool=tool, tool_name="search")
    assert after.allowed
    assert here.decisions.state(acme.org_id) is held  # not reloaded
    assert held.memo is memo and held.position == position  # nothing of acme was applied
    # but it is known current as of the store's latest commit, without a read of the store
    assert held.token == store.change_token()
    denied = here.decide(globex, flow_id=other[2], agent=other[0], tool=other[1])
    assert denied.reason is Reason.AGENT_REVOKED


def test_a_write_elsewhere_is_applied_from_the_log_and_denies_the_next_call(two: Any) -> None:
    store, here, there, acme, _ = two
    agent, tool, flow = _crew(there, acme)
    assert here.decide(acme, flow_id=flow, agent=agent, tool=tool).allowed
    held = here.decisions.state(acme.org_id)

    there.flows.revoke_flow_identity(acme, agent, flow)

    decision = here.decide(acme, flow_id=flow, agent=agent, tool=tool)
    assert decision.reason is Reason.AGENT_REVOKED_IN_FLOW
    assert here.decisions.state(acme.org_id) is held  # applied in place, O(change)
    assert held.position == load_state(store, acme.org_id).position


def test_a_write_here_is_applied_when_it_commits(two: Any) -> None:
    _store, here, _there, acme, _ = two
    agent, tool, flow = _crew(here, acme)
    assert here.decide(acme, flow_id=flow, agent=agent, tool=tool).allowed
    held = here.decisions.state(acme.org_id)
    before = held.position

    here.identities.revoke_identity(acme, agent)

    # Before any decision reads anything: the write's own records are already applied.
    assert held.position == before + 1 and held.identities[agent] == "revoked"
    assert here.decide(acme, flow_id=flow, agent=agent, tool=tool).reason is Reason.AGENT_REVOKED


def test_a_follower_behind_the_compacted_log_loads_afresh(two: Any) -> None:
    store, here, there, acme, _ = two
    store.change_log_keep = 2  # compaction every 2 positions, keeping the last 2
    agent, tool, flow = _crew(there, acme)
    assert here.decide(acme, flow_id=flow, agent=agent, tool=tool).allowed
    held = here.decisions.state(acme.org_id)
    extra = [
        there.identities.secure_connect(acme, f"extra-{i}", make_key=False)["identity"]["aztpId"]
        for i in range(5)
    ]
    there.identities.revoke_identity(acme, agent)
    with store.read() as conn:
        oldest = change_log.oldest_kept(conn, acme.org_id)
    assert oldest is not None and oldest > held.position + 1  # its next entries are gone

    decision = here.decide(acme, flow_id=flow, agent=agent, tool=tool)
    assert decision.reason is Reason.AGENT_REVOKED
    reloaded = here.decisions.state(acme.org_id)
    assert reloaded is not held
    assert normalized(reloaded) == normalized(load_state(store, acme.org_id))
    assert set(extra) <= set(reloaded.identities)


def test_a_record_this_version_cannot_read_makes_it_load_afresh(two: Any) -> None:
    from sqlalchemy import insert, update

    from aztp_agents.store import schema

    store, here, there, acme, _ = two
    agent, tool, flow = _crew(there, acme)
    assert here.decide(acme, flow_id=flow, agent=agent, tool=tool).allowed
    held = here.decisions.state(acme.org_id)
    there.identities.revoke_identity(acme, agent)
    with store.write() as conn:  # a newer writer's record kind, after the revocation
        head = change_log.heads(conn, [acme.org_id])[acme.org_id] + 1
        conn.execute(
            insert(schema.state_changes).values(
                org_id=acme.org_id,
                seq=head,
                revision=store.revision(conn) + 1,
                records='[{"kind": "from-the-future"}]',
                ts="2026-12-02T00:00:00Z",
            )
        )
        conn.execute(
            update(schema.change_heads)
            .where(schema.change_heads.c.org_id == acme.org_id)
            .values(seq=head)
        )

    decision = here.decide(acme, flow_id=flow, agent=agent, tool=tool)
    assert decision.reason is Reason.AGENT_REVOKED  # never skipped: loaded afresh
    assert here.decisions.state(acme.org_id) is not held


def test_an_import_is_followed_in_batches(two: Any) -> None:
    store, here, there, acme, _ = two
    agent, tool, flow = _crew(there, acme)
    assert here.decide(acme, flow_id=flow, agent=agent, tool=tool).allowed
    held = here.decisions.state(acme.org_id)
    there.identities.IMPORT_BATCH = 7  # several transactions, one log entry each
    answer = there.identities.import_identities(
        acme, [f"worker-{i}" for i in range(20)] + ["agent"], flow_id=flow
    )
    assert answer == {"issued": 20, "existing": 1, "flowId": flow}
    worker = "aztp://acme.example/workload/production/node/worker-19"
    there.links.link_identities(acme, worker, tool, "uses_tool")

    assert here.decide(acme, flow_id=flow, agent=worker, tool=tool).allowed
    assert here.decisions.state(acme.org_id) is held  # followed, not reloaded
    assert normalized(held) == normalized(load_state(store, acme.org_id))
    imports = here.audit_log.audit_entries(acme, action="identity.import")
    assert [e.data["issued"] for e in imports] == [7, 7, 6]


def test_a_write_keeps_the_memoized_decisions_it_does_not_involve(two: Any) -> None:
    from aztp_agents.decisions import DecisionKey

    # DecisionState.forget reads memo keys by position: the layout it assumes
    assert DecisionKey._fields[1:4] == ("flow_id", "agent", "tool")
    _store, here, there, acme, _ = two
    agent, tool, flow = _crew(there, acme)
    other, other_tool, _ = (
        there.identities.secure_connect(acme, n, make_key=False)["identity"]["aztpId"]
        for n in ("other", "other-tool", "spare")
    )
    for who in (other, other_tool):
        there.flows.add_identity_to_flow(acme, flow, who)
    there.links.link_identities(acme, other, other_tool, "uses_tool")
    assert here.decide(acme, flow_id=flow, agent=agent, tool=tool).allowed
    assert here.decide(acme, flow_id=flow, agent=other, tool=other_tool).allowed
    held = here.decisions.state(acme.org_id)
    keys = set(held.memo)
    assert len(keys) == 2

    there.identities.revoke_identity(acme, other)  # involves one of the two decisions

    assert here.decide(acme, flow_id=flow, agent=other, tool=other_tool).reason is (
        Reason.AGENT_REVOKED
    )
    kept = {k for k in keys if k[2] == agent}
    assert kept and kept <= set(held.memo)  # the uninvolved decision stayed memoized
    assert here.decide(acme, flow_id=flow, agent=agent, tool=tool).allowed


def test_a_decision_in_one_organization_never_serves_another_a_stale_memo(two: Any) -> None:
    """The cursor confirmed by organization B's decision says nothing about A's state: A's
    next decision, even on the no-I/O path, must catch A up first."""
    _store, here, there, acme, globex = two
    a_agent, a_tool, a_flow = _crew(there, acme)
    b_agent, b_tool, b_flow = _crew(there, globex)
    acme_point, globex_point = here.decision_point(acme), here.decision_point(globex)

    def decide(point: Any, flow: str, agent: str, tool: str) -> Any:
        made = point.decide_now(flow, agent, tool, None, True)
        return made if made is not None else point.decide(flow_id=flow, agent=agent, tool=tool)

    for _ in range(2):  # memoized on both
        assert decide(acme_point, a_flow, a_agent, a_tool).allowed
        assert decide(globex_point, b_flow, b_agent, b_tool).allowed

    there.identities.revoke_identity(acme, a_agent)
    assert decide(globex_point, b_flow, b_agent, b_tool).allowed  # confirms the cursor
    made = acme_point.decide_now(a_flow, a_agent, a_tool, None, True)
    assert made is None or made.reason is Reason.AGENT_REVOKED
    assert decide(acme_point, a_flow, a_agent, a_tool).reason is Reason.AGENT_REVOKED
