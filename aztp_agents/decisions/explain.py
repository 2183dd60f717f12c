"""Why a tool call is (or would be) allowed or denied: every check, in order (pure).

:func:`explain_tool_call` walks the checks of :func:`.rules.decide_tool_call` over the same
:class:`~.state.DecisionState` and reports each one as passed, failed or skipped (a check
that cannot be asked: is an unknown identity active?), with what to do about a failure. The
first failure is the reason, so the explanation and the decision always agree (a test holds
them to it over many states). Unlike the decision it does not stop at the first failure: an
operator fixing a denial sees every problem at once.

The decision state holds policy *statements* without the policy they came from; the caller
(the authority) may pass the attached policies (:class:`AttachedPolicy`) so that a denying
statement is named by its policy code and index. Nothing here does I/O.
"""

from __future__ import annotations

import enum
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..policy import Evaluation, Outcome, Statement, authorize
from .decision import Reason
from .rules import tool_actions
from .state import DecisionState

__all__ = [
    "AttachedPolicy",
    "Check",
    "CheckStatus",
    "Explanation",
    "StatementRef",
    "explain_tool_call",
]


class CheckStatus(str, enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    #: The check could not be asked (an unknown identity has no status, an unknown flow no
    #: members); an earlier failure already says why.
    SKIP = "skip"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Check:
    """One check of the decision: ``name`` is stable (``agent.member``), ``reason`` the
    reason a failure of it gives, ``fix`` a command that would make it pass."""

    name: str
    status: CheckStatus
    reason: Reason
    message: str
    fix: str | None = None

    @property
    def failed(self) -> bool:
        return self.status is CheckStatus.FAIL

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "status": self.status.value,
            "reason": self.reason.value,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass(frozen=True, slots=True)
class AttachedPolicy:
    """A policy attached to ``subject`` (an AZTP ID), with its statements in document order."""

    code: str
    name: str | None
    subject: str
    statements: tuple[Statement, ...]


@dataclass(frozen=True, slots=True)
class StatementRef:
    """One statement that decided the policy check, and where it comes from (``policy_code``
    is None when the caller did not say which policies are attached)."""

    subject: str
    index: int
    statement: Statement
    policy_code: str | None = None
    policy_name: str | None = None

    def label(self) -> str:
        """``policy:0650537f8614 statement "NoShell" (#0): Deny tool:shell on *``."""
        st = self.statement
        where = self.policy_code or f"a policy attached to {self.subject}"
        if self.policy_code and self.policy_name:
            where += f" ({self.policy_name})"
        which = f'statement "{st.sid}" (#{self.index})' if st.sid else f"statement #{self.index}"
        on = ", ".join(st.resource) if st.resource else "*"
        cond = " if " + _condition_text(st.condition) if st.condition else ""
        return f"{where} {which}: {st.effect.value} {', '.join(st.action)} on {on}{cond}"

    def to_dict(self) -> dict[str, Any]:
        st = self.statement
        return {
            "policyCode": self.policy_code,
            "policyName": self.policy_name,
            "attachedTo": self.subject,
            "index": self.index,
            "sid": st.sid,
            "effect": st.effect.value,
            "actions": list(st.action),
            "resources": list(st.resource),
            "condition": st.condition or None,
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    """The answer to "why was (or would be) this tool call allowed or denied"."""

    allowed: bool
    reason: Reason
    flow_id: str
    flow_name: str | None
    agent: str
    tool: str
    tool_name: str | None
    actions: tuple[str, ...]
    revision: int
    checks: tuple[Check, ...]
    #: ``"organization"``, ``"flow"`` or None (no link).
    link_scope: str | None
    #: The statements that decided the policy check: the Deny that denied, or the Allow/Audit
    #: statements that allowed (none when nothing is attached or nothing matched).
    statements: tuple[StatementRef, ...]
    #: The codes of the policies attached to the agent and the tool (when the caller said).
    policy_codes: tuple[str, ...]
    audit: bool = False

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.failed)

    @property
    def detail(self) -> str:
        """One line: what decided (the first failure's message, or that every check passed)."""
        first = next((c for c in self.checks if c.failed), None)
        return "every check passed" if first is None else first.message

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "reason": self.reason.value,
            "detail": self.detail,
            "flowId": self.flow_id,
            "flowName": self.flow_name,
            "agent": self.agent,
            "tool": self.tool,
            "toolName": self.tool_name,
            "actions": list(self.actions),
            "revision": self.revision,
            "audit": self.audit,
            "linkScope": self.link_scope,
            "policyCodes": list(self.policy_codes),
            "statements": [s.to_dict() for s in self.statements],
            "checks": [c.to_dict() for c in self.checks],
        }


# The checks of one identity: (name suffix, reason) in the order the rules ask them.
_AGENT_CHECKS = (
    ("known", Reason.AGENT_UNKNOWN),
    ("active", Reason.AGENT_REVOKED),
    ("member", Reason.AGENT_NOT_IN_FLOW),
    ("not_revoked_in_flow", Reason.AGENT_REVOKED_IN_FLOW),
)
_TOOL_CHECKS = (
    ("known", Reason.TOOL_UNKNOWN),
    ("active", Reason.TOOL_REVOKED),
    ("member", Reason.TOOL_NOT_IN_FLOW),
    ("not_revoked_in_flow", Reason.TOOL_REVOKED_IN_FLOW),
)

_CLI = "aztp-agents"


def _q(value: str) -> str:
    return shlex.quote(value)


def _identity_checks(
    snap: DecisionState,
    role: str,
    aztp_id: str,
    flow_id: str,
    flow_arg: str | None,
) -> list[Check]:
    """The four checks of the agent or the tool (``role``); ``flow_arg`` is None when the flow
    is unknown (membership cannot be asked)."""
    table = _AGENT_CHECKS if role == "agent" else _TOOL_CHECKS
    (_, unknown), (_, revoked), (_, not_member), (_, revoked_in_flow) = table
    status = snap.identities.get(aztp_id)
    checks: list[Check] = []
    if status is None:
        checks.append(
            Check(
                f"{role}.known",
                CheckStatus.FAIL,
                unknown,
                f"the {role} {aztp_id} has no identity known to the authority",
                f"{_CLI} identity issue NAME (then use its AZTP ID)",
            )
        )
        for suffix, reason in table[1:]:
            checks.append(
                Check(f"{role}.{suffix}", CheckStatus.SKIP, reason, f"the {role} is unknown")
            )
        return checks
    checks.append(Check(f"{role}.known", CheckStatus.PASS, unknown, f"the {role} has an identity"))
    if status == "active":
        checks.append(Check(f"{role}.active", CheckStatus.PASS, revoked, f"the {role} is active"))
    else:
        checks.append(
            Check(
                f"{role}.active",
                CheckStatus.FAIL,
                revoked,
                f"the {role}'s identity is {status} (everywhere)",
                f"{_CLI} identity reissue {_q(aztp_id)}",
            )
        )
    if flow_arg is None:
        for suffix, reason in table[2:]:
            checks.append(
                Check(f"{role}.{suffix}", CheckStatus.SKIP, reason, "the flow is unknown")
            )
        return checks
    if aztp_id in snap.members.get(flow_id, ()):
        checks.append(
            Check(
                f"{role}.member",
                CheckStatus.PASS,
                not_member,
                f"the {role} is a member of the flow",
            )
        )
    else:
        checks.append(
            Check(
                f"{role}.member",
                CheckStatus.FAIL,
                not_member,
                f"the {role} is not a member of the flow",
                f"{_CLI} flow add {_q(flow_arg)} {_q(aztp_id)}",
            )
        )
    if aztp_id in snap.flow_revoked.get(flow_id, ()):
        checks.append(
            Check(
                f"{role}.not_revoked_in_flow",
                CheckStatus.FAIL,
                revoked_in_flow,
                f"the {role} is revoked in this flow (a removal and re-add does not undo it)",
                f"{_CLI} flow reinstate {_q(flow_arg)} {_q(aztp_id)}",
            )
        )
    else:
        checks.append(
            Check(
                f"{role}.not_revoked_in_flow",
                CheckStatus.PASS,
                revoked_in_flow,
                f"the {role} is not revoked in this flow",
            )
        )
    return checks


def _condition_text(condition: Mapping[str, Mapping[str, Any]]) -> str:
    return "; ".join(
        f"{op} {key}={value!r}"
        for op, clauses in condition.items()
        for key, value in clauses.items()
    )


def _refs(
    snap: DecisionState,
    subjects: Sequence[str],
    matched: Sequence[Statement],
    attached: Sequence[AttachedPolicy] | None,
) -> tuple[StatementRef, ...]:
    """Where each matched statement comes from: the first attached policy holding an equal
    statement (its code and index), else its place among the subject's statements."""
    out: list[StatementRef] = []
    for st in matched:
        ref: StatementRef | None = None
        for pol in attached or ():
            for i, candidate in enumerate(pol.statements):
                if candidate == st:
                    ref = StatementRef(pol.subject, i, st, pol.code, pol.name)
                    break
            if ref is not None:
                break
        if ref is None:
            for subject in subjects:
                held = snap.policies.get(subject, ())
                if st in held:
                    ref = StatementRef(subject, held.index(st), st)
                    break
        if ref is not None:
            out.append(ref)
    return tuple(out)


def _policy_check(
    result: Evaluation,
    actions: tuple[str, ...],
    refs: tuple[StatementRef, ...],
    codes: tuple[str, ...],
) -> Check:
    attached = f" (attached: {', '.join(codes)})" if codes else ""
    if result.outcome is Outcome.UNRESTRICTED:
        return Check(
            "policy",
            CheckStatus.PASS,
            Reason.POLICY_DENIED,
            "no policy is attached to the agent or the tool: the link alone decides",
        )
    if result.outcome is Outcome.ALLOW:
        by = "; ".join(r.label() for r in refs) or "an attached statement"
        return Check("policy", CheckStatus.PASS, Reason.POLICY_DENIED, f"allowed by {by}")
    if result.outcome is Outcome.DENY:
        by = refs[0].label() if refs else "a Deny statement"
        fix = (
            f"{_CLI} policy detach {_q(refs[0].subject)} {_q(refs[0].policy_code)}"
            if refs and refs[0].policy_code
            else None
        )
        return Check("policy", CheckStatus.FAIL, Reason.POLICY_DENIED, f"denied by {by}", fix)
    return Check(
        "policy",
        CheckStatus.FAIL,
        Reason.POLICY_DENIED,
        f"no attached policy allows {actions[-1]}{attached}: with policies attached a call "
        "needs a matching Allow",
        f"{_CLI} policy create NAME --statement "
        + _q(f'{{"Effect": "Allow", "Action": "{actions[-1]}"}}')
        + " (then policy attach)",
    )


def explain_tool_call(
    snap: DecisionState,
    *,
    flow_id: str,
    agent: str,
    tool: str,
    tool_name: str | None = None,
    context: Mapping[str, Any] | None = None,
    user_id: str | None = None,
    attached: Sequence[AttachedPolicy] | None = None,
    link_removed: bool = False,
) -> Explanation:
    """Every check of the tool-call decision on ``snap``, in order; the first failure is the
    reason (the one :func:`.rules.decide_tool_call` gives).

    ``user_id``: a flow that user may not see is explained as one that does not exist (and
    nothing about it is shown). ``attached``: the policies attached to the agent and the tool,
    to name a deciding statement's policy. ``link_removed``: an operator removed the link
    agent -> tool (the fix is ``restore-link``, not a new declaration).
    """
    visible = flow_id in snap.flows and (user_id is None or snap.flow_visible(flow_id, user_id))
    flow_name = snap.flows.get(flow_id) if visible else None
    # The flow as a command argument: its name when it has one (names are unique in an org).
    flow_arg = (flow_name or flow_id) if visible else None
    checks: list[Check] = [
        Check(
            "flow.known",
            CheckStatus.PASS if visible else CheckStatus.FAIL,
            Reason.FLOW_UNKNOWN,
            f"the flow {flow_name or flow_id} exists"
            if visible
            else f"no flow {flow_id} that you can see",
            None if visible else f"{_CLI} flow list",
        )
    ]
    checks += _identity_checks(snap, "agent", agent, flow_id, flow_arg)
    checks += _identity_checks(snap, "tool", tool, flow_id, flow_arg)

    pair = (agent, tool)
    scope = (
        "organization"
        if pair in snap.links
        else "flow"
        if visible and pair in snap.flow_links.get(flow_id, ())
        else None
    )
    if scope is not None:
        where = "organization-wide" if scope == "organization" else "declared for this flow"
        checks.append(
            Check("link", CheckStatus.PASS, Reason.NO_LINK, f"a link agent -> tool ({where})")
        )
    else:
        other = [
            snap.flows.get(f, f)
            for f, pairs in snap.flow_links.items()
            if f != flow_id and pair in pairs and (user_id is None or snap.flow_visible(f, user_id))
        ]
        message = "no link authorizes the agent to use this tool"
        if link_removed:
            message += " (an operator removed it; enrollment does not re-create it)"
        elif other:
            message += (
                f" in this flow (a grant of flow(s) {', '.join(sorted(other))} holds there only)"
            )
        fix = (
            f"{_CLI} restore-link {_q(agent)} {_q(tool)}"
            if link_removed
            else f"{_CLI} link {_q(agent)} {_q(tool)}"
        )
        checks.append(Check("link", CheckStatus.FAIL, Reason.NO_LINK, message, fix))

    actions = tool_actions(tool_name)
    subjects = (agent, tool)
    statements: list[Statement] = []
    for subject in subjects:
        statements.extend(snap.policies.get(subject, ()))
    # The context matters only where a statement has a Condition (as in the rules).
    result = authorize(statements, actions, tool, context if snap.conditional else None)
    refs = _refs(snap, subjects, result.matched, attached)
    codes = tuple(dict.fromkeys(p.code for p in attached or () if p.subject in subjects))
    checks.append(_policy_check(result, actions, refs, codes))

    first = next((c for c in checks if c.failed), None)
    reason = Reason.ALLOWED if first is None else first.reason
    return Explanation(
        allowed=first is None,
        reason=reason,
        flow_id=flow_id,
        flow_name=flow_name,
        agent=agent,
        tool=tool,
        tool_name=tool_name,
        actions=actions,
        revision=snap.revision,
        checks=tuple(checks),
        link_scope=scope,
        statements=refs,
        policy_codes=codes,
        audit=first is None and result.audit,
    )
