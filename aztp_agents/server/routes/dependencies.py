"""The named FastAPI dependencies every route is built from.

- :data:`Caller`: the authenticated :class:`~aztp_agents.authority.Principal` of the request
  (its API key, checked against the key cache, else the store in a worker thread);
- :data:`ServedAuthority`: the :class:`~aztp_agents.authority.Authority` the app serves;
- :data:`Context`: the whole :class:`~aztp_agents.server.context.ServerContext`;
- :func:`single_valued_query`: a router-wide guard against repeated query parameters.

:func:`api_key` is the one dependency that reads the API key (through
:func:`~aztp_agents.server.apikey.api_key_from_headers`); it also declares the two ways of
sending it as security schemes in the OpenAPI document.
"""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer

from ...authority import Authority, Principal
from ...errors import AuthenticationError, ValidationError
from ..apikey import API_KEY_HEADER, api_key_from_headers
from ..context import ServerContext

__all__ = [
    "Caller",
    "Context",
    "ServedAuthority",
    "api_key",
    "authenticated_principal",
    "served_authority",
    "server_context",
    "single_valued_query",
]


class _DeclaredApiKeyHeader(APIKeyHeader):
    """The ``api_access_key`` header as an OpenAPI security scheme. Declaration only: the
    key is read by :func:`api_key_from_headers`, so it is parsed in one place."""

    async def __call__(self) -> None:  # type: ignore[override]
        return None


class _DeclaredBearer(HTTPBearer):
    """``Authorization: Bearer`` as an OpenAPI security scheme. Declaration only, as above."""

    async def __call__(self) -> None:  # type: ignore[override]
        return None


_API_KEY_SCHEME = _DeclaredApiKeyHeader(
    name=API_KEY_HEADER,
    scheme_name="apiAccessKey",
    auto_error=False,
    description="API key (as the official aztp-client sends it). Make one with 'aztp-agents keys create'.",
)
_BEARER_SCHEME = _DeclaredBearer(
    scheme_name="bearer", auto_error=False, description="The same API key as a Bearer token."
)


async def server_context(request: Request) -> ServerContext:
    # async: a plain ``def`` dependency would cost a worker-thread hop on every request
    return request.app.state.aztp  # type: ignore[no-any-return]


Context = Annotated[ServerContext, Depends(server_context)]


async def api_key(
    request: Request,
    _header: Annotated[None, Security(_API_KEY_SCHEME)] = None,
    _bearer: Annotated[None, Security(_BEARER_SCHEME)] = None,
) -> str | None:
    """The request's API key (``api_access_key`` header, else ``Authorization: Bearer``)."""
    return api_key_from_headers(request.scope["headers"])


async def authenticated_principal(
    context: Context, key: Annotated[str | None, Depends(api_key)]
) -> Principal:
    """The caller, from the key cache when it is current, else checked against the store in a
    worker thread (the store blocks; the event loop must not)."""
    if not key:
        raise AuthenticationError(
            "missing API key: send it in the 'api_access_key' header or as 'Authorization: Bearer <key>'"
        )
    principal = context.auth_cache.cached(key)
    if principal is None:
        principal = await anyio.to_thread.run_sync(context.auth_cache.authenticate, key)
    return principal


Caller = Annotated[Principal, Depends(authenticated_principal)]


async def served_authority(context: Context) -> Authority:
    return context.authority


ServedAuthority = Annotated[Authority, Depends(served_authority)]


async def single_valued_query(request: Request) -> None:
    """No route takes a list in its query: ``?x=1&x=2`` is an error, not "the last one wins"."""
    params = request.query_params
    if len(params.multi_items()) != len(params):
        seen: set[str] = set()
        for name, _ in params.multi_items():
            if name in seen:
                raise ValidationError(
                    f"query parameter {name!r} is given more than once; give it once"
                )
            seen.add(name)
