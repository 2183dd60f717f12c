"""Decision values: :class:`Reason`, :class:`Decision` and :class:`Verdict` (pure).

Also the tables that turn a reason into the code an answer shows: a verification speaks of
one *identity*, a connection check of a *source* and a *target*, where the tool-call rules
(which both reuse) speak of an agent and a tool.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = [
    "CONNECTION_CODES",
    "IDENTITY_CODES",
    "Decision",
    "Reason",
    "Verdict",
    "denial",
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


@dataclass(frozen=True, slots=True)
class Verdict:
    valid: bool
    reason: Reason


def _codes(**renamed: str) -> Mapping[Reason, str]:
    """Every reason's code, with the agent/tool checks renamed as given (prefix -> prefix)."""
    table: dict[Reason, str] = {}
    for reason in Reason:
        code = reason.value
        for old, new in renamed.items():
            if code.startswith(old + "_"):
                code = new + code[len(old) :]
        table[reason] = code
    return table


#: Reason codes of a verification of one identity (``identity_revoked``, ...).
IDENTITY_CODES: Mapping[Reason, str] = _codes(agent="identity")
#: Reason codes of a connection check (``source_unknown``, ``target_revoked``, ...).
CONNECTION_CODES: Mapping[Reason, str] = _codes(agent="source", tool="target")


def denial(
    *,
    agent: str | None,
    tool: str | None,
    tool_name: str | None,
    flow: str | None,
    enforced: bool,
    detail: str,
    latency_us: float = 0.0,
    reason: Reason = Reason.AUTHORITY_UNAVAILABLE,
) -> Decision:
    """A denial an enforcement point takes itself (fail closed: ``authority_unavailable``
    unless told otherwise), on no state revision (``-1``)."""
    return Decision(
        allowed=False,
        reason=reason,
        agent=agent,
        tool=tool,
        flow=flow,
        revision=-1,
        latency_us=latency_us,
        tool_name=tool_name,
        enforced=enforced,
        detail=detail,
    )
