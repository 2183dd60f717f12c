"""Verification of identities and authorization of connections (audited reads)."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import select

from ..decisions import (
    CONNECTION_CODES,
    IDENTITY_CODES,
    Reason,
    authorize_connection,
    verify_in_snapshot,
)
from ..decisions.state import DecisionState
from ..errors import (
    ValidationError,
)
from ..ids import parse_aztp_id
from ..policy import Statement
from ..store import schema as t
from ._context import (
    Component,
    Principal,
    need_aztp_id,
    opt_text,
)

__all__ = ["Verification", "verify_answer"]


class Verification(Component):
    """Verification and connection authorization, from the decision state."""

    def verify_identity(
        self, p: Principal, aztp_id: str, flow_id: str | None = None
    ) -> dict[str, Any]:
        """Global or flow-scoped validity (a negative answer is an answer, not an error); audited."""
        answer = self._verify(p, aztp_id, flow_id)
        self.ctx.audit_later(
            p,
            "identity.verify",
            answer["aztpId"],
            {"valid": answer["valid"], "reason": answer["reason"], "flowId": flow_id},
        )
        return answer

    def _verify(self, p: Principal, aztp_id: str, flow_id: str | None) -> dict[str, Any]:
        aztp = str(need_aztp_id(aztp_id))
        if flow_id is not None and not isinstance(flow_id, str):
            raise ValidationError("identity_flow_id must be a string (the flow's _id)")
        return verify_answer(self.ctx.decisions.state(p.org_id), p.user_id, aztp, flow_id)

    def verify_cached(
        self, p: Principal, aztp_id: str, flow_id: str | None = None
    ) -> dict[str, Any] | None:
        """:meth:`verify_identity` without any I/O, or None when the snapshot must be loaded
        first (for event loops: call :meth:`verify_identity` in a worker thread then).
        ``aztp_id`` must already be a canonical AZTP ID."""
        snap = self.ctx.decisions.cached_state(p.org_id)
        if snap is None:
            return None
        answer = verify_answer(snap, p.user_id, aztp_id, flow_id)
        self.ctx.audit_later(
            p,
            "identity.verify",
            aztp_id,
            {"valid": answer["valid"], "reason": answer["reason"], "flowId": flow_id},
        )
        return answer

    def authorize_connection(
        self, p: Principal, source: str, target: str, policy_code: str | None = None
    ) -> dict[str, Any]:
        """Both valid, a link allows source -> target, and the policy (if named) allows
        ``connect`` on the target; across organizations only where they federate. Audited."""
        answer = self._authorize(p, source, target, policy_code)
        self.ctx.audit_later(
            p,
            "connection.authorize",
            source,
            {
                "target": target,
                "valid": answer["valid"],
                "reason": answer["reason"],
                "policyCode": policy_code,
            },
        )
        return answer

    def _authorize(
        self, p: Principal, source: str, target: str, policy_code: str | None
    ) -> dict[str, Any]:
        policy_code = opt_text(policy_code, "policyCode", max_len=256)
        src, dst = str(need_aztp_id(source, "from")), str(need_aztp_id(target, "to"))
        snap = self.ctx.decisions.state(p.org_id)
        policy: tuple[Statement, ...] | None = None
        if policy_code:
            policy = self.ctx.policies.statements(p, policy_code)
            if policy is None:
                return {
                    "valid": False,
                    "reason": "policy_unknown",
                    "message": f"policy {policy_code!r} not found",
                }
        foreign = self._foreign_status(p, dst) if dst not in snap.identities else None
        if foreign is not None:
            snap = dataclasses.replace(snap, identities={**snap.identities, dst: foreign}, memo={})
        verdict = authorize_connection(snap, src, dst, policy=policy)
        reason = CONNECTION_CODES[verdict.reason]
        return {
            "valid": verdict.valid,
            "reason": reason,
            "message": "Connection authorized"
            if verdict.valid
            else f"Connection not authorized: {reason}",
        }

    def _foreign_status(self, p: Principal, aztp_id: str) -> str | None:
        """Status of an identity of a federated organization (None if not federated)."""
        aztp = parse_aztp_id(aztp_id)
        with self.ctx.store.read() as conn:
            federated = conn.execute(
                select(t.federations).where(
                    t.federations.c.org_id == p.org_id,
                    t.federations.c.trust_domain == aztp.trust_domain.name,
                )
            ).first()
            if federated is None:
                return None
            owner = conn.execute(
                select(t.trust_domains.c.org_id).where(
                    t.trust_domains.c.name == aztp.trust_domain.name
                )
            ).first()
            if owner is None:
                return None
            peer_trusts = conn.execute(
                select(t.federations).where(
                    t.federations.c.org_id == owner.org_id,
                    t.federations.c.trust_domain.in_(
                        select(t.trust_domains.c.name).where(t.trust_domains.c.org_id == p.org_id)
                    ),
                )
            ).first()
            if peer_trusts is None:
                return None  # federation needs both sides to agree
            return conn.execute(
                select(t.identities.c.status).where(t.identities.c.aztp_id == str(aztp))
            ).scalar()


_VERIFY_MESSAGES = {
    Reason.ALLOWED: "Identity is valid",
    Reason.AGENT_UNKNOWN: "Identity not found",
    Reason.AGENT_REVOKED: "Identity is revoked",
    Reason.AGENT_NOT_IN_FLOW: "Identity is not a member of this flow",
    Reason.AGENT_REVOKED_IN_FLOW: "Identity is revoked for this flow",
    Reason.FLOW_UNKNOWN: "Identity flow not found",
}


def verify_answer(
    snap: DecisionState, user_id: str, aztp_id: str, flow_id: str | None
) -> dict[str, Any]:
    """The answer to a verification, from a snapshot (pure). A flow the user may not see is
    answered like one that does not exist."""
    if flow_id is not None and not snap.flow_visible(flow_id, user_id):
        reason, valid = Reason.FLOW_UNKNOWN, False
    else:
        verdict = verify_in_snapshot(snap, aztp_id, flow_id)
        reason, valid = verdict.reason, verdict.valid
    message = _VERIFY_MESSAGES[reason]
    if valid and flow_id:
        message += " in this flow"
    return {
        "valid": valid,
        "aztpId": aztp_id,
        "identityFlowId": flow_id,
        "reason": IDENTITY_CODES[reason],
        "message": message,
    }
