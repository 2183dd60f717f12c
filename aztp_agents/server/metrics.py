"""Prometheus metrics of a running server: ``GET /metrics``, behind its own bearer token.

Off unless a token is configured (``serve --metrics-token-file F`` or ``AZTP_METRICS_TOKEN``,
read by :mod:`aztp_agents.cli.serve`; ``create_app(..., metrics_token=...)``):
then there is no ``/metrics`` at all (404, like any unknown route) and no request is timed.
With a token, :class:`MetricsMiddleware` is the outermost layer of the application, so it
times every request (the verify fast path too) and answers ``/metrics`` itself, before the
API's authentication, routes and OpenAPI document: a scraper holds the metrics token, not an
API key, and an API key never opens ``/metrics`` (401).

What is measured (one :class:`~prometheus_client.CollectorRegistry` per application, so two
applications in one process never mix):

========================================  =====================================================
``aztp_http_requests_total``              requests by method, route template and status
``aztp_http_request_duration_seconds``    latency by method and route template (histogram)
``aztp_rate_limited_total``               requests refused with 429, by route template
``aztp_decisions_total``                  tool-call decisions by reason and ``source``:
                                          ``server`` (taken here, ``POST v1/decisions``) or
                                          ``remote`` (taken at an enforcement point, recorded
                                          here through ``POST v1/decisions/audit``)
``aztp_change_feed_followers``            open change-feed streams (``GET v1/state/changes``)
``aztp_change_feed_max_lag_revisions``    revisions the slowest open stream is behind
``aztp_audit_writer_backlog``             audit records queued, not yet taken by the writer
``aztp_audit_writer_records_total``       audit records the writer committed
========================================  =====================================================

Routes are labelled by their template (``/v1/flows/{flow_id}``), never the raw path: a client
cannot grow the label set; a path no route matches is ``unmatched``.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..decisions import Decision
from ..telemetry import audit_backlog

if TYPE_CHECKING:
    from ..store import Store
    from .feed import StoreWatcher

__all__ = ["METRICS_PATH", "MetricsMiddleware", "ServerMetrics"]

METRICS_PATH = "/metrics"

#: Request latency buckets (seconds): the verify fast path answers in ~100 us, a write in ms,
#: a change-feed stream lasts as long as its follower.
_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
    60.0,
)


class ServerMetrics:
    """The instruments of one application, and the gauges read when scraped."""

    def __init__(self, store: Store, watcher: StoreWatcher) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "aztp_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "aztp_http_request_duration_seconds",
            "HTTP request latency by method and route template",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rate_limited = Counter(
            "aztp_rate_limited", "Requests refused with 429 (rate limited)", ["route"], registry=r
        )
        self.decisions = Counter(
            "aztp_decisions",
            "Tool-call decisions by reason; source: server (taken here) or remote (recorded)",
            ["reason", "source"],
            registry=r,
        )
        r.register(_Observed(store, watcher))

    def decided(self, decisions: Iterable[Decision], source: str) -> None:
        for decision in decisions:
            self.decisions.labels(decision.reason.value, source).inc()

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _Observed:
    """What is read from the server's parts when scraped, not counted as it happens: the
    change-feed streams (the store watcher's) and the audit writer (the store's)."""

    def __init__(self, store: Store, watcher: StoreWatcher) -> None:
        self._store = store
        self._watcher = watcher

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        lags = self._watcher.followers()
        yield GaugeMetricFamily(
            "aztp_change_feed_followers", "Open change-feed streams", value=len(lags)
        )
        yield GaugeMetricFamily(
            "aztp_change_feed_max_lag_revisions",
            "Revisions the slowest open change-feed stream is behind",
            value=max(lags.values(), default=0),
        )
        # per open stream (a number, never an identity or a key: only open streams appear)
        per_stream = GaugeMetricFamily(
            "aztp_change_feed_follower_lag_revisions",
            "Revisions each open change-feed stream is behind",
            labels=["stream"],
        )
        for stream, lag in sorted(lags.items()):
            per_stream.add_metric([str(stream)], lag)
        yield per_stream
        yield GaugeMetricFamily(
            "aztp_change_feed_listening",
            "1 while the store watcher LISTENs for change notifications (PostgreSQL)",
            value=1 if self._watcher.listening else 0,
        )
        yield CounterMetricFamily(
            "aztp_change_feed_notifications",
            "Change-log notifications the store watcher received (PostgreSQL)",
            value=self._watcher.notifications,
        )
        yield GaugeMetricFamily(
            "aztp_audit_writer_backlog",
            "Audit records queued for the background writer, not yet taken by it",
            value=audit_backlog(self._store),
        )
        yield CounterMetricFamily(
            "aztp_audit_writer_records",
            "Audit records the background writer committed",
            value=self._store.audit_writer_stats().records,
        )


class MetricsMiddleware:
    """Times every request and answers ``GET /metrics`` to a bearer of the metrics token."""

    def __init__(self, app: ASGIApp, *, metrics: ServerMetrics, token: str) -> None:
        self.app = app
        self.metrics = metrics
        self._token = token.encode()
        self._static: set[str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == METRICS_PATH:
            await self._scrape(scope, send)
            return
        status = 500  # what a request that fails before answering counts as
        started = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = self._route(scope)
            method = scope["method"]
            m = self.metrics
            m.requests.labels(method, route, str(status)).inc()
            m.latency.labels(method, route).observe(time.perf_counter() - started)
            if status == 429:
                m.rate_limited.labels(route).inc()

    def _route(self, scope: Scope) -> str:
        """The matched route's template; a request answered before routing (the verify fast
        path, the body cap) by its path when that is a route without parameters."""
        route = scope.get("route")
        path = getattr(route, "path", None)
        if isinstance(path, str):
            return path
        if self._static is None:
            app = scope.get("app")
            routes = getattr(getattr(app, "router", None), "routes", ())
            self._static = {
                r.path
                for r in routes
                if isinstance(getattr(r, "path", None), str) and "{" not in r.path
            }
        return scope["path"] if scope["path"] in self._static else "unmatched"

    async def _scrape(self, scope: Scope, send: Send) -> None:
        given = _bearer(scope["headers"])
        if given is None or not hmac.compare_digest(given, self._token):
            await _answer(
                send,
                401,
                b"metrics token required: Authorization: Bearer <token>\n",
                [(b"www-authenticate", b'Bearer realm="metrics"')],
            )
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _answer(send, 405, b"method not allowed\n", [(b"allow", b"GET, HEAD")])
            return
        from prometheus_client import CONTENT_TYPE_LATEST

        body = self.metrics.exposition()
        await _answer(
            send,
            200,
            b"" if scope["method"] == "HEAD" else body,
            [(b"content-type", CONTENT_TYPE_LATEST.encode())],
            length=len(body),
        )


def _bearer(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            if scheme.lower() == b"bearer" and credentials.strip():
                return credentials.strip()
    return None


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    length: int | None = None,
) -> None:
    if not any(name == b"content-type" for name, _ in headers):
        headers = [*headers, (b"content-type", b"text/plain; charset=utf-8")]
    start: dict[str, Any] = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            *headers,
            (b"content-length", str(len(body) if length is None else length).encode()),
            (b"cache-control", b"no-store"),
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})
