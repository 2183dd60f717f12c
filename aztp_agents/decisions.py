"""The tool-call decision, as a pure function over an in-memory state snapshot.

Nothing here does I/O. The authority keeps a :class:`Snapshot` per organization current
(tagged with the store's revision) and asks :func:`decide_tool_call` for each tool call.

Checks run in a fixed order and the first failure is the reason:
``agent_unknown``, ``agent_revoked``, ``agent_not_in_flow``, ``agent_revoked_in_flow``,
the same four for the tool, ``no_link``, ``policy_denied``; otherwise ``allowed``.
``authority_unavailable`` is produced by enforcement points when the state cannot be had.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from .policy import Outcome, Statement, evaluate

__all__ = [
    "Decision",
    "Reason",
    "Snapshot",
    "Verdict",
    "authorize_connection",
    "decide_tool_call",
    "tool_actions",
    "verify_in_snapshot",
]


class Reason(str, enum.Enum):
    ALLOWED = "allowed"
    AGENT_UNKNOWN = "agent_unknown"
    AGENT_REVOKED = "agent_revoked"
    AGENT_NOT_IN_FLOW = "agent_not_in_flow"
    AGENT_REVOKED_IN_FLOW = "agent_revoked_in_flow"
    TOOL_UNKNOWN = "tool_unknown"
    TOOL_REVOKED = "tool_revoked"
    TOOL_NOT_IN_FLOW = "tool_not_in_flow"
    TOOL_REVOKED_IN_FLOW = "tool_revoked_in_flow"
    NO_LINK = "no_link"
    POLICY_DENIED = "policy_denied"
    FLOW_UNKNOWN = "flow_unknown"
    AUTHORITY_UNAVAILABLE = "authority_unavailable"

    def __str__(self) -> str:
        return self.value


_EXPLAIN = {
    Reason.ALLOWED: "allowed",
    Reason.AGENT_UNKNOWN: "the agent has no identity known to the authority",
    Reason.AGENT_REVOKED: "the agent's identity is revoked",
    Reason.AGENT_NOT_IN_FLOW: "the agent's identity is not a member of the flow",
    Reason.AGENT_REVOKED_IN_FLOW: "the agent's identity is revoked in this flow",
    Reason.TOOL_UNKNOWN: "the tool has no identity known to the authority",
    Reason.TOOL_REVOKED: "the tool's identity is revoked",
    Reason.TOOL_NOT_IN_FLOW: "the tool's identity is not a member of the flow",
    Reason.TOOL_REVOKED_IN_FLOW: "the tool's identity is revoked in this flow",
    Reason.NO_LINK: "no link authorizes the agent to use this tool",
    Reason.POLICY_DENIED: "a policy denies this action",
    Reason.FLOW_UNKNOWN: "the flow does not exist",
    Reason.AUTHORITY_UNAVAILABLE: "the identity authority could not be consulted (fail closed)",
}


class Decision(NamedTuple):
    """One tool-call decision (an immutable value). ``allowed`` is the verdict; ``enforced`` is
    False in observe mode. A NamedTuple because one is made per tool call: it is the cheapest
    immutable record Python has."""

    allowed: bool
    reason: Reason
    agent: str | None
    tool: str | None
    flow: str | None
    revision: int
    latency_us: float = 0.0
    tool_name: str | None = None
    audit: bool = False
    enforced: bool = True
    organization: str | None = None
    detail: str | None = None

    @property
    def blocks(self) -> bool:
        """Whether the tool call must not run (denied and enforced)."""
        return not self.allowed and self.enforced

    @property
    def explanation(self) -> str:
        text = _EXPLAIN.get(self.reason, str(self.reason))
        return f"{text} ({self.detail})" if self.detail else text

    def describe(self) -> str:
        verdict = "ALLOWED" if self.allowed else "DENIED"
        return (
            f"AZTP {verdict} [{self.reason.value}] tool={self.tool_name or self.tool} "
            f"agent={self.agent} flow={self.flow}: {self.explanation}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "reason": self.reason.value,
            "agent": self.agent,
            "tool": self.tool,
            "toolName": self.tool_name,
            "flow": self.flow,
            "revision": self.revision,
            "latencyUs": round(self.latency_us, 2),
            "audit": self.audit,
            "enforced": self.enforced,
            "organization": self.organization,
        }


_EMPTY: Mapping[Any, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Decision state of one organization at one store revision.

    * ``identities``: aztp_id -> status (``"active"`` or ``"revoked"``)
    * ``members``: flow_id -> {aztp_id: revoked_in_flow (bool)}
    * ``flow_revoked``: flow_id -> set of aztp_ids revoked in that flow, kept even when the
      identity left the flow (a flow revocation survives remove + re-add)
    * ``links``: set of (source, target) pairs that authorize source -> target
      (symmetric relationships are stored in both directions)
    * ``policies``: aztp_id -> statements of every policy attached to it
    * ``trust_domains``: trust domains the organization owns
    """

    organization: str
    revision: int
    identities: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    members: Mapping[str, frozenset[str]] = field(default_factory=lambda: _EMPTY)
    flow_revoked: Mapping[str, frozenset[str]] = field(default_factory=lambda: _EMPTY)
    links: frozenset[tuple[str, str]] = frozenset()
    policies: Mapping[str, tuple[Statement, ...]] = field(default_factory=lambda: _EMPTY)
    flows: Mapping[str, str] = field(default_factory=lambda: _EMPTY)  # flow_id -> name
    #: flow_id -> owner user id, and the flows every user of the organization may see
    flow_owners: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    public_flows: frozenset[str] = frozenset()
    #: Tool-call results already worked out on this (immutable) state; see decide_tool_call.
    memo: dict[tuple[str, str, str, str | None], tuple[Reason, bool]] = field(
        default_factory=dict, compare=False, repr=False
    )
    #: Whole decisions already made on this state, for enforcement points (see
    #: ``Authority.decide``); keyed by caller and call.
    decisions: dict[tuple[Any, ...], Any] = field(default_factory=dict, compare=False, repr=False)
    #: Whether any attached policy statement has a Condition (results then depend on the
    #: call's context and are not memoized). Worked out once, at construction.
    conditional: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "conditional", any(st.condition for sts in self.policies.values() for st in sts))

    def flow_visible(self, flow_id: str, user_id: str) -> bool:
        """Public flows are visible to every user of the organization; private ones only to
        their owner."""
        return flow_id in self.public_flows or self.flow_owners.get(flow_id) == user_id


@dataclass(frozen=True, slots=True)
class Verdict:
    valid: bool
    reason: Reason


_AGENT = (Reason.AGENT_UNKNOWN, Reason.AGENT_REVOKED, Reason.AGENT_NOT_IN_FLOW, Reason.AGENT_REVOKED_IN_FLOW)
_TOOL = (Reason.TOOL_UNKNOWN, Reason.TOOL_REVOKED, Reason.TOOL_NOT_IN_FLOW, Reason.TOOL_REVOKED_IN_FLOW)


def _check_member(snap: Snapshot, aztp_id: str, flow_id: str | None, reasons: tuple[Reason, ...]) -> Reason | None:
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


def verify_in_snapshot(snap: Snapshot, aztp_id: str, flow_id: str | None = None) -> Verdict:
    """Global (``flow_id=None``) or flow-scoped validity of one identity."""
    if flow_id is not None and flow_id not in snap.flows:
        return Verdict(False, Reason.FLOW_UNKNOWN)
    failure = _check_member(snap, aztp_id, flow_id, _AGENT)
    return Verdict(failure is None, failure or Reason.ALLOWED)


def tool_actions(tool_name: str | None) -> tuple[str, ...]:
    """The actions a tool call asks for: ``tool:invoke`` and ``tool:{tool_name}``."""
    return ("tool:invoke", f"tool:{tool_name}") if tool_name else ("tool:invoke",)


def _policy_reason(
    snap: Snapshot, subjects: Iterable[str], actions: tuple[str, ...], resource: str, context: Mapping[str, Any] | None
) -> tuple[Reason | None, bool]:
    """Deny wins over everything attached to any subject; no match leaves the link's allow."""
    statements: list[Statement] = []
    for subject in subjects:
        statements.extend(snap.policies.get(subject, ()))
    if not statements:
        return None, False
    result = evaluate(statements, actions, resource, context)
    if result.outcome is Outcome.DENY:
        return Reason.POLICY_DENIED, False
    return None, result.audit


def decide_tool_call(
    snap: Snapshot,
    *,
    flow_id: str,
    agent: str,
    tool: str,
    tool_name: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> tuple[Reason, bool]:
    """Return ``(reason, audit_marked)`` for one tool call.

    Pure in its answer: the same snapshot and arguments give the same result, so results are
    memoized on the snapshot (a new revision is a new snapshot with an empty memo) unless a
    policy condition makes them depend on ``context``.
    """
    if context and snap.conditional:
        return _decide(snap, flow_id, agent, tool, tool_name, context)
    key = (flow_id, agent, tool, tool_name)
    hit = snap.memo.get(key)
    if hit is None:
        if len(snap.memo) > 100_000:
            snap.memo.clear()
        hit = snap.memo[key] = _decide(snap, flow_id, agent, tool, tool_name, None)
    return hit


def _decide(
    snap: Snapshot, flow_id: str, agent: str, tool: str, tool_name: str | None, context: Mapping[str, Any] | None
) -> tuple[Reason, bool]:
    if flow_id not in snap.flows:
        return Reason.FLOW_UNKNOWN, False
    failure = _check_member(snap, agent, flow_id, _AGENT) or _check_member(snap, tool, flow_id, _TOOL)
    if failure is not None:
        return failure, False
    if (agent, tool) not in snap.links:
        return Reason.NO_LINK, False
    denied, audit = _policy_reason(snap, (agent, tool), tool_actions(tool_name), tool, context)
    if denied is not None:
        return denied, False
    return Reason.ALLOWED, audit


def authorize_connection(
    snap: Snapshot,
    source: str,
    target: str,
    *,
    policy: tuple[Statement, ...] | None = None,
    context: Mapping[str, Any] | None = None,
) -> Verdict:
    """Both identities valid, a link allows source -> target, and the policy (if any) allows
    action ``connect`` on ``target`` (with a policy, nothing matching is a deny)."""
    failure = _check_member(snap, source, None, _AGENT) or _check_member(snap, target, None, _TOOL)
    if failure is not None:
        return Verdict(False, failure)
    if (source, target) not in snap.links:
        return Verdict(False, Reason.NO_LINK)
    if policy is not None and not evaluate(policy, "connect", target, context).allowed:
        return Verdict(False, Reason.POLICY_DENIED)
    return Verdict(True, Reason.ALLOWED)
