"""Credentials: X.509-SVIDs for a caller's CSR, their live check, JWT-SVIDs and the SPIFFE
trust bundle (all ``/v1`` extensions; the official client makes no credentials)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from ..responses import ok
from ..schemas import CredentialBody, JwtSvidBody, Loose, Verification, VerifyCredentialBody
from .dependencies import Caller, ServedAuthority
from .openapi import success

router = APIRouter(tags=["credentials"])


@router.post(
    "/v1/identities/credential",
    responses=success(Loose),
    summary="A fresh X.509-SVID for an active identity, for the key of the CSR",
)
def credential(body: CredentialBody, caller: Caller, authority: ServedAuthority) -> Response:
    data = dict(authority.issue_credential(caller, body.aztpId, csr_pem=body.csr, ttl=body.ttl))
    data.pop("privateKey", None)
    return ok(data, "X.509-SVID issued")


@router.post(
    "/v1/credentials/verify",
    responses=success(Verification),
    summary="Live check of an X.509-SVID: chain, identity active, issued after the last reissue",
)
def verify_credential(
    body: VerifyCredentialBody, caller: Caller, authority: ServedAuthority
) -> Response:
    data = authority.verify_credential(caller, body.certificate)
    message = (
        "Credential is valid" if data["valid"] else f"Credential is not valid: {data['reason']}"
    )
    return ok({**data, "message": message}, "Credential checked")


@router.post("/v1/svid/jwt", responses=success(Loose), summary="A JWT-SVID for an audience")
def jwt_svid(body: JwtSvidBody, caller: Caller, authority: ServedAuthority) -> Response:
    return ok(
        authority.fetch_jwt_svid(caller, body.aztpId, body.audience, ttl=body.ttl),
        "JWT-SVID issued",
    )


@router.get(
    "/.well-known/spiffe-bundle",
    responses=success(dict[str, dict[str, Any]]),
    summary="SPIFFE bundles (JWKS) of the caller's trust domains, keyed by trust domain",
)
def bundle(
    caller: Caller,
    authority: ServedAuthority,
    trustDomain: Annotated[str | None, Query(max_length=255)] = None,
) -> Response:
    return ok(authority.trust_bundle(caller, trustDomain or None), "SPIFFE trust bundle")
