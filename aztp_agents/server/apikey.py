"""How a request carries its API key: the one parser of the two ways of sending it.

The official ``aztp-client`` sends the key in an ``api_access_key`` header; other clients may
send it as ``Authorization: Bearer <key>``. :func:`api_key_from_headers` reads both from raw
ASGI headers, so the FastAPI dependency (:func:`.routes.dependencies.api_key`) and the verify
fast path (which runs before FastAPI) agree on which key a request carries.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["API_KEY_HEADER", "api_key_from_headers"]

#: The header the official client sends its key in.
API_KEY_HEADER = "api_access_key"

_API_KEY_HEADER = API_KEY_HEADER.encode("latin-1")


def api_key_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The API key in raw (lower-case named) ASGI headers, or ``None`` if there is none.

    The first ``api_access_key`` header wins if it is not empty; otherwise the credentials of
    the first ``Authorization`` header, if its scheme is Bearer (any case) and the credentials
    are not blank. Values are decoded as latin-1, as HTTP header values are.
    """
    api_key: bytes | None = None
    authorization: bytes | None = None
    for name, value in headers:
        if name == _API_KEY_HEADER:
            if api_key is None:
                api_key = value
        elif name == b"authorization" and authorization is None:
            authorization = value
    if api_key:
        return api_key.decode("latin-1")
    if not authorization:
        return None
    scheme, _, credentials = authorization.decode("latin-1").partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and credentials:
        return credentials
    return None
