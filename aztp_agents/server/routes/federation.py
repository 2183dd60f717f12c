"""Federation: trust (``POST v1/federation``) or stop trusting
(``DELETE v1/federation/{trust_domain}``) another organization's trust domain."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import Response

from ..responses import ok
from ..schemas import FederationBody, Loose
from .dependencies import Caller, ServedAuthority
from .openapi import success

router = APIRouter(tags=["federation"])


@router.post(
    "/v1/federation",
    responses=success(Loose),
    summary="Trust another organization's trust domain (effective once both sides do)",
)
def federate(body: FederationBody, caller: Caller, authority: ServedAuthority) -> Response:
    return ok(authority.federate(caller, body.trustDomain), "Trust domain federated")


@router.delete(
    "/v1/federation/{trust_domain}",
    responses=success(Loose),
    summary="Stop trusting a trust domain",
)
def unfederate(
    trust_domain: Annotated[str, Path(min_length=1, max_length=255)],
    caller: Caller,
    authority: ServedAuthority,
) -> Response:
    return ok(authority.unfederate(caller, trust_domain), "Trust domain no longer federated")
