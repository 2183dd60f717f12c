"""The application factory: the AZTP REST API (WIRE.md) plus our ``/v1`` extensions.

:func:`create_app` wires the pieces, each owned elsewhere:

- the routes (:mod:`.routes`, one ``APIRouter`` per concept) under an optional prefix;
- the error handlers (:mod:`.error_handlers`): every answer is ``{success, message, data}``;
- the OpenAPI document without FastAPI's 422 (:mod:`.routes.openapi`);
- the middleware: with a metrics token, the Prometheus ``/metrics`` endpoint and request
  timing (:mod:`.metrics`) outermost; the request body cap (:mod:`.middleware`), then the
  verify fast path (:mod:`.fastpath`), which answers the hot ``POST aztp/verify-identity``
  from memory;
- the lifespan: the store watcher (:mod:`.feed`) runs while the app is served.

Every route authenticates the caller's API key to a :class:`~aztp_agents.authority.Principal`
and calls one authority operation with it, so every answer is scoped to the caller's
organization.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from .. import __version__
from ..authority import Authority
from .console import install_console
from .context import ServerContext
from .error_handlers import install_error_handlers
from .fastpath import FastPathMiddleware
from .feed import AuthCache, StoreWatcher
from .middleware import DEFAULT_MAX_BODY, BodyLimitMiddleware
from .routes import api_router
from .routes.openapi import openapi_document

__all__ = ["ServerContext", "create_app"]

_DESCRIPTION = (
    "The AZTP REST API (the official aztp-client works unchanged) plus aztp-agents "
    "extensions under /v1. Every answer is {success, message, data}."
)


def create_app(
    authority: Authority,
    *,
    prefix: str = "",
    max_body: int = DEFAULT_MAX_BODY,
    poll_interval: float = 0.005,
    metrics_token: str | None = None,
) -> FastAPI:
    """The ASGI application serving ``authority``. ``prefix`` (like ``/astha/v1``) is put
    before every route; the official client's ``base_url`` then ends with it.
    ``metrics_token``: serve Prometheus metrics at ``/metrics`` to its bearer (None: no
    ``/metrics``, nothing measured)."""
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    watcher = StoreWatcher(authority.store, interval=poll_interval)
    context = ServerContext(authority, watcher, AuthCache(authority, watcher))
    if metrics_token:
        from .metrics import ServerMetrics

        context.metrics = ServerMetrics(authority.store, watcher)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        watcher.start()
        try:
            yield
        finally:
            watcher.stop()

    app = FastAPI(
        title="aztp-agents identity authority",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url=f"{prefix}/docs",
        redoc_url=None,
        openapi_url=f"{prefix}/openapi.json",
    )
    app.state.aztp = context
    app.include_router(api_router(), prefix=prefix)
    install_console(app)  # the operator console at /console (its own sign-in)
    install_error_handlers(app)

    def openapi() -> dict[str, Any]:
        return openapi_document(app)

    app.openapi = openapi  # type: ignore[method-assign]
    # added last is outermost: metrics (if on), the body cap, the verify fast path, the routes
    app.add_middleware(FastPathMiddleware, context=context, prefix=prefix)
    app.add_middleware(BodyLimitMiddleware, max_body=max_body)
    if context.metrics is not None and metrics_token:
        from .metrics import MetricsMiddleware

        app.add_middleware(MetricsMiddleware, metrics=context.metrics, token=metrics_token)
    return app
