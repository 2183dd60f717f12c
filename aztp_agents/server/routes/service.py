"""Service health: ``GET identity-flow/health`` (the official client's ``flow_health()``) and
``GET v1/health``. Neither needs an API key."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from ... import __version__
from ..responses import ok
from ..schemas import Health
from .openapi import success

router = APIRouter(tags=["service"])


@router.get(
    "/identity-flow/health",
    responses=success(Health),
    summary="Whether the identity flow service is up (no key needed)",
)
def flow_service_health() -> Response:
    return ok(
        {"status": "healthy", "service": "identity-flow", "version": __version__},
        "Identity flow service is healthy",
    )


@router.get("/v1/health", responses=success(Health), summary="Service health (no key needed)")
def health() -> Response:
    return ok({"status": "healthy", "version": __version__}, "aztp-agents server is healthy")
