"""The decision rules, as pure functions over a :class:`~.state.DecisionState`.

Nothing here does I/O and nothing here is memoized: :mod:`.fastpath` keeps the decisions
already made on a state. One evaluation path serves the tool-call decision, verification and
connection checks.

Checks run in a fixed order and the first failure is the reason:
``agent_unknown``, ``agent_revoked``, ``agent_not_in_flow``, ``agent_revoked_in_flow``,
the same four for the tool, ``no_link``, ``policy_denied``; otherwise ``allowed``.
The policy check is :func:`aztp_agents.policy.authorize` over the policies attached to the
agent and to the tool (the same rule ``check_identity_policy_permissions`` answers with):
nothing attached leaves the link's allow; with policies attached the call needs a matching
Allow, and a matching Deny wins.
``authority_unavailable`` is produced by enforcement points when the state cannot be had.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..policy import Outcome, Statement, authorize, evaluate, requested_actions
from .decision import Reason, Verdict
from .state import DecisionState

__all__ = [
    "authorize_connection",
    "decide_tool_call",
    "enrolled",
    "tool_actions",
    "verify_in_snapshot",
]


_AGENT = (
    Reason.AGENT_UNKNOWN,
    Reason.AGENT_REVOKED,
    Reason.AGENT_NOT_IN_FLOW,
    Reason.AGENT_REVOKED_IN_FLOW,
)
_TOOL = (
    Reason.TOOL_UNKNOWN,
    Reason.TOOL_REVOKED,
    Reason.TOOL_NOT_IN_FLOW,
    Reason.TOOL_REVOKED_IN_FLOW,
)


def _check_member(
    snap: DecisionState, aztp_id: str, flow_id: str | None, reasons: tuple[Reason, ...]
) -> Reason | None:
    status = snap.identities.get(aztp_id)
    if status is None:
        return reasons[0]
    if status != "active":
        return reasons[1]
    if flow_id is None:
        return None
    if aztp_id in snap.flow_revoked.get(flow_id, ()):
        # Revoked in the flow: reported as such whether or not it is still a member.
        members = snap.members.get(flow_id, ())
        return reasons[3] if aztp_id in members else reasons[2]
    if aztp_id not in snap.members.get(flow_id, ()):
        return reasons[2]
    return None


def verify_in_snapshot(snap: DecisionState, aztp_id: str, flow_id: str | None = None) -> Verdict:
    """Global (``flow_id=None``) or flow-scoped validity of one identity."""
    if flow_id is not None and flow_id not in snap.flows:
        return Verdict(False, Reason.FLOW_UNKNOWN)
    failure = _check_member(snap, aztp_id, flow_id, _AGENT)
    return Verdict(failure is None, failure or Reason.ALLOWED)


def tool_actions(tool_name: str | None) -> tuple[str, ...]:
    """The actions a tool call asks for: ``tool:invoke`` and ``tool:{tool_name}`` (what
    :func:`~aztp_agents.policy.requested_actions` says asking about ``tool:{tool_name}`` asks)."""
    return requested_actions(f"tool:{tool_name}") if tool_name else ("tool:invoke",)


#: Why ``policy_denied``: the :attr:`~.decision.Decision.detail` a denial carries.
_DENY_MATCHED = "a Deny statement matches"


def _deny_detail(snap: DecisionState, subjects: Iterable[str], st: Statement) -> str:
    """``a Deny statement matches: "NoShell" Deny tool:shell (attached to aztp://...)``. Made
    once per state and call (decisions are memoized), so naming the statement costs nothing
    per call. The state holds no policy codes: ``aztp-agents explain`` names the policy."""
    holder = next((s for s in subjects if st in snap.policies.get(s, ())), None)
    sid = f' "{st.sid}"' if st.sid else ""
    where = f" (attached to {holder})" if holder else ""
    return f"{_DENY_MATCHED}:{sid} Deny {', '.join(st.action)}{where}"


def _no_link_detail(snap: DecisionState, flow_id: str, pair: tuple[str, str]) -> str | None:
    """Say so when the link is a grant of another flow (grants hold in their flow only): the
    usual surprise. The other flow is not named (the caller may not see it). Made once per
    state and call, like every decision."""
    for other, pairs in snap.flow_links.items():
        if other != flow_id and pair in pairs:
            return "a grant declared for another flow holds there only"
    return None


def _policy_reason(
    snap: DecisionState,
    subjects: Iterable[str],
    actions: tuple[str, ...],
    resource: str,
    context: Mapping[str, Any] | None,
) -> tuple[Reason | None, bool, str | None]:
    """Every policy attached to any subject counts: a Deny wins, and with any attached the
    call needs a matching Allow; with none attached the link alone decides."""
    subjects = tuple(subjects)
    statements: list[Statement] = []
    for subject in subjects:
        statements.extend(snap.policies.get(subject, ()))
    result = authorize(statements, actions, resource, context)
    if result.permitted:
        return None, result.audit, None
    if result.outcome is Outcome.DENY:
        return Reason.POLICY_DENIED, False, _deny_detail(snap, subjects, result.matched[0])
    return Reason.POLICY_DENIED, False, f"no attached policy allows {actions[-1]}"


def decide_tool_call(
    snap: DecisionState,
    *,
    flow_id: str,
    agent: str,
    tool: str,
    tool_name: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> tuple[Reason, bool, str | None]:
    """Return ``(reason, audit_marked, detail)`` for one tool call: the same state and
    arguments give the same result (and the context matters only when ``snap.conditional``).
    ``detail`` says why a policy denied (``None`` otherwise)."""
    return _decide(snap, flow_id, agent, tool, tool_name, context if snap.conditional else None)


def _decide(
    snap: DecisionState,
    flow_id: str,
    agent: str,
    tool: str,
    tool_name: str | None,
    context: Mapping[str, Any] | None,
) -> tuple[Reason, bool, str | None]:
    if flow_id not in snap.flows:
        return Reason.FLOW_UNKNOWN, False, None
    failure = _check_member(snap, agent, flow_id, _AGENT) or _check_member(
        snap, tool, flow_id, _TOOL
    )
    if failure is not None:
        return failure, False, None
    # An organization-wide link, or one declared for this flow; a grant of another flow is none.
    if (agent, tool) not in snap.links and (agent, tool) not in snap.flow_links.get(flow_id, ()):
        return Reason.NO_LINK, False, _no_link_detail(snap, flow_id, (agent, tool))
    denied, audit, detail = _policy_reason(
        snap, (agent, tool), tool_actions(tool_name), tool, context
    )
    if denied is not None:
        return denied, False, detail
    return Reason.ALLOWED, audit, None


def enrolled(
    snap: DecisionState, user_id: str | None, flow_id: str, agent: str, tools: Iterable[str]
) -> bool:
    """Would enrolling ``agent`` and ``tools`` in the flow change nothing? The flow is one the
    user sees (``user_id`` None: a state that holds only such flows, as a remote replica),
    every identity is active and a member of it, and the agent may call every tool there (a
    grant of that flow, or an organization-wide one)."""
    if flow_id not in snap.flows:
        return False
    if user_id is not None and not snap.flow_visible(flow_id, user_id):
        return False
    tools = tuple(tools)
    members = snap.members.get(flow_id, ())
    for aztp_id in (agent, *tools):
        if snap.identities.get(aztp_id) != "active" or aztp_id not in members:
            return False
    scoped = snap.flow_links.get(flow_id, ())
    return all((agent, tool) in scoped or (agent, tool) in snap.links for tool in tools)


def authorize_connection(
    snap: DecisionState,
    source: str,
    target: str,
    *,
    policy: tuple[Statement, ...] | None = None,
    context: Mapping[str, Any] | None = None,
) -> Verdict:
    """Both identities valid, an organization-wide link allows source -> target (a grant
    scoped to a flow holds in that flow's tool calls only), and the policy (if any) allows
    action ``connect`` on ``target`` (with a policy, nothing matching is a deny)."""
    failure = _check_member(snap, source, None, _AGENT) or _check_member(snap, target, None, _TOOL)
    if failure is not None:
        return Verdict(False, failure)
    if (source, target) not in snap.links:
        return Verdict(False, Reason.NO_LINK)
    if policy is not None and not evaluate(policy, "connect", target, context).allowed:
        return Verdict(False, Reason.POLICY_DENIED)
    return Verdict(True, Reason.ALLOWED)
