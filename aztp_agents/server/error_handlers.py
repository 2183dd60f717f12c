"""How errors become answers: every error is the ``{success: false, message, data: {code}}``
envelope, never a 422 and never a 5xx on malformed input.

- :class:`~aztp_agents.errors.AztpError`: its own status and code (with ``Retry-After`` for
  rate limits and ``WWW-Authenticate`` for authentication failures);
- request validation: 400 ``invalid_request`` with the first problem in the message;
- Starlette's HTTP errors (unknown route, wrong method): their status, our envelope;
- anything else is a bug: logged, answered 500 without details.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ..errors import AuthenticationError, AztpError, RateLimitedError
from .responses import error

__all__ = ["install_error_handlers"]

log = logging.getLogger(__name__)

_HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


async def _aztp_error(request: Request, exc: AztpError) -> Response:
    extra: dict[str, Any] = exc.wire_fields()  # what the client's error_from_wire reads back
    headers = None
    if isinstance(exc, RateLimitedError):
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
    if isinstance(exc, AuthenticationError):
        headers = {"WWW-Authenticate": 'Bearer, ApiKey header="api_access_key"'}
    status = exc.status_code if 400 <= exc.status_code < 600 else 400
    if status >= 500:
        log.warning(
            "%s %s -> %d %s: %s", request.method, request.url.path, status, exc.code, exc.message
        )
    return error(status, exc.message, exc.code, headers=headers, **extra)


async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
    problems = []
    for e in exc.errors()[:20]:
        loc = [str(x) for x in e.get("loc", ())]
        problems.append({"loc": loc, "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))})
    first = problems[0] if problems else {"loc": [], "msg": "invalid request"}
    where = ".".join(first["loc"][1:] if len(first["loc"]) > 1 else first["loc"]) or "request"
    return error(
        400, f"invalid request: {where}: {first['msg']}", "invalid_request", errors=problems
    )


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path}"
    status = exc.status_code if exc.status_code < 500 else 400
    code = _HTTP_ERROR_CODES.get(exc.status_code, "http_error")
    return error(status, message, code, headers=exc.headers)


async def _bug(request: Request, exc: Exception) -> Response:
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return error(
        500, "internal server error (a bug in aztp-agents; it has been logged)", "internal_error"
    )


def install_error_handlers(app: FastAPI) -> None:
    # Starlette types handlers as taking any Exception; each of ours gets only its own class.
    app.add_exception_handler(AztpError, _aztp_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _bug)
