"""The hot path: ``POST aztp/verify-identity`` answered on the event loop, from memory.

A verification whose API key is already in the key cache is answered here, without FastAPI's
request machinery and without a worker thread, by :meth:`Authority.verify_cached` — the
authority's own answer from its in-memory snapshot, which it knows to be current (its shared
change counter moves on every commit, in this process or another). When the snapshot must be
loaded first, the authority is asked in a worker thread. Anything else — unknown keys,
anything malformed, any doubt — goes on unchanged to the regular route.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import AztpError
from ..ids import parse_aztp_id
from .apikey import api_key_from_headers
from .context import ServerContext
from .middleware import replaying
from .responses import envelope_bytes

try:
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover
    import json

    _loads = json.loads

__all__ = ["FastPathMiddleware"]

log = logging.getLogger(__name__)


class FastPathMiddleware:
    """Answers the common verify-identity request from memory; passes everything else on."""

    def __init__(self, app: ASGIApp, *, context: ServerContext, prefix: str = "") -> None:
        self.app = app
        self.ctx = context
        self.verify_path = f"{prefix}/aztp/verify-identity"
        self._ids: dict[str, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != self.verify_path
        ):
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        try:
            answer = await self._verify(scope, body)
        except Exception:  # any doubt: the regular route decides (and reports errors)
            log.debug("fast verify fell back", exc_info=True)
            answer = None
        if answer is not None:
            payload = envelope_bytes(True, answer["message"], answer)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(payload)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": payload})
            return
        await self.app(scope, replaying(body, receive), send)

    async def _verify(self, scope: Scope, body: bytes) -> dict[str, Any] | None:
        headers = scope["headers"]
        key = api_key_from_headers(headers)
        content_type = next((value for name, value in headers if name == b"content-type"), None)
        if not key or (
            content_type is not None and not content_type.startswith(b"application/json")
        ):
            return None
        principal = self.ctx.auth_cache.cached(key)
        if principal is None:
            return None
        doc = _loads(body)
        if type(doc) is not dict:
            return None
        flow_id = doc.get("identityFlowId")
        if flow_id is not None and (type(flow_id) is not str or not flow_id or len(flow_id) > 128):
            return None
        raw = doc.get("aztpId")
        if type(raw) is not str or not raw or len(raw) > 2048:
            return None
        aztp_id = self._ids.get(raw)
        if aztp_id is None:
            try:
                aztp_id = str(parse_aztp_id(raw))
            except AztpError:
                return None
            if len(self._ids) > 50_000:
                self._ids.clear()
            self._ids[raw] = aztp_id
        authority = self.ctx.authority
        answer = authority.verify_cached(principal, aztp_id, flow_id)
        if answer is None:
            answer = await anyio.to_thread.run_sync(
                authority.verify_identity, principal, aztp_id, flow_id
            )
        return answer  # type: ignore[no-any-return]
