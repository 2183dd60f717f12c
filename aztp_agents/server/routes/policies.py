"""Policies: what is attached to an identity, what its policies allow
(``aztp/get-identity-*``), OIAP evaluation, and our ``v1/policies`` to create, attach and
detach them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from ..responses import ok
from ..schemas import AttachBody, Loose, OiapBody, PolicyBody, PolicyInfo
from .dependencies import Caller, ServedAuthority
from .openapi import success

router = APIRouter(tags=["policies"])

AztpId = Annotated[str, Query(min_length=1, max_length=2048)]


@router.get(
    "/v1/policies",
    responses=success(list[Loose]),
    summary="Every policy of the organization and the identities each is attached to",
)
def list_policies(caller: Caller, authority: ServedAuthority) -> Response:
    policies = authority.list_policies(caller)
    return ok(policies, f"{len(policies)} policies")


@router.get(
    "/aztp/get-identity-access-policy",
    responses=success(list[PolicyInfo]),
    summary="Policies attached to an identity",
)
def get_policy(caller: Caller, authority: ServedAuthority, aztpId: AztpId) -> Response:
    policies = authority.get_policies(caller, aztpId)
    return ok(policies, f"{len(policies)} policies")


@router.get(
    "/aztp/get-identity-action-permissions",
    responses=success(Loose),
    summary="Whether the identity's policies (or the one named) allow each action",
)
def action_permissions(
    caller: Caller,
    authority: ServedAuthority,
    aztpId: AztpId,
    policy_code: Annotated[str | None, Query(max_length=128)] = None,
    policy_id: Annotated[str | None, Query(max_length=128)] = None,
    action: Annotated[
        str | None, Query(max_length=4096, description="comma-separated actions")
    ] = None,
    trust_domain: Annotated[str | None, Query(max_length=255)] = None,
    resource: Annotated[
        str | None,
        Query(max_length=2048, description="the resource (a tool's AZTP ID) the actions are on"),
    ] = None,
) -> Response:
    data = authority.check_permissions(
        caller,
        aztpId,
        policy_code=policy_code or policy_id,
        actions=action,
        trust_domain=trust_domain,
        resource=resource,
    )
    return ok(data, "Action permissions evaluated")


@router.post(
    "/oiap/evaluate",
    responses=success(Loose),
    summary="Organization identity access policy: may the identity access the resource?",
)
def oiap_evaluate(body: OiapBody, caller: Caller, authority: ServedAuthority) -> Response:
    answer = authority.oiap_evaluate(caller, body.aztp_id, body.requested_resource, body.user_id)
    return ok(answer, "OIAP evaluated")


@router.post("/v1/policies", responses=success(PolicyInfo), summary="Create a policy")
def create_policy(body: PolicyBody, caller: Caller, authority: ServedAuthority) -> Response:
    return ok(
        authority.create_policy(caller, body.name, body.document, code=body.code), "Policy created"
    )


@router.post("/v1/policies/attach", responses=success(Loose), summary="Attach a policy")
def attach_policy(body: AttachBody, caller: Caller, authority: ServedAuthority) -> Response:
    return ok(authority.attach_policy(caller, body.aztpId, body.code), "Policy attached")


@router.post("/v1/policies/detach", responses=success(Loose), summary="Detach a policy")
def detach_policy(body: AttachBody, caller: Caller, authority: ServedAuthority) -> Response:
    return ok(authority.detach_policy(caller, body.aztpId, body.code), "Policy detached")
