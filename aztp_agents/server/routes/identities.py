"""Identities: issue (or re-connect), verify, look up, discover, revoke and reissue.

The official client's routes (``aztp/issue-identity``, ``aztp/verify-identity``,
``aztp/get-identity``, ``aztp/discover*``, ``aztp/revoke-identity``,
``aztp/reissue-revoked-identity``) and ours under ``v1/identities``. The hot
``aztp/verify-identity`` is usually answered before it gets here
(:mod:`aztp_agents.server.fastpath`); this route answers every other case of it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from ...errors import ValidationError
from ..responses import ok
from ..schemas import (
    FoundIdentity,
    IdentityDoc,
    IssueAnswer,
    IssuedIdentity,
    IssueIdentityBody,
    IssueMetadata,
    Loose,
    NewIdentityBody,
    ReissueBody,
    RevokeBody,
    Verification,
    VerifyBody,
)
from .dependencies import Caller, ServedAuthority
from .openapi import success

router = APIRouter(tags=["identities"])

AztpIdQuery = Annotated[str | None, Query(min_length=1, max_length=2048)]


@router.post(
    "/aztp/issue-identity",
    responses=success(IssuedIdentity),
    summary="Issue (or re-connect) an identity; no credential is made (official secure_connect)",
)
def issue_identity(body: IssueIdentityBody, caller: Caller, authority: ServedAuthority) -> Response:
    meta = body.metadata or IssueMetadata()
    answer = authority.secure_connect(
        caller,
        body.workloadId,
        is_global=body.isGlobalIdentity,
        trust_domain=meta.trustDomain,
        parent_identity=meta.parentIdentity,
        environment=meta.environment or "production",
        method=body.method or "node",
        hostname=meta.hostname,
        extra=meta.extra,
        make_key=False,
    )
    data = {**answer["identity"], "valid": answer["valid"]}
    if answer.get("error"):
        data["error"] = answer["error"]
        return ok(data, answer["error"])
    return ok(data, "Workload identity issued successfully")


@router.post(
    "/aztp/verify-identity",
    responses=success(Verification),
    summary="Verify an identity, globally or in a flow (a negative answer is 200 with data.valid=false)",
)
def verify_identity(body: VerifyBody, caller: Caller, authority: ServedAuthority) -> Response:
    data = authority.verify_identity(caller, body.aztpId, body.identityFlowId)
    return ok(data, data["message"])


def get_identity(
    caller: Caller,
    authority: ServedAuthority,
    agentName: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    aztpId: AztpIdQuery = None,
) -> Response:
    if aztpId:
        doc = authority.get_identity(caller, aztpId)
    elif agentName:
        doc = authority.get_identity_by_name(caller, agentName)
    else:
        raise ValidationError("give the identity's name as ?agentName=NAME (or its ID as ?aztpId=)")
    message = "Workload identity found successfully"
    # The seeds read json.loads(await client.get_identity(agent))["data"]["aztpId"], and the
    # official client returns this route's data (minus top-level selectors) as that JSON:
    # so data is the identity record that also carries the seed's envelope.
    return ok({**doc, "success": True, "message": message, "data": doc}, message)


# The official client asks with and without the trailing slash; only one is documented.
for _path, _documented in (("/aztp/get-identity", True), ("/aztp/get-identity/", False)):
    router.add_api_route(
        _path,
        get_identity,
        methods=["GET"],
        include_in_schema=_documented,
        responses=success(FoundIdentity),
        summary="Get an identity by name (?agentName=) or ID",
    )


@router.get(
    "/aztp/discover-with-trust-domain",
    responses=success(list[IdentityDoc]),
    summary="Discoverable identities of one of the caller's trust domains",
)
def discover_with_trust_domain(
    caller: Caller,
    authority: ServedAuthority,
    trustDomain: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    aztpId: AztpIdQuery = None,
) -> Response:
    docs = authority.discover(caller, trust_domain=trustDomain, requestor=aztpId)
    return ok(docs, f"{len(docs)} discoverable identities")


@router.get(
    "/aztp/discoverable",
    responses=success(list[IdentityDoc]),
    summary="Discoverable identities: global ones and members of visible public flows",
)
def discoverable(
    caller: Caller, authority: ServedAuthority, discoverable: bool | None = None
) -> Response:
    # ``discoverable`` is accepted (the official client sends it) and has no effect
    docs = authority.discover(caller)
    return ok(docs, f"{len(docs)} discoverable identities")


@router.post(
    "/aztp/revoke-identity", responses=success(Loose), summary="Revoke an identity everywhere"
)
def revoke_identity(body: RevokeBody, caller: Caller, authority: ServedAuthority) -> Response:
    return ok(
        authority.revoke_identity(caller, body.aztpId, body.reason),
        "Workload identity revoked successfully",
    )


@router.post(
    "/aztp/reissue-revoked-identity",
    responses=success(Loose),
    summary="Make a revoked identity valid again (credentials issued before stay dead)",
)
def reissue_identity(body: ReissueBody, caller: Caller, authority: ServedAuthority) -> Response:
    data = authority.reissue_identity(caller, body.aztpId, csr_pem=body.csr, make_key=False)
    data.pop("privateKey", None)
    return ok(data, "Workload identity reissued successfully")


@router.post(
    "/v1/identities",
    responses=success(IssueAnswer),
    summary="Issue (or re-connect) an identity; with a CSR, an X.509-SVID for the caller's key",
)
def new_identity(body: NewIdentityBody, caller: Caller, authority: ServedAuthority) -> Response:
    answer = authority.secure_connect(
        caller,
        body.name,
        is_global=body.isGlobalIdentity,
        trust_domain=body.trustDomain,
        parent_identity=body.parentIdentity,
        environment=body.environment or "production",
        method=body.method or "node",
        hostname=body.hostname,
        extra=body.extra,
        csr_pem=body.csr,
        make_key=False,
        ttl=body.ttl,
    )
    answer.pop("privateKey", None)  # never made here, never sent
    return ok(answer, answer.get("error") or "Workload identity issued successfully")


@router.get(
    "/v1/identities",
    responses=success(list[IdentityDoc]),
    summary="All identities of the caller's organization",
)
def list_identities(caller: Caller, authority: ServedAuthority) -> Response:
    docs = authority.list_identities(caller)
    return ok(docs, f"{len(docs)} identities")


# by-name before by-ID: ``{aztp_id:path}`` would match ``by-name/...`` too
@router.get(
    "/v1/identities/by-name/{name:path}",
    responses=success(IdentityDoc),
    summary="One identity by name",
)
def identity_by_name(name: str, caller: Caller, authority: ServedAuthority) -> Response:
    return ok(authority.get_identity_by_name(caller, name), "Workload identity found successfully")


@router.get(
    "/v1/identities/{aztp_id:path}",
    responses=success(IdentityDoc),
    summary="One identity by AZTP ID",
)
def identity(aztp_id: str, caller: Caller, authority: ServedAuthority) -> Response:
    return ok(authority.get_identity(caller, aztp_id), "Workload identity found successfully")
