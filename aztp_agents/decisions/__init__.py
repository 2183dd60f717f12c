"""Tool-call decisions: the values, the state, the pure rules and the one fast path.

* :mod:`.decision` — :class:`Decision`, :class:`Reason`, :class:`Verdict`, reason-code tables
* :mod:`.state` — :class:`DecisionState` (formerly ``Snapshot``): one organization at one revision
* :mod:`.rules` — the checks, pure: tool call, verification, connection
* :mod:`.fastpath` — the one owner of the fast path: the key, the memo, the audit layout,
  the embedded decision cache and decision point

Checks run in a fixed order and the first failure is the reason:
``agent_unknown``, ``agent_revoked``, ``agent_not_in_flow``, ``agent_revoked_in_flow``,
the same four for the tool, ``no_link``, ``policy_denied``; otherwise ``allowed``.
``authority_unavailable`` is produced by enforcement points when the state cannot be had.
"""

from __future__ import annotations

from .decision import CONNECTION_CODES, IDENTITY_CODES, Decision, Reason, Verdict, denial
from .fastpath import (
    DECISION_ACTION,
    DECISION_LAYOUT,
    DecisionKey,
    LocalDecisions,
    PrincipalDecisions,
    decide_on,
)
from .rules import authorize_connection, decide_tool_call, tool_actions, verify_in_snapshot
from .state import DecisionState, Snapshot

__all__ = [
    "CONNECTION_CODES",
    "DECISION_ACTION",
    "DECISION_LAYOUT",
    "IDENTITY_CODES",
    "Decision",
    "DecisionKey",
    "DecisionState",
    "LocalDecisions",
    "PrincipalDecisions",
    "Reason",
    "Snapshot",
    "Verdict",
    "authorize_connection",
    "decide_on",
    "decide_tool_call",
    "denial",
    "tool_actions",
    "verify_in_snapshot",
]
