"""ASGI middleware: request body cap, and how a middleware that read the body hands it on.

A body larger than the cap is refused with 413 before the application sees any of it (by its
``Content-Length``, or while streaming a chunked body), so nothing is ever half-processed.
:func:`replaying` gives the application a ``receive`` that yields a body already read (here,
and in the verify fast path).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .responses import envelope_bytes

__all__ = ["DEFAULT_MAX_BODY", "BodyLimitMiddleware", "replaying"]

DEFAULT_MAX_BODY = 1024 * 1024  # 1 MiB


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that first yields ``body`` as the whole request, then defers to
    ``receive`` (which then reports the disconnect)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_body`` bytes (413) and malformed ``Content-Length``
    (400) before the application runs; GET, HEAD and OPTIONS pass untouched."""

    def __init__(self, app: ASGIApp, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await self._refuse(
                        send, 400, "invalid Content-Length header", "invalid_request"
                    )
                    return
        if length is not None and length > self.max_body:
            await self._refuse(send, 413, self._too_large(), "body_too_large")
            return
        # Read the whole body (at most max_body bytes), then replay it to the application.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_body:
                await self._refuse(send, 413, self._too_large(), "body_too_large")
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        await self.app(scope, replaying(b"".join(chunks), receive), send)

    def _too_large(self) -> str:
        return f"request body larger than {self.max_body} bytes"

    @staticmethod
    async def _refuse(send: Send, status: int, message: str, code: str) -> None:
        body = envelope_bytes(False, message, {"code": code})
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
