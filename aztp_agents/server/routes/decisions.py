"""Tool-call decisions at the server: taken and audited here (``POST v1/decisions``, the
enforcement points' fallback), or taken at a remote enforcement point and recorded here
(``POST v1/decisions/audit``); and explained (``POST v1/decisions/explain``)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from ...decisions import Decision, Reason
from ..responses import ok
from ..schemas import DecideBody, DecisionAuditBody, DecisionDoc, ExplainBody, Loose
from .dependencies import Caller, Context, ServedAuthority
from .openapi import success

router = APIRouter(tags=["decisions"])


@router.post(
    "/v1/decisions",
    responses=success(DecisionDoc),
    summary="Tool-call decision, taken and audited by the authority (enforcement points' fallback)",
)
def decide(
    body: DecideBody, caller: Caller, authority: ServedAuthority, context: Context
) -> Response:
    decision = authority.decide(
        caller,
        flow_id=body.flowId,
        agent=body.agent,
        tool=body.tool,
        tool_name=body.toolName,
        context=body.context,
        enforce=body.enforce,
    )
    if context.metrics is not None:
        context.metrics.decided((decision,), "server")
    return ok(decision.to_dict(), decision.describe())


@router.post(
    "/v1/decisions/explain",
    responses=success(Loose),
    summary="Why a tool call is (or would be) allowed or denied: every check in order, the "
    "missing link or membership, the policy statement that decided",
)
def explain(body: ExplainBody, caller: Caller, authority: ServedAuthority) -> Response:
    data = authority.explain(
        caller, body.agent, body.tool, body.flowId, tool_name=body.toolName, context=body.context
    )
    verdict = "allowed" if data["allowed"] else "denied"
    return ok(data, f"{verdict} [{data['reason']}]: {data['detail']}")


@router.post(
    "/v1/decisions/audit",
    responses=success(Loose),
    summary="Record decisions taken at a remote enforcement point in the audit log",
)
def decisions_audit(
    body: DecisionAuditBody, caller: Caller, authority: ServedAuthority, context: Context
) -> Response:
    recorded_here: list[Decision] = []
    for record in body.decisions:
        decision = Decision(
            allowed=record.allowed,
            reason=Reason(record.reason),
            agent=record.agent,
            tool=record.tool,
            flow=record.flow,
            revision=record.revision,
            latency_us=record.latencyUs,
            tool_name=record.toolName,
            audit=record.audit,
            enforced=record.enforced,
            organization=caller.org_id,
        )
        authority.record_decision(caller, decision, record.context, decided_at=record.decidedAt)
        recorded_here.append(decision)
    if context.metrics is not None:
        context.metrics.decided(recorded_here, "remote")
    recorded = len(body.decisions)
    return ok({"recorded": recorded}, f"{recorded} decisions recorded")
