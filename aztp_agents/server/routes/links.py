"""Links: who may talk to whom. Create (``aztp/create-workload-identity-link``), authorize a
connection (``aztp/authorize-connection-with-identities``), and our ``v1/links`` to list and
remove them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from ..responses import ok
from ..schemas import AuthorizeBody, LinkBody, Loose, RestoreLinkBody, UnlinkBody, Verification
from .dependencies import Caller, ServedAuthority
from .openapi import success

router = APIRouter(tags=["links"])


@router.post(
    "/aztp/authorize-connection-with-identities",
    responses=success(Verification),
    summary="Both identities valid, a link allows aztpId -> requestAztpId, and the policy (if any) allows it",
)
def authorize_connection(
    body: AuthorizeBody, caller: Caller, authority: ServedAuthority
) -> Response:
    data = authority.authorize_connection(caller, body.aztpId, body.requestAztpId, body.policyCode)
    return ok(data, data["message"])


@router.post(
    "/aztp/create-workload-identity-link",
    responses=success(Loose),
    summary="Link two identities (authorizes source -> target; 'linked' is symmetric)",
)
def link(body: LinkBody, caller: Caller, authority: ServedAuthority) -> Response:
    data = authority.link_identities(
        caller,
        body.sourceIdentity,
        body.targetIdentity,
        body.relationshipType,
        body.metadata,
        flow_id=body.identityFlowId,
        declared=body.declared,
    )
    if data.get("state") == "removed_by_operator":
        return ok(data, "Link not created: an operator removed it (restore it to link again)")
    return ok(data, "Workload identity link created successfully")


@router.post("/v1/links/delete", responses=success(Loose), summary="Remove a link")
def unlink(body: UnlinkBody, caller: Caller, authority: ServedAuthority) -> Response:
    return ok(
        authority.unlink_identities(
            caller, body.sourceIdentity, body.targetIdentity, body.relationshipType, body.reason
        ),
        "Workload identity link removed",
    )


@router.post(
    "/v1/links/restore",
    responses=success(Loose),
    summary="Undo an operator's link removal (enrollment never re-creates a removed link)",
)
def restore_link(body: RestoreLinkBody, caller: Caller, authority: ServedAuthority) -> Response:
    return ok(
        authority.restore_link(
            caller, body.sourceIdentity, body.targetIdentity, body.relationshipType
        ),
        "Workload identity link restored",
    )


@router.get(
    "/v1/links/removals",
    responses=success(list[Loose]),
    summary="Links operators removed (of one identity, or all)",
)
def link_removals(
    caller: Caller,
    authority: ServedAuthority,
    aztpId: Annotated[str | None, Query(max_length=2048)] = None,
) -> Response:
    data = authority.list_link_removals(caller, aztpId or None)
    return ok(data, f"{len(data)} link removals")


@router.get("/v1/links", responses=success(list[Loose]), summary="Links (of one identity, or all)")
def links(
    caller: Caller,
    authority: ServedAuthority,
    aztpId: Annotated[str | None, Query(max_length=2048)] = None,
) -> Response:
    data = authority.list_links(caller, aztpId or None)
    return ok(data, f"{len(data)} links")
