"""The organization's audit log: read it (``GET v1/audit``) and check its hash chain
(``GET v1/audit/verify``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from ..responses import ok
from ..schemas import Loose
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


@router.get("/v1/audit/verify", responses=success(Loose), summary="Check the audit hash chain")
def audit_verify(caller: Caller, authority: ServedAuthority) -> Response:
    report = authority.verify_audit(caller).to_dict()
    message = "Audit chain intact" if report["ok"] else f"Audit chain broken: {report['problem']}"
    return ok(report, message)
