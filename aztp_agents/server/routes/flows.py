"""Identity flows: create, update, delete, membership, flow-scoped revocation and reinstatement,
listing and per-flow health.

The official client's routes live under ``identity-flow/`` (plus
``aztp/revoke-identity-for-flow``); ours under ``v1/flows``. The flow service's own health
(``identity-flow/health``) is in :mod:`.service`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import Response

from ...errors import ValidationError
from ..responses import ok
from ..schemas import (
    AddToFlowBody,
    CreateFlowBody,
    EnsureFlowBody,
    FlowDoc,
    Loose,
    ReinstateBody,
    RemoveFromFlowBody,
    RevokeFlowBody,
    UpdateFlowBody,
)
from .dependencies import Caller, ServedAuthority
from .openapi import success

router = APIRouter(tags=["flows"])

FlowId = Annotated[str, Path(min_length=1, max_length=128)]


@router.post("/identity-flow/create", responses=success(FlowDoc), summary="Create an identity flow")
def create_flow(body: CreateFlowBody, caller: Caller, authority: ServedAuthority) -> Response:
    data = authority.create_flow(
        caller,
        body.name,
        description=body.description,
        discoverable=body.discoverable,
        tags=body.tags,
        metadata=body.metadata,
    )
    return ok(data, "Identity flow created successfully")


@router.put(
    "/identity-flow/update/{flow_id}",
    responses=success(FlowDoc),
    summary="Update a flow's name, description, discoverability, tags or metadata",
)
def update_flow(
    flow_id: FlowId, body: UpdateFlowBody, caller: Caller, authority: ServedAuthority
) -> Response:
    changes = body.model_dump(exclude_none=True)
    return ok(
        authority.update_flow(caller, flow_id, **changes), "Identity flow updated successfully"
    )


@router.delete(
    "/identity-flow/delete/{flow_id}",
    responses=success(Loose),
    summary="Delete a flow (its memberships go, the identities stay)",
)
def delete_flow(flow_id: FlowId, caller: Caller, authority: ServedAuthority) -> Response:
    return ok(authority.delete_flow(caller, flow_id), "Identity flow deleted successfully")


@router.post(
    "/identity-flow/add-identity-to-flow",
    responses=success(FlowDoc),
    summary="Add an identity to a flow (idempotent)",
)
def add_to_flow(body: AddToFlowBody, caller: Caller, authority: ServedAuthority) -> Response:
    aztp_id = body.identity.aztpId if body.identity else body.aztpId
    if not aztp_id:
        raise ValidationError("give the identity as {'identity': {'aztpId': ...}}")
    return ok(
        authority.add_identity_to_flow(caller, body.identityFlowId, aztp_id),
        "Identity added to flow successfully",
    )


@router.post(
    "/identity-flow/remove-identity-from-flow",
    responses=success(FlowDoc),
    summary="Remove an identity from a flow (idempotent; a flow revocation stays)",
)
def remove_from_flow(
    body: RemoveFromFlowBody, caller: Caller, authority: ServedAuthority
) -> Response:
    return ok(
        authority.remove_identity_from_flow(caller, body.identityFlowId, body.aztpId),
        "Identity removed from flow successfully",
    )


@router.post(
    "/aztp/revoke-identity-for-flow",
    responses=success(Loose),
    summary="Revoke an identity in one flow only",
)
def revoke_for_flow(body: RevokeFlowBody, caller: Caller, authority: ServedAuthority) -> Response:
    return ok(
        authority.revoke_flow_identity(caller, body.aztpId, body.identityFlowId, body.reason),
        "Identity revoked for this flow",
    )


@router.post("/v1/flows/reinstate", responses=success(FlowDoc), summary="Undo a flow revocation")
def reinstate(body: ReinstateBody, caller: Caller, authority: ServedAuthority) -> Response:
    return ok(
        authority.reinstate_flow_identity(caller, body.aztpId, body.identityFlowId),
        "Identity reinstated in flow",
    )


@router.post(
    "/v1/flows/ensure",
    responses=success(FlowDoc),
    summary="The visible flow with this name, created if missing",
)
def ensure_flow(body: EnsureFlowBody, caller: Caller, authority: ServedAuthority) -> Response:
    flow = authority.ensure_flow(
        caller, body.name, discoverable=body.discoverable, description=body.description
    )
    return ok(flow, "Identity flow ready")


@router.get("/v1/flows", responses=success(list[FlowDoc]), summary="Flows visible to the caller")
def list_flows(caller: Caller, authority: ServedAuthority) -> Response:
    data = authority.list_flows(caller)
    return ok(data, f"{len(data)} flows")


@router.get("/v1/flows/{flow_id}", responses=success(FlowDoc), summary="One flow")
def get_flow(flow_id: FlowId, caller: Caller, authority: ServedAuthority) -> Response:
    return ok(authority.get_flow(caller, flow_id), "Identity flow found")


@router.get(
    "/v1/flows/{flow_id}/health",
    responses=success(Loose),
    summary="Share of members valid in the flow: healthy >= 90 %, warning >= 70 %, else critical",
)
def flow_health(flow_id: FlowId, caller: Caller, authority: ServedAuthority) -> Response:
    return ok(authority.flow_health(caller, flow_id), "Flow health")
