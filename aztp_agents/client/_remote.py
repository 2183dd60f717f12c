"""The remote backend: :class:`~aztp_agents.Aztp` operations against an ``aztp-agents serve``
server, and tool-call decisions taken locally from a replica of the decision state.

Operations go through the route table (:mod:`._routes`) and a transport (:mod:`._transport`):
blocking ones over one pooled ``httpx.Client``, coroutine ones over one ``httpx.AsyncClient``
per event loop. Decisions come from the replica this backend is (:mod:`._replica`).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import ssl
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from ..errors import AuthenticationError, ValidationError
from ._replica import DecisionReplica, note_write
from ._routes import ROUTES, Route
from ._transport import AsyncTransport, Replicas, SyncTransport, TransportConfig, ssl_context

__all__ = ["RemoteBackend"]


class RemoteBackend(DecisionReplica):
    """Operations against an ``aztp-agents serve`` server; decisions from a local replica.

    ``base_url``: the server (``https://host:port``, plus any prefix it is served under), or
    several replicas on one database (a list, or one string of comma-separated URLs): the
    backend follows the first and moves to the next when it stops answering.
    ``api_key``: sent as header ``api_access_key``; default ``$AZTP_API_KEY``.
    ``timeout``: seconds per request. ``verify``: TLS verification (``True``, ``False``, or
    the path of a CA bundle, or an ``ssl.SSLContext``). ``stale_after``: seconds of feed
    silence after which decisions stop being taken locally. ``retries``: attempts for
    idempotent operations; ``backoff``: first wait between them (seconds, doubling).
    ``transport`` / ``event_hooks`` (sync client) and ``async_transport`` /
    ``async_event_hooks`` (async clients): passed to httpx (tests, proxies, tracing).
    """

    is_remote = True
    #: Decisions never wait on the network longer than ``decision_timeout``: the Guard may
    #: call :meth:`decide` directly.
    bounded_decisions = True

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        verify: bool | str | os.PathLike[str] | ssl.SSLContext = True,
        stale_after: float = 2.0,
        decision_timeout: float | None = None,
        retries: int = 3,
        backoff: float = 0.1,
        audit_batch: int = 500,
        audit_interval: float = 0.25,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        event_hooks: Mapping[str, list[Callable[..., Any]]] | None = None,
        async_event_hooks: Mapping[str, list[Callable[..., Any]]] | None = None,
    ) -> None:
        urls = _server_urls(base_url)
        key = api_key or os.environ.get("AZTP_API_KEY")
        if not key:
            raise AuthenticationError(
                "an API key is required for a remote authority: Aztp(api_key=..., base_url=...) or $AZTP_API_KEY "
                "(make one with 'aztp-agents keys create')"
            )
        self.replicas = Replicas(urls)
        self.timeout = float(timeout)
        self.retries = max(1, int(retries))
        self.backoff = float(backoff)
        config = TransportConfig(
            base_url=urls[0],
            replicas=self.replicas,
            timeout=self.timeout,
            verify=ssl_context(verify),
            retries=self.retries,
            backoff=self.backoff,
            headers={
                "api_access_key": key,
                "accept": "application/json",
                "user-agent": "aztp-agents",
            },
        )
        super().__init__(
            SyncTransport(config, transport=transport, event_hooks=event_hooks),
            AsyncTransport(config, transport=async_transport, event_hooks=async_event_hooks),
            stale_after=stale_after,
            decision_timeout=decision_timeout
            if decision_timeout is not None
            else min(self.timeout, 2.0),
            audit_batch=audit_batch,
            audit_interval=audit_interval,
        )
        self_ref = weakref.ref(self)
        atexit.register(lambda: (b := self_ref()) is not None and b.close())

    @property
    def base_url(self) -> str:
        """The server followed now (ends with ``/``)."""
        return self.replicas.current

    @property
    def base_urls(self) -> tuple[str, ...]:
        """Every server this backend may use, in the order given."""
        return self.replicas.urls

    def __repr__(self) -> str:
        return f"RemoteBackend({self.replicas.describe()!r})"

    # ================================================================= operations

    @staticmethod
    def _route(op: str) -> Route:
        route = ROUTES.get(op)
        if route is None:
            raise ValidationError(f"operation {op!r} is not available on a remote authority")
        return route

    def call(self, op: str, /, **kwargs: Any) -> Any:
        """Run ``op`` synchronously (blocking; for synchronous callers)."""
        route = self._route(op)
        try:
            return self._sync.call(op, route, kwargs)
        finally:
            if route.writes:
                note_write()

    async def acall(self, op: str, /, **kwargs: Any) -> Any:
        """Run ``op`` on the event loop (one pooled ``httpx.AsyncClient`` per loop)."""
        route = self._route(op)
        try:
            return await self._async.call(op, route, kwargs)
        finally:
            if route.writes:
                note_write()

    # ================================================================= lifecycle

    def close(self) -> None:
        """Stop the feed and audit threads (sending queued decision records first) and close
        the HTTP clients."""
        if self._closed:
            return
        self._stop_replica()
        self._sync.close()
        self._async.close()

    async def aclose(self) -> None:
        """:meth:`close` from an event loop (closes this loop's client properly)."""
        await self._async.aclose_current()
        await asyncio.to_thread(self.close)


def _server_urls(base_url: str | Sequence[str]) -> list[str]:
    """The server URLs of ``base_url`` (a URL, comma-separated URLs, or a list), each ending
    with ``/``; each must be http(s)."""
    given = base_url.split(",") if isinstance(base_url, str) else list(base_url)
    urls = [u.strip() for u in given if isinstance(u, str) and u.strip()]
    bad = [u for u in urls if not u.startswith(("http://", "https://"))]
    if not urls or bad or not all(isinstance(u, str) for u in given):
        raise ValidationError(
            f"base_url must be http:// or https:// URLs (one, a list, or comma-separated), "
            f"got {base_url!r}"
        )
    return [u.rstrip("/") + "/" for u in urls]
