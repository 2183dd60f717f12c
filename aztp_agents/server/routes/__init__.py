"""The HTTP routes, one module (one ``APIRouter``, one OpenAPI tag) per concept.

=================  ==================================================================
module             routes
=================  ==================================================================
``service``        service health (``identity-flow/health``, ``v1/health``); no key
``identities``     issue, verify, get, discover, revoke, reissue; ``v1/identities``
``credentials``    X.509-SVID for a CSR, credential check, JWT-SVID, trust bundle
``links``          link, authorize a connection, ``v1/links``
``flows``          ``identity-flow/*``, flow revocation, ``v1/flows``
``policies``       attached policies, permissions, OIAP, ``v1/policies``
``audit``          ``v1/audit``
``federation``     ``v1/federation``
``decisions``      ``v1/decisions`` (take one; record remote ones)
``state``          ``v1/state`` and its change feed, for enforcement points
=================  ==================================================================

Every route takes its caller and the authority from :mod:`.dependencies`, answers with the
envelope of :mod:`aztp_agents.server.responses` and is documented through :mod:`.openapi`.
To add a route: put it in its concept's module (or a new module listed in ``_ROUTERS``), as a
plain ``def`` (FastAPI runs it in a worker thread: the store blocks) taking ``Caller`` and
``ServedAuthority``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from . import (
    audit,
    credentials,
    decisions,
    federation,
    flows,
    identities,
    links,
    policies,
    service,
    state,
)
from .dependencies import single_valued_query
from .openapi import ERROR_RESPONSES

__all__ = ["api_router"]

_ROUTERS = (
    service.router,
    identities.router,
    credentials.router,
    links.router,
    flows.router,
    policies.router,
    audit.router,
    federation.router,
    decisions.router,
    state.router,
)


def api_router() -> APIRouter:
    """Every route of the API, with the error answers every route may give and the check that
    no query parameter is repeated."""
    router = APIRouter(responses=ERROR_RESPONSES, dependencies=[Depends(single_valued_query)])
    for concept in _ROUTERS:
        router.include_router(concept)
    return router
