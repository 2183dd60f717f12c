"""How the routes describe themselves in the OpenAPI document.

Every answer is the ``{success, message, data}`` envelope: :func:`success` documents a
route's 200 answer with the model of its ``data``, :data:`ERROR_RESPONSES` the error answers
every route may give. :func:`openapi_document` drops FastAPI's 422 (we answer 400 with our
envelope instead).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ..schemas import Envelope, ErrorEnvelope

__all__ = ["ERROR_RESPONSES", "Responses", "openapi_document", "success"]

Responses = dict[int | str, dict[str, Any]]

_ERROR = {"model": ErrorEnvelope}
ERROR_RESPONSES: Responses = {
    400: {**_ERROR, "description": "Malformed request: bad JSON, wrong type, invalid ID or value"},
    401: {**_ERROR, "description": "Missing, unknown or revoked API key"},
    403: {
        **_ERROR,
        "description": "Not allowed (another user's private flow, another organization's trust domain)",
    },
    404: {**_ERROR, "description": "Not found in the caller's organization"},
    409: {**_ERROR, "description": "Conflicts with existing state (already revoked, name taken)"},
    413: {**_ERROR, "description": "Request body too large"},
    429: {**_ERROR, "description": "Rate limited"},
    503: {**_ERROR, "description": "Store unavailable; retry"},
}


def success(model: Any, description: str = "Success") -> Responses:
    """The 200 answer of a route: the envelope with ``model`` as its ``data``."""
    return {200: {"model": Envelope[model], "description": description}}  # type: ignore[index]


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document without FastAPI's 422 (made once, then cached on the app)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    for item in doc.get("paths", {}).values():
        for op in item.values():
            if isinstance(op, dict):
                op.get("responses", {}).pop("422", None)
    schemas = doc.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    app.openapi_schema = doc
    return doc
