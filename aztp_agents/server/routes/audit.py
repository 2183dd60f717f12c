"""The organization's audit log: read it (``GET v1/audit``), check its hash chain
(``GET v1/audit/verify``, or ``POST v1/audit/verify`` with a signed checkpoint), and sign
checkpoints of its head (``GET v1/audit/checkpoint``; the public key to check them with:
``GET v1/audit/checkpoint/key``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from ..responses import ok
from ..schemas import AuditVerifyBody, Loose
from .dependencies import Caller, ServedAuthority
from .openapi import success

router = APIRouter(tags=["audit"])


@router.get("/v1/audit", responses=success(list[Loose]), summary="The organization's audit log")
def audit(
    caller: Caller,
    authority: ServedAuthority,
    limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    action: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    entries = authority.audit_entries(caller, limit=limit, action=action or None)
    return ok([e.to_doc() for e in entries], f"{len(entries)} audit entries")


def _verified(report: dict[str, object]) -> Response:
    message = "Audit chain intact" if report["ok"] else f"Audit chain broken: {report['problem']}"
    return ok(report, message)


@router.get("/v1/audit/verify", responses=success(Loose), summary="Check the audit hash chain")
def audit_verify(caller: Caller, authority: ServedAuthority) -> Response:
    return _verified(authority.verify_audit(caller).to_dict())


@router.post(
    "/v1/audit/verify",
    responses=success(Loose),
    summary="Check the audit hash chain, and that it still holds a signed checkpoint's history",
)
def audit_verify_checkpoint(
    body: AuditVerifyBody, caller: Caller, authority: ServedAuthority
) -> Response:
    if body.checkpoint is None and body.publicKey is None:
        return _verified(authority.verify_audit(caller).to_dict())
    report = authority.verify_audit(
        caller, checkpoint=body.checkpoint or "", public_key=body.publicKey
    )
    return _verified(report.to_dict())


@router.get(
    "/v1/audit/checkpoint",
    responses=success(Loose),
    summary="A signed checkpoint of the audit chain's head (keep it outside the server)",
)
def audit_checkpoint(caller: Caller, authority: ServedAuthority) -> Response:
    doc = authority.audit_checkpoint(caller)
    return ok(doc, f"Checkpoint of audit entry {doc['checkpoint']['seq']}")


@router.get(
    "/v1/audit/checkpoint/key",
    responses=success(Loose),
    summary="The organization's audit checkpoint public key (PEM)",
)
def audit_checkpoint_key(caller: Caller, authority: ServedAuthority) -> Response:
    return ok(authority.audit_checkpoint_key(caller), "Audit checkpoint public key")
