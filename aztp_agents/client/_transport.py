"""The remote transport: one request-building and answer-finishing base, a blocking and an
asynchronous sibling that only send.

:class:`SyncTransport` (one pooled ``httpx.Client``) and :class:`AsyncTransport` (one pooled
``httpx.AsyncClient`` per event loop) share :class:`_TransportBase`, which holds every step
that does no I/O: the key pair of credential-issuing routes (the key is made here and only a
CSR is sent: a private key never crosses the wire), the request arguments, the retry policy,
the error mapping and the finishing of an answer.

Replicas: a client may be given several servers on one database (``Aztp(base_url=[url1,
url2])``, a comma-separated ``AZTP_URL``). It follows one (:class:`Replicas`) and moves to the
next when that one refuses connections or answers 5xx. A request that could not connect was
never sent, so it is tried on the next replica at once, whatever the route; any other failure
is reported as before (a write may or may not have been applied) and the next request goes to
the next replica.

Errors: idempotent routes are retried with exponential backoff on connection errors and 5xx
answers only; a 4xx answer raises the :mod:`aztp_agents.errors` type its code names
(:func:`~aztp_agents.errors.error_from_wire`) with the server's message; a 5xx answer or a
network failure raises :class:`~aztp_agents.errors.AuthorityUnavailableError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from .. import credentials as cred
from ..errors import AuthorityUnavailableError, AztpError, CredentialError, error_from_wire
from ..ids import AztpId
from ._routes import Route, WireRequest

__all__ = [
    "AsyncTransport",
    "Replicas",
    "SyncTransport",
    "TransportConfig",
    "ssl_context",
    "typed_error",
]

log = logging.getLogger("aztp_agents.remote")

Hooks = Mapping[str, list[Callable[..., Any]]]
_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=16)


def ssl_context(verify: bool | str | os.PathLike[str] | ssl.SSLContext) -> ssl.SSLContext:
    """One TLS context for every client of the backend, made once (loading CA files is disk
    I/O that must not happen on an event loop): httpx's default trust store for ``True``, the
    given CA bundle for a path, no verification for ``False``."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    if isinstance(verify, bool):
        return httpx.create_ssl_context(verify=verify)
    return ssl.create_default_context(cafile=os.fspath(verify))


#: What shows that a request never reached the server (so any route may go elsewhere).
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


class Replicas:
    """The servers a client may use (each URL ends with ``/``) and the one it follows: the
    first, until it fails, then the next (round robin). Shared by both transports and the
    change-feed follower of one backend, so they move together."""

    def __init__(self, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError("at least one server URL")
        self.urls = tuple(urls)
        self._index = 0
        self._lock = threading.Lock()

    @property
    def current(self) -> str:
        return self.urls[self._index]

    def order(self) -> list[str]:
        """Every URL, the followed one first."""
        i = self._index
        return [*self.urls[i:], *self.urls[:i]]

    def url(self, base: str, path: str) -> str:
        """``path`` on ``base`` (as httpx joins a relative path to its base URL)."""
        return base + path.lstrip("/")

    def failed(self, url: str) -> None:
        """``url`` did not answer (or answered 5xx): follow the next one, if it was followed."""
        with self._lock:
            if len(self.urls) > 1 and self.urls[self._index] == url:
                self._index = (self._index + 1) % len(self.urls)
                log.warning("AZTP server %s did not answer; now following %s", url, self.current)

    def describe(self) -> str:
        return ", ".join(u.rstrip("/") for u in self.urls)


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Where and how both transports send: ``base_url`` ends with ``/`` (the first of
    ``replicas``, when several are given); ``timeout`` is the seconds per request; ``retries``
    the attempts of an idempotent route; ``backoff`` the first wait between them (doubling)."""

    base_url: str
    headers: Mapping[str, str]
    timeout: float
    verify: ssl.SSLContext
    retries: int
    backoff: float
    replicas: Replicas = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.replicas is None:
            object.__setattr__(self, "replicas", Replicas([self.base_url]))

    @property
    def timeouts(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0))


# ===================================================================================== errors


class _ServerError(Exception):
    """A 5xx answer (retryable for idempotent operations)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, (_ServerError, httpx.TransportError))


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return None


def typed_error(response: httpx.Response, op: str) -> AztpError:
    """The :mod:`aztp_agents.errors` exception for an error answer, with the server's message."""
    status = response.status_code
    body = _json_body(response)
    data = body.get("data") if isinstance(body, Mapping) else None
    data = dict(data) if isinstance(data, Mapping) else {}
    message = None
    if isinstance(body, Mapping):
        message = body.get("message") or body.get("detail")
    if not isinstance(message, str) or not message:
        message = f"the server answered {op} with HTTP {status}"
    if status >= 500:
        return AuthorityUnavailableError(
            f"the AZTP server failed on {op} (HTTP {status}): {message}"
        )
    if not data.get("retryAfter") and "retry-after" in response.headers:
        data["retryAfter"] = response.headers["retry-after"]
    return error_from_wire(status, data.get("code"), message, data)


def _unavailable(
    base_url: str, op: str, exc: BaseException, *, idempotent: bool
) -> AuthorityUnavailableError:
    what = type(exc).__name__
    detail = str(exc) if isinstance(exc, httpx.TransportError) else ""
    tail = "" if idempotent else " (the operation may or may not have been applied)"
    return AuthorityUnavailableError(
        f"could not reach the AZTP server at {base_url} for {op}: {what}{': ' + detail if detail else ''}{tail}"
    )


# ===================================================================================== key pairs


def _csr_subject(kwargs: Mapping[str, Any]) -> str:
    """A SPIFFE ID for the CSR. The server ignores the names a CSR asks for (the SVID carries
    exactly the identity's SPIFFE ID), so when the ID cannot be known here any valid one does."""
    if kwargs.get("aztp_id"):
        try:
            return AztpId.parse(kwargs["aztp_id"]).spiffe_id
        except Exception:
            pass
    try:
        td = kwargs.get("trust_domain") or "csr.invalid"
        return AztpId.build(
            td,
            kwargs["name"],
            environment=kwargs.get("environment") or "production",
            method=kwargs.get("method") or "node",
        ).spiffe_id
    except Exception:
        return "spiffe://csr.invalid/workload"


def _key_matches(cert_pem: str, key_pem: str) -> bool:
    """Whether the certificate certifies the public half of the key made here."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert_key = x509.load_pem_x509_certificate(cert_pem.encode()).public_key()
        ours = cred.load_private_key(key_pem).public_key()
    except Exception:
        return False
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert_key.public_bytes(*fmt) == ours.public_bytes(*fmt)


# ===================================================================================== transports


class _TransportBase:
    """Everything about a request but sending it."""

    def __init__(self, config: TransportConfig) -> None:
        self.config = config
        self.closed = False

    def check_open(self) -> None:
        if self.closed:
            raise AuthorityUnavailableError("this remote client is closed")

    def prepare(
        self, op: str, route: Route, kwargs: dict[str, Any]
    ) -> tuple[WireRequest, dict[str, Any]]:
        """The request for ``op``, and what is added to the answer locally (the private key)."""
        local: dict[str, Any] = {}
        kwargs = dict(kwargs)
        if route.keypair and kwargs.get("make_key", True) and not kwargs.get("csr_pem"):
            key = cred.generate_private_key()
            kwargs["csr_pem"] = cred.make_csr(key, _csr_subject(kwargs))
            local["privateKey"] = cred.private_key_to_pem(key)
        return route.request(op, kwargs), local

    def finish(
        self,
        op: str,
        route: Route,
        response: httpx.Response,
        local: dict[str, Any],
        kwargs: dict[str, Any],
    ) -> Any:
        """The value of an answer (what the embedded authority returns), or its error."""
        if response.status_code >= 400:
            raise typed_error(response, op)
        body = _json_body(response)
        if body is None:
            raise AuthorityUnavailableError(
                f"the AZTP server gave an unusable answer to {op} (not JSON)"
            )
        data = body
        if route.envelope and isinstance(body, Mapping) and "data" in body and "success" in body:
            data = body["data"]
        if route.parse is not None:
            data = route.parse(data, kwargs)
        if local:
            if not isinstance(data, dict):
                raise AuthorityUnavailableError(f"the AZTP server gave an unusable answer to {op}")
            if data.get("certificate"):
                if not _key_matches(str(data["certificate"]), local["privateKey"]):
                    raise CredentialError(
                        f"the AZTP server's certificate for {op} does not certify the key made "
                        "here (did it ignore the CSR?); not using it"
                    )
                data = {**data, **local}
            else:
                data = {**data, "privateKey": ""}
        return data

    def _request_args(
        self, base: str, method: str, request: WireRequest, timeout: float | None
    ) -> dict[str, Any]:
        args: dict[str, Any] = {
            "method": method,
            "url": self.config.replicas.url(base, request.path),
            "params": request.query or None,
            "json": request.body if method not in ("GET", "DELETE") else None,
        }
        if timeout is not None:
            args["timeout"] = timeout
        return args

    def _checked(self, base: str, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 500:
            self.config.replicas.failed(base)
            raise _ServerError(response)
        return response

    def _attempts(self, route: Route, attempts: int | None) -> int:
        return (
            attempts if attempts is not None else (self.config.retries if route.idempotent else 1)
        )

    def _retry_policy(self, attempts: int) -> dict[str, Any]:
        backoff = self.config.backoff
        return {
            "stop": stop_after_attempt(attempts),
            "reraise": True,
            "retry": retry_if_exception(_retryable),
            "wait": wait_exponential_jitter(initial=backoff, max=2.0, jitter=backoff / 2),
        }

    @contextlib.contextmanager
    def _errors(self, op: str, route: Route) -> Iterator[None]:
        """Turn what sending raised into the error a caller sees."""
        try:
            yield
        except _ServerError as exc:
            raise typed_error(exc.response, op) from None
        except httpx.TransportError as exc:
            where = self.config.replicas.describe()
            raise _unavailable(where, op, exc, idempotent=route.idempotent) from None

    def _client_args(self, event_hooks: Hooks | None) -> dict[str, Any]:
        c = self.config
        return {
            "base_url": c.base_url,
            "headers": dict(c.headers),
            "timeout": c.timeouts,
            "verify": c.verify,
            "limits": _LIMITS,
            "event_hooks": {k: list(v) for k, v in (event_hooks or {}).items()},
        }


class SyncTransport(_TransportBase):
    """Blocking sends over one pooled ``httpx.Client``."""

    def __init__(
        self,
        config: TransportConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        event_hooks: Hooks | None = None,
    ) -> None:
        super().__init__(config)
        self._transport = transport
        self._client = httpx.Client(transport=transport, **self._client_args(event_hooks))

    @property
    def is_closed(self) -> bool:
        return self._client.is_closed

    def _once(self, method: str, request: WireRequest, timeout: float | None) -> httpx.Response:
        bases = self.config.replicas.order()
        for i, base in enumerate(bases):
            try:
                response = self._client.request(
                    **self._request_args(base, method, request, timeout)
                )
            except _NOT_SENT:  # never sent: the next replica may take it, whatever the route
                self.config.replicas.failed(base)
                if i == len(bases) - 1:
                    raise
                continue
            except httpx.TransportError:
                self.config.replicas.failed(base)
                raise
            return self._checked(base, response)
        raise AssertionError("unreachable")

    def send(
        self,
        op: str,
        route: Route,
        request: WireRequest,
        *,
        timeout: float | None = None,
        attempts: int | None = None,
    ) -> httpx.Response:
        """Send ``request`` (retried if the route is idempotent); a 4xx answer is returned."""
        self.check_open()
        n = self._attempts(route, attempts)
        with self._errors(op, route):
            if n > 1:
                return Retrying(**self._retry_policy(n))(self._once, route.method, request, timeout)
            return self._once(route.method, request, timeout)

    def call(self, op: str, route: Route, kwargs: dict[str, Any]) -> Any:
        """Run ``op``: prepare, send, finish."""
        request, local = self.prepare(op, route, kwargs)
        return self.finish(op, route, self.send(op, route, request), local, kwargs)

    def post(self, path: str, body: Any, *, timeout: float) -> httpx.Response:
        """One raw POST to the followed replica (no retry, no error mapping: the caller
        handles both; a replica that cannot be reached is left for the next)."""
        base = self.config.replicas.current
        try:
            return self._client.request(
                "POST", self.config.replicas.url(base, path), json=body, timeout=timeout
            )
        except _NOT_SENT:
            self.config.replicas.failed(base)
            raise

    def stream_client(self, *, read_timeout: float) -> httpx.Client:
        """A separate client for a long-lived event stream (its own connection and read bound)."""
        c = self.config
        return httpx.Client(
            base_url=c.base_url,
            headers={**c.headers, "accept": "text/event-stream"},
            timeout=httpx.Timeout(c.timeout, connect=min(c.timeout, 5.0), read=read_timeout),
            verify=c.verify,
            transport=self._transport,
        )

    def close(self) -> None:
        self.closed = True
        self._client.close()


class AsyncTransport(_TransportBase):
    """Coroutine sends over one pooled ``httpx.AsyncClient`` per event loop (a client belongs
    to the loop it was made on)."""

    def __init__(
        self,
        config: TransportConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        event_hooks: Hooks | None = None,
    ) -> None:
        super().__init__(config)
        self._transport = transport
        self._event_hooks = event_hooks
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.get(loop)
            if client is None or client.is_closed:
                client = httpx.AsyncClient(
                    transport=self._transport, **self._client_args(self._event_hooks)
                )
                self._clients[loop] = client
            return client

    async def _once(
        self, client: httpx.AsyncClient, method: str, request: WireRequest, timeout: float | None
    ) -> httpx.Response:
        bases = self.config.replicas.order()
        for i, base in enumerate(bases):
            try:
                response = await client.request(
                    **self._request_args(base, method, request, timeout)
                )
            except _NOT_SENT:  # never sent: the next replica may take it, whatever the route
                self.config.replicas.failed(base)
                if i == len(bases) - 1:
                    raise
                continue
            except httpx.TransportError:
                self.config.replicas.failed(base)
                raise
            return self._checked(base, response)
        raise AssertionError("unreachable")

    async def send(
        self,
        op: str,
        route: Route,
        request: WireRequest,
        *,
        timeout: float | None = None,
        attempts: int | None = None,
    ) -> httpx.Response:
        """:meth:`SyncTransport.send` on this loop."""
        self.check_open()
        client = self._client()
        n = self._attempts(route, attempts)
        with self._errors(op, route):
            if n > 1:
                return await AsyncRetrying(**self._retry_policy(n))(
                    self._once, client, route.method, request, timeout
                )
            return await self._once(client, route.method, request, timeout)

    async def call(self, op: str, route: Route, kwargs: dict[str, Any]) -> Any:
        """:meth:`SyncTransport.call` on this loop."""
        request, local = self.prepare(op, route, kwargs)
        return self.finish(op, route, await self.send(op, route, request), local, kwargs)

    async def aclose_current(self) -> None:
        """Close this loop's client, on this loop."""
        with self._lock:
            client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def close(self) -> None:
        """Close every loop's client, each on its own loop where that is still possible."""
        self.closed = True
        with self._lock:
            clients = list(self._clients.items())
            self._clients.clear()
        for loop, client in clients:
            self._close_on(loop, client)

    @staticmethod
    def _close_on(loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        try:
            if loop.is_closed():
                return
            if running is loop:
                loop.create_task(client.aclose())
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(client.aclose(), loop)
            else:
                loop.run_until_complete(client.aclose())
        except Exception:
            pass
