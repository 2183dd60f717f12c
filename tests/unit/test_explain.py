"""The pure explanation of a tool-call decision: every check in order, the reason the rules
give, and the statement and policy that decided (issue 16.3)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aztp_agents.decisions import DecisionState, Reason, decide_tool_call
from aztp_agents.decisions.explain import (
    AttachedPolicy,
    CheckStatus,
    explain_tool_call,
)
from aztp_agents.policy import Statement, parse_document

A = "aztp://t.org/workload/production/node/agent"
T = "aztp://t.org/workload/production/node/tool/search"
F = "f" * 24
G = "e" * 24


def _state(**kw: object) -> DecisionState:
    base: dict[str, object] = {
        "organization": "org",
        "revision": 7,
        "identities": {A: "active", T: "active"},
        "members": {F: {A, T}, G: set()},
        "links": {(A, T)},
        "flows": {F: "prod", G: "other"},
        "public_flows": {F, G},
    }
    base.update(kw)
    return DecisionState(**base)  # type: ignore[arg-type]


def _statements(doc: dict[str, object]) -> tuple[Statement, ...]:
    return parse_document(doc).statement


def test_every_check_passes_in_order_when_allowed() -> None:
    e = explain_tool_call(_state(), flow_id=F, agent=A, tool=T, tool_name="search")
    assert e.allowed and e.reason is Reason.ALLOWED
    assert [c.name for c in e.checks] == [
        "flow.known",
        "agent.known",
        "agent.active",
        "agent.member",
        "agent.not_revoked_in_flow",
        "tool.known",
        "tool.active",
        "tool.member",
        "tool.not_revoked_in_flow",
        "link",
        "policy",
    ]
    assert all(c.status is CheckStatus.PASS for c in e.checks)
    assert e.link_scope == "organization"
    assert e.actions == ("tool:invoke", "tool:search")
    assert "link alone decides" in e.checks[-1].message
    assert e.to_dict()["checks"][0] == {
        "check": "flow.known",
        "status": "pass",
        "reason": "flow_unknown",
        "message": "the flow prod exists",
        "fix": None,
    }


def test_every_failure_is_listed_and_the_first_is_the_reason() -> None:
    snap = _state(members={F: {T}}, flow_revoked={F: {T}}, links=set())
    e = explain_tool_call(snap, flow_id=F, agent=A, tool=T)
    assert not e.allowed and e.reason is Reason.AGENT_NOT_IN_FLOW
    failed = {c.name: c for c in e.failures}
    assert list(failed) == ["agent.member", "tool.not_revoked_in_flow", "link"]
    assert failed["agent.member"].fix == f"aztp-agents flow add prod {A}"
    assert failed["tool.not_revoked_in_flow"].fix == f"aztp-agents flow reinstate prod {T}"
    assert failed["link"].fix == f"aztp-agents link {A} {T}"
    assert e.detail == "the agent is not a member of the flow"


def test_unknown_identity_skips_the_checks_it_cannot_answer() -> None:
    e = explain_tool_call(_state(identities={T: "active"}), flow_id=F, agent=A, tool=T)
    assert e.reason is Reason.AGENT_UNKNOWN
    statuses = {c.name: c.status for c in e.checks}
    assert statuses["agent.known"] is CheckStatus.FAIL
    assert statuses["agent.active"] is CheckStatus.SKIP
    assert statuses["agent.member"] is CheckStatus.SKIP
    assert statuses["tool.member"] is CheckStatus.PASS


def test_a_flow_the_user_may_not_see_is_unknown_and_says_nothing_of_it() -> None:
    snap = _state(
        flows={F: "secret-crew"},
        public_flows=set(),
        flow_owners={F: "owner"},
        links=set(),
        flow_links={F: {(A, T)}},
    )
    hidden = explain_tool_call(snap, flow_id=F, agent=A, tool=T, user_id="someone-else")
    assert hidden.reason is Reason.FLOW_UNKNOWN and hidden.flow_name is None
    assert hidden.link_scope is None  # its grants are not shown either
    assert "secret-crew" not in str(hidden.to_dict())
    seen = explain_tool_call(snap, flow_id=F, agent=A, tool=T, user_id="owner")
    assert seen.allowed and seen.flow_name == "secret-crew" and seen.link_scope == "flow"


def test_a_flow_scoped_grant_holds_in_its_flow_only() -> None:
    snap = _state(links=set(), flow_links={G: {(A, T)}}, members={F: {A, T}, G: {A, T}})
    there = explain_tool_call(snap, flow_id=G, agent=A, tool=T)
    assert there.allowed and there.link_scope == "flow"
    here = explain_tool_call(snap, flow_id=F, agent=A, tool=T)
    assert here.reason is Reason.NO_LINK
    assert "a grant of flow(s) other holds there only" in here.detail


def test_a_link_an_operator_removed_is_restored_not_relinked() -> None:
    e = explain_tool_call(_state(links=set()), flow_id=F, agent=A, tool=T, link_removed=True)
    link = next(c for c in e.checks if c.name == "link")
    assert "an operator removed it" in link.message
    assert link.fix == f"aztp-agents restore-link {A} {T}"


def test_the_denying_statement_and_its_policy_are_named() -> None:
    allow = _statements({"Statement": [{"Effect": "Allow", "Action": "tool:*"}]})
    deny = _statements(
        {
            "Statement": [
                {"Effect": "Allow", "Action": "tool:read"},
                {"Sid": "NoShell", "Effect": "Deny", "Action": ["tool:shell"], "Resource": "*"},
            ]
        }
    )
    snap = _state(policies={A: allow + deny})
    attached = [
        AttachedPolicy("policy:aaa", "rest", A, allow),
        AttachedPolicy("policy:bbb", "no-shell", A, deny),
    ]
    e = explain_tool_call(snap, flow_id=F, agent=A, tool=T, tool_name="shell", attached=attached)
    assert e.reason is Reason.POLICY_DENIED
    assert e.policy_codes == ("policy:aaa", "policy:bbb")
    (ref,) = e.statements
    assert (ref.policy_code, ref.index, ref.statement.sid) == ("policy:bbb", 1, "NoShell")
    policy = e.checks[-1]
    assert policy.message == (
        'denied by policy:bbb (no-shell) statement "NoShell" (#1): Deny tool:shell on *'
    )
    assert policy.fix == f"aztp-agents policy detach {A} policy:bbb"
    assert e.to_dict()["statements"][0]["effect"] == "Deny"

    # Without the attachments the statement is still named, by the identity holding it.
    bare = explain_tool_call(snap, flow_id=F, agent=A, tool=T, tool_name="shell")
    assert bare.checks[-1].message.startswith(
        f'denied by a policy attached to {A} statement "NoShell" (#2)'
    )

    # An allowed call says which statement allowed it.
    ok = explain_tool_call(snap, flow_id=F, agent=A, tool=T, tool_name="search", attached=attached)
    assert ok.allowed
    assert ok.checks[-1].message == "allowed by policy:aaa (rest) statement #0: Allow tool:* on *"


def test_an_allow_list_that_does_not_match_says_so() -> None:
    allow = _statements({"Statement": [{"Effect": "Allow", "Action": "tool:read"}]})
    snap = _state(policies={T: allow})
    attached = [AttachedPolicy("policy:ccc", "read-only", T, allow)]
    e = explain_tool_call(snap, flow_id=F, agent=A, tool=T, tool_name="search", attached=attached)
    assert e.reason is Reason.POLICY_DENIED and e.statements == ()
    assert e.detail.startswith("no attached policy allows tool:search (attached: policy:ccc)")


def test_a_condition_is_asked_with_the_calls_context() -> None:
    conditional = _statements(
        {
            "Statement": [
                {
                    "Sid": "ProdOnly",
                    "Effect": "Allow",
                    "Action": "tool:*",
                    "Condition": {"StringEquals": {"env": "prod"}},
                }
            ]
        }
    )
    snap = _state(policies={A: conditional})
    for context, reason in (
        ({"env": "prod"}, Reason.ALLOWED),
        ({"env": "dev"}, Reason.POLICY_DENIED),
    ):
        e = explain_tool_call(snap, flow_id=F, agent=A, tool=T, tool_name="x", context=context)
        decided, _, _ = decide_tool_call(
            snap, flow_id=F, agent=A, tool=T, tool_name="x", context=context
        )
        assert e.reason is reason is decided
    allowed = explain_tool_call(snap, flow_id=F, agent=A, tool=T, context={"env": "prod"})
    assert allowed.checks[-1].message.endswith("if StringEquals env='prod'")


# --- the explanation agrees with the decision, over many states -------------------------

IDS = [A, T, "aztp://t.org/workload/production/node/other"]
_STATEMENTS = [
    {"Effect": "Allow", "Action": "tool:*"},
    {"Effect": "Allow", "Action": "tool:search"},
    {"Effect": "Deny", "Action": "tool:search"},
    {"Effect": "Audit", "Action": "tool:invoke"},
    {"Effect": "Deny", "Action": "tool:*", "Resource": T},
    {"Effect": "Allow", "Action": "tool:*", "Condition": {"StringEquals": {"env": "prod"}}},
]

ident = st.sampled_from(IDS)
flow = st.sampled_from([F, F, G, "d" * 24])


def _often(value: bool = True) -> st.SearchStrategy[bool]:
    """``value`` three times in four: most generated calls get far (to the link, the policy),
    so allowed and Audit-marked calls are common, not rare."""
    return st.sampled_from([value, value, value, not value])


@st.composite
def states(draw: st.DrawFn) -> DecisionState:
    flows = {F: "prod", G: "other"}
    identities = {}
    for i in IDS:
        status = draw(st.sampled_from(["active", "active", "active", "revoked", None]))
        if status is not None:
            identities[i] = status
    members = {f: {i for i in IDS if draw(_often())} for f in flows}
    revoked = {f: {i for i in IDS if draw(_often(False)) and draw(st.booleans())} for f in flows}
    links: set[tuple[str, str]] = set()
    flow_links: dict[str, set[tuple[str, str]]] = {f: set() for f in flows}
    for pair in [(a, b) for a in IDS for b in IDS]:
        scope = draw(st.sampled_from(["org", "flow", "none"]))
        if scope == "org":
            links.add(pair)
        elif scope == "flow":
            flow_links[draw(st.sampled_from(list(flows)))].add(pair)
    policies = {}
    for i in IDS:
        chosen = draw(st.lists(st.sampled_from(_STATEMENTS), max_size=3))
        if chosen and draw(st.booleans()):
            policies[i] = _statements({"Statement": chosen})
    return DecisionState(
        organization="org",
        revision=1,
        identities=identities,
        members=members,
        flow_revoked=revoked,
        links=links,
        flow_links=flow_links,
        policies=policies,
        flows=flows,
        public_flows=set(flows),
    )


@settings(max_examples=400, deadline=None)
@given(
    snap=states(),
    flow_id=flow,
    agent=ident,
    tool=ident,
    tool_name=st.sampled_from([None, "search", "read"]),
    context=st.sampled_from([None, {"env": "prod"}, {"env": "dev"}]),
)
def test_the_explanation_agrees_with_the_decision(
    snap: DecisionState,
    flow_id: str,
    agent: str,
    tool: str,
    tool_name: str | None,
    context: dict[str, str] | None,
) -> None:
    reason, audit, _ = decide_tool_call(
        snap, flow_id=flow_id, agent=agent, tool=tool, tool_name=tool_name, context=context
    )
    e = explain_tool_call(
        snap, flow_id=flow_id, agent=agent, tool=tool, tool_name=tool_name, context=context
    )
    assert e.reason is reason
    assert e.allowed is (reason is Reason.ALLOWED)
    assert e.audit is audit
    # The reason is the first failed check, and a denial has at least one.
    assert (e.failures[0].reason if e.failures else Reason.ALLOWED) is reason
