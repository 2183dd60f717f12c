"""The remote backend: :class:`~aztp_agents.Aztp` operations against an ``aztp-agents serve``
server, and tool-call decisions taken locally from a replica of the decision state.

Operations
    One table (:data:`ROUTES`) maps every authority operation name to an HTTP route: method,
    path, how the keyword arguments become query parameters or a JSON body, and how the
    answer's ``data`` becomes the value the embedded :class:`~aztp_agents.authority.Authority`
    returns. The same table drives the synchronous path (one pooled ``httpx.Client``) and the
    asynchronous one (one pooled ``httpx.AsyncClient`` per event loop). Idempotent operations
    are retried with exponential backoff on connection errors and 5xx answers only; a 4xx
    answer raises the matching :mod:`aztp_agents.errors` type with the server's message; a
    network failure raises :class:`~aztp_agents.errors.AuthorityUnavailableError`.

    Credential-issuing operations (``secure_connect``, ``reissue_identity``,
    ``issue_credential``) make the key pair here and send only a CSR: the private key never
    crosses the wire. It is put into the answer (``privateKey``) locally.

Decisions (DESIGN.md section 4)
    The backend holds a :class:`~aztp_agents.decisions.Snapshot` loaded from
    ``GET /v1/state``. A background thread follows the server's change feed
    (``GET /v1/state/changes``, server-sent events with a heartbeat every second) and reloads
    the replica when the revision increases. :meth:`RemoteBackend.decide`:

    * feed heard from within ``stale_after`` seconds: decide locally, in memory, at the
      replica's revision (reloading it first if the feed announced a newer revision or a write
      made through any ``RemoteBackend`` of this process has been acknowledged since it was
      loaded: a revocation acknowledged here is never followed by an allow here);
    * feed silent longer than that: ask the server (``POST /v1/decisions``);
    * that fails: raise :class:`~aztp_agents.errors.AuthorityUnavailableError` (the Guard turns
      it into a denial: fail closed).

    Decisions taken locally are queued and sent in batches to ``POST /v1/decisions/audit``.

Bound: elsewhere, a revocation is honoured by this process's decisions once the feed delivers
it: the server's poll interval (~5 ms) plus one event and one ``GET /v1/state``, measured by
``bench/propagation.py``; if the feed cannot deliver, decisions stop being taken locally
``stale_after`` seconds after it was last heard.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import json
import logging
import os
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import (
    AsyncRetrying,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from . import credentials as cred
from .decisions import Decision, DecisionKey, Reason, Snapshot, decide_on
from .errors import (
    AlreadyRevokedError,
    AuthenticationError,
    AuthorityUnavailableError,
    AztpError,
    ConflictError,
    CredentialError,
    InvalidIdError,
    InvalidNameError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    SvidValidationError,
    ValidationError,
)
from .ids import AztpId
from .policy import Statement

__all__ = ["ROUTES", "RemoteBackend", "Route"]

log = logging.getLogger(__name__)


# ===================================================================================== routes

Builder = Callable[[dict[str, Any]], "_Request"]


@dataclass(frozen=True, slots=True)
class _Request:
    path: str
    query: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None


def _clean(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _segment(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{what} must be a non-empty string")
    return quote(value, safe="")


@dataclass(frozen=True, slots=True)
class Route:
    """How one authority operation travels.

    ``path`` may hold ``{kwarg}`` placeholders (filled percent-encoded); ``fields`` maps each
    keyword argument to its wire name (query parameters for GET/DELETE, JSON body otherwise);
    ``build`` replaces both for irregular routes. ``idempotent``: safe to retry. ``writes``:
    changes decision state (the replica is marked stale once it is acknowledged).
    ``keypair``: a key pair is made here and only a CSR sent. ``envelope``: the answer's
    ``data`` is the value (otherwise the whole body). ``parse`` turns that value into what the
    embedded authority returns.
    """

    method: str
    path: str
    fields: Mapping[str, str] = field(default_factory=dict)
    idempotent: bool = False
    writes: bool = True
    keypair: bool = False
    envelope: bool = True
    build: Builder | None = None
    parse: Callable[[Any, dict[str, Any]], Any] | None = None

    def request(self, op: str, kwargs: dict[str, Any]) -> _Request:
        if self.build is not None:
            return self.build(kwargs)
        path_args = {}
        rest = dict(kwargs)
        for name in _placeholders(self.path):
            if name not in rest:
                raise TypeError(f"{op}() missing required argument: {name!r}")
            path_args[name] = _segment(rest.pop(name), name)
        unknown = sorted(set(rest) - set(self.fields))
        if unknown:
            raise TypeError(f"{op}() got unexpected keyword argument(s): {', '.join(unknown)}")
        wire = _clean({self.fields[k]: v for k, v in rest.items()})
        path = self.path.format(**path_args)
        if self.method in ("GET", "DELETE"):
            return _Request(path, query=wire)
        return _Request(path, body=wire)


def _placeholders(path: str) -> list[str]:
    out, i = [], 0
    while (start := path.find("{", i)) >= 0:
        end = path.index("}", start)
        out.append(path[start + 1 : end])
        i = end + 1
    return out


def _read(method: str, path: str, **fields: str) -> Route:
    return Route(method, path, fields, idempotent=True, writes=False)


def _write(method: str, path: str, *, idempotent: bool = False, **fields: str) -> Route:
    return Route(method, path, fields, idempotent=idempotent)


_ISSUE_FIELDS = {
    "name": "name", "is_global": "isGlobalIdentity", "trust_domain": "trustDomain",
    "parent_identity": "parentIdentity", "environment": "environment", "method": "method",
    "hostname": "hostname", "extra": "extra", "ttl": "ttl", "csr_pem": "csr",
}


def _build_secure_connect(kw: dict[str, Any]) -> _Request:
    kw = dict(kw)
    kw.pop("make_key", None)  # handled by the key-pair step
    unknown = sorted(set(kw) - set(_ISSUE_FIELDS))
    if unknown:
        raise TypeError(f"secure_connect() got unexpected keyword argument(s): {', '.join(unknown)}")
    return _Request("v1/identities", body=_clean({_ISSUE_FIELDS[k]: v for k, v in kw.items()}))


def _build_reissue(kw: dict[str, Any]) -> _Request:
    kw = dict(kw)
    kw.pop("make_key", None)
    aztp_id = kw.pop("aztp_id")
    csr = kw.pop("csr_pem", None)
    if kw:
        raise TypeError(f"reissue_identity() got unexpected keyword argument(s): {', '.join(sorted(kw))}")
    return _Request("aztp/reissue-revoked-identity", body=_clean({"aztpId": aztp_id, "csr": csr}))


def _build_discover(kw: dict[str, Any]) -> _Request:
    td, requestor = kw.get("trust_domain"), kw.get("requestor")
    if td is None and requestor is None:
        return _Request("aztp/discoverable", query={"discoverable": "true"})
    return _Request("aztp/discover-with-trust-domain", query=_clean({"trustDomain": td, "aztpId": requestor}))


def _build_add_to_flow(kw: dict[str, Any]) -> _Request:
    return _Request("identity-flow/add-identity-to-flow",
                    body={"identityFlowId": kw["flow_id"], "identity": {"aztpId": kw["aztp_id"]}})


def _build_check_permissions(kw: dict[str, Any]) -> _Request:
    code, actions = kw.get("policy_code"), kw.get("actions")
    query: dict[str, Any] = {"aztpId": kw["aztp_id"]}
    if code:
        query["policy_code" if str(code).startswith("policy:") else "policy_id"] = code
    if actions:
        query["action"] = actions if isinstance(actions, str) else ",".join(actions)
    if kw.get("trust_domain"):
        query["trust_domain"] = kw["trust_domain"]
    return _Request("aztp/get-identity-action-permissions", query=query)


def _build_update_flow(kw: dict[str, Any]) -> _Request:
    kw = dict(kw)
    flow_id = _segment(kw.pop("flow_id"), "flow_id")
    allowed = {"name", "description", "discoverable", "tags", "metadata"}
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise ValidationError(f"unknown flow field(s): {', '.join(unknown)}")
    return _Request(f"identity-flow/update/{flow_id}", body=_clean(kw))


def _bundle(data: Any, kw: dict[str, Any]) -> Any:
    # The server may answer one JWKS (a trust domain was named) or {trust_domain: JWKS}.
    td = kw.get("trust_domain")
    if isinstance(data, Mapping) and "keys" in data and td:
        return {td: dict(data)}
    return data


def _as_list(data: Any, _kw: dict[str, Any]) -> list[Any]:
    if isinstance(data, Mapping):  # tolerate {"identities": [...]} style answers
        for value in data.values():
            if isinstance(value, list):
                return list(value)
    return list(data or [])


#: Every authority operation the facade, the guard and the adapters use, and its route.
#: WIRE.md routes (the official client's) where one exists, ``v1/`` extensions otherwise.
ROUTES: dict[str, Route] = {
    # identities
    "secure_connect": Route("POST", "v1/identities", idempotent=True, keypair=True, build=_build_secure_connect),
    "issue_credential": Route("POST", "v1/identities/credential", {"aztp_id": "aztpId", "csr_pem": "csr", "ttl": "ttl"},
                              idempotent=True, writes=False, keypair=True),
    "reissue_identity": Route("POST", "aztp/reissue-revoked-identity", keypair=True, build=_build_reissue),
    "get_identity": _read("GET", "v1/identities/{aztp_id}"),
    "get_identity_by_name": _read("GET", "v1/identities/by-name/{name}"),
    "list_identities": Route("GET", "v1/identities", idempotent=True, writes=False, parse=_as_list),
    "discover": Route("GET", "aztp/discoverable", idempotent=True, writes=False, build=_build_discover, parse=_as_list),
    "revoke_identity": _write("POST", "aztp/revoke-identity", aztp_id="aztpId", reason="reason"),
    "verify_identity": Route("POST", "aztp/verify-identity", {"aztp_id": "aztpId", "flow_id": "identityFlowId"},
                             idempotent=True, writes=False),
    "authorize_connection": Route("POST", "aztp/authorize-connection-with-identities",
                                  {"source": "aztpId", "target": "requestAztpId", "policy_code": "policyCode"},
                                  idempotent=True, writes=False),
    "verify_credential": Route("POST", "v1/credentials/verify", {"cert_pem": "certificate"},
                               idempotent=True, writes=False),
    "fetch_jwt_svid": Route("POST", "v1/svid/jwt", {"aztp_id": "aztpId", "audience": "audience", "ttl": "ttl"},
                            idempotent=True, writes=False),
    "trust_bundle": Route("GET", ".well-known/spiffe-bundle", {"trust_domain": "trustDomain"}, idempotent=True,
                          writes=False, parse=_bundle),
    # links
    "link_identities": _write("POST", "aztp/create-workload-identity-link", idempotent=True, source="sourceIdentity",
                              target="targetIdentity", relationship_type="relationshipType", metadata="metadata"),
    "unlink_identities": _write("POST", "v1/links/delete", source="sourceIdentity", target="targetIdentity",
                                relationship_type="relationshipType"),
    "list_links": Route("GET", "v1/links", {"aztp_id": "aztpId"}, idempotent=True, writes=False, parse=_as_list),
    # policies
    "create_policy": _write("POST", "v1/policies", name="name", document="document", code="code"),
    "attach_policy": _write("POST", "v1/policies/attach", idempotent=True, aztp_id="aztpId", code="code"),
    "detach_policy": _write("POST", "v1/policies/detach", aztp_id="aztpId", code="code"),
    "get_policies": Route("GET", "aztp/get-identity-access-policy", {"aztp_id": "aztpId"}, idempotent=True,
                          writes=False, parse=_as_list),
    "check_permissions": Route("GET", "aztp/get-identity-action-permissions", idempotent=True, writes=False,
                               build=_build_check_permissions),
    "oiap_evaluate": Route("POST", "oiap/evaluate", {"aztp_id": "aztp_id", "requested_resource": "requested_resource",
                                                     "user_id": "user_id"}, idempotent=True, writes=False),
    # flows
    "create_flow": _write("POST", "identity-flow/create", name="name", description="description",
                          discoverable="discoverable", tags="tags", metadata="metadata"),
    "update_flow": Route("PUT", "identity-flow/update/{flow_id}", idempotent=True, build=_build_update_flow),
    "delete_flow": _write("DELETE", "identity-flow/delete/{flow_id}"),
    "get_flow": _read("GET", "v1/flows/{flow_id}"),
    "list_flows": Route("GET", "v1/flows", idempotent=True, writes=False, parse=_as_list),
    "ensure_flow": _write("POST", "v1/flows/ensure", idempotent=True, name="name", discoverable="discoverable",
                          description="description"),
    "add_identity_to_flow": Route("POST", "identity-flow/add-identity-to-flow", idempotent=True,
                                  build=_build_add_to_flow),
    "remove_identity_from_flow": _write("POST", "identity-flow/remove-identity-from-flow", idempotent=True,
                                        flow_id="identityFlowId", aztp_id="aztpId"),
    "revoke_flow_identity": _write("POST", "aztp/revoke-identity-for-flow", aztp_id="aztpId",
                                   flow_id="identityFlowId", reason="reason"),
    "reinstate_flow_identity": _write("POST", "v1/flows/reinstate", aztp_id="aztpId", flow_id="identityFlowId"),
    "flow_health": _read("GET", "v1/flows/{flow_id}/health"),
    "service_health": Route("GET", "identity-flow/health", idempotent=True, writes=False, envelope=False),
    # audit
    "audit_entries": Route("GET", "v1/audit", {"limit": "limit", "action": "action"}, idempotent=True, writes=False,
                           parse=_as_list),
    "verify_audit": _read("GET", "v1/audit/verify"),
    # federation
    "federate": _write("POST", "v1/federation", idempotent=True, trust_domain="trustDomain"),
    "unfederate": _write("DELETE", "v1/federation/{trust_domain}"),
}

_STATE = Route("GET", "v1/state", idempotent=True, writes=False)
_DECIDE = Route("POST", "v1/decisions", writes=False)
_DECISION_AUDIT = Route("POST", "v1/decisions/audit", writes=False)
_FEED_PATH = "v1/state/changes"

# A write acknowledged through any RemoteBackend of this process makes every replica here
# re-fetch before its next decision. Read without the lock (an int); bumped under it.
_writes_lock = threading.Lock()
_writes = 0


def _note_write() -> None:
    global _writes
    with _writes_lock:
        _writes += 1


# ===================================================================================== errors


class _ServerError(Exception):
    """A 5xx answer (retryable for idempotent operations)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, (_ServerError, httpx.TransportError))


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return None


def _typed_error(response: httpx.Response, op: str) -> AztpError:
    """The :mod:`aztp_agents.errors` exception for an error answer, with the server's message."""
    status = response.status_code
    body = _body(response)
    data = body.get("data") if isinstance(body, Mapping) else None
    data = data if isinstance(data, Mapping) else {}
    message = None
    if isinstance(body, Mapping):
        message = body.get("message") or body.get("detail")
    if not isinstance(message, str) or not message:
        message = f"the server answered {op} with HTTP {status}"
    code = data.get("code")
    if status >= 500:
        return AuthorityUnavailableError(f"the AZTP server failed on {op} (HTTP {status}): {message}")
    if status == 400 or status in (413, 422):
        if code == "invalid_id":
            return InvalidIdError(message, rule=str(data.get("rule", "unknown")))
        if code == "invalid_name":
            return InvalidNameError(message)
        if code == "svid_invalid":
            return SvidValidationError(message, reason=str(data.get("reason", "invalid")))
        if code == "invalid_credential":
            return CredentialError(message)
        return ValidationError(message)
    if status == 401:
        return AuthenticationError(message)
    if status == 403:
        return PermissionDeniedError(message)
    if status == 404:
        return NotFoundError(message)
    if status == 409:
        return AlreadyRevokedError(message) if code == "already_revoked" else ConflictError(message)
    if status == 429:
        retry_after = data.get("retryAfter") or response.headers.get("retry-after") or 1.0
        try:
            seconds = float(retry_after)
        except (TypeError, ValueError):
            seconds = 1.0
        return RateLimitedError(message, retry_after=seconds)
    err = AztpError(message)
    err.status_code = status
    return err


def _unavailable(base_url: str, op: str, exc: BaseException, *, idempotent: bool) -> AuthorityUnavailableError:
    what = type(exc).__name__
    detail = str(exc) if isinstance(exc, httpx.TransportError) else ""
    tail = "" if idempotent else " (the operation may or may not have been applied)"
    return AuthorityUnavailableError(
        f"could not reach the AZTP server at {base_url} for {op}: {what}{': ' + detail if detail else ''}{tail}"
    )


# ===================================================================================== backend


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
        return AztpId.build(td, kwargs["name"], environment=kwargs.get("environment") or "production",
                            method=kwargs.get("method") or "node").spiffe_id
    except Exception:
        return "spiffe://csr.invalid/workload"


def _ssl_context(verify: bool | str | os.PathLike[str] | ssl.SSLContext) -> ssl.SSLContext:
    """One TLS context for every client of the backend, made once (loading CA files is disk
    I/O that must not happen on an event loop): httpx's default trust store for ``True``, the
    given CA bundle for a path, no verification for ``False``."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    if isinstance(verify, bool):
        return httpx.create_ssl_context(verify=verify)
    return ssl.create_default_context(cafile=os.fspath(verify))


def _json_safe(context: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if context is None:
        return None
    out: dict[str, Any] = {}
    for k, v in context.items():
        try:
            json.dumps(v)
            out[str(k)] = v
        except (TypeError, ValueError):
            out[str(k)] = str(v)
    return out


def _audit_record(decision: Decision, context: Mapping[str, Any] | None) -> dict[str, Any]:
    record = decision.to_dict()
    if context:
        record["context"] = {str(k): str(v) for k, v in context.items()}
    return record


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


def snapshot_from_state(data: Mapping[str, Any]) -> Snapshot:
    """The :class:`Snapshot` a ``GET /v1/state`` answer describes."""
    try:
        flows = {str(k): str(v) for k, v in dict(data.get("flows") or {}).items()}
        members = {str(k): frozenset(v) for k, v in dict(data.get("members") or {}).items()}
        revoked = {str(k): frozenset(v) for k, v in dict(data.get("flowRevoked") or {}).items()}
        links = frozenset((str(a), str(b)) for a, b in data.get("links") or ())
        policies = {
            str(k): tuple(Statement.model_validate(s) for s in v) for k, v in dict(data.get("policies") or {}).items()
        }
        return Snapshot(
            organization=str(data.get("organization") or ""), revision=int(data["revision"]),
            identities={str(k): str(v) for k, v in dict(data.get("identities") or {}).items()},
            members=members, flow_revoked=revoked, links=links, policies=policies, flows=flows,
            public_flows=frozenset(flows),  # the server sends only the flows this user may see
        )
    except Exception as exc:
        raise AuthorityUnavailableError(f"the server's decision state could not be read: {type(exc).__name__}") from None


class RemoteBackend:
    """Operations against an ``aztp-agents serve`` server; decisions from a local replica.

    ``base_url``: the server (``https://host:port``, plus any prefix it is served under).
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
        base_url: str,
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
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValidationError(f"base_url must start with http:// or https://, got {base_url!r}")
        key = api_key or os.environ.get("AZTP_API_KEY")
        if not key:
            raise AuthenticationError(
                "an API key is required for a remote authority: Aztp(api_key=..., base_url=...) or $AZTP_API_KEY "
                "(make one with 'aztp-agents keys create')"
            )
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = float(timeout)
        self.stale_after = float(stale_after)
        self.decision_timeout = float(decision_timeout if decision_timeout is not None else min(self.timeout, 2.0))
        self.retries = max(1, int(retries))
        self.backoff = float(backoff)
        self.audit_batch = int(audit_batch)
        self.audit_interval = float(audit_interval)
        self._verify = _ssl_context(verify)
        self._headers = {"api_access_key": key, "accept": "application/json", "user-agent": "aztp-agents"}
        self._timeouts = httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0))
        self._async_transport = async_transport
        self._event_hooks = {k: list(v) for k, v in (event_hooks or {}).items()}
        self._async_event_hooks = {k: list(v) for k, v in (async_event_hooks or {}).items()}
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
        self._client = httpx.Client(
            base_url=self.base_url, headers=self._headers, timeout=self._timeouts, verify=self._verify,
            transport=transport, limits=limits, event_hooks=self._event_hooks,
        )
        self._transport = transport
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()
        self._aclients_lock = threading.Lock()
        self._closed = False

        # ------------------------------------------------------------ decision replica
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._loaded_writes = -1  # process write count the replica is known to include
        self._feed_revision = -1
        self._feed_revision_at = 0.0
        self._heard = float("-inf")  # time.monotonic() of the last sign of life from the feed
        self._feed_connected = False
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None
        self._feed_client: httpx.Client | None = None
        self._ready = threading.Event()
        self._audit: collections.deque[tuple[Decision, Mapping[str, Any] | None]] = collections.deque(maxlen=100_000)
        self._audit_dropped = 0
        self._audit_wake = threading.Event()
        self._auditor: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.stats = {"local": 0, "fallback": 0, "reloads": 0, "feed_events": 0, "feed_reconnects": 0,
                      "audit_sent": 0, "audit_dropped": 0}
        self_ref = weakref.ref(self)
        atexit.register(lambda: (b := self_ref()) is not None and b.close())

    def __repr__(self) -> str:
        return f"RemoteBackend({self.base_url!r})"

    # ================================================================= operations

    def _route(self, op: str) -> Route:
        route = ROUTES.get(op)
        if route is None:
            raise ValidationError(f"operation {op!r} is not available on a remote authority")
        return route

    def _prepare(self, op: str, route: Route, kwargs: dict[str, Any]) -> tuple[_Request, dict[str, Any]]:
        """The request for ``op``, and what is added to the answer locally (the private key)."""
        local: dict[str, Any] = {}
        kwargs = dict(kwargs)
        if route.keypair and kwargs.get("make_key", True) and not kwargs.get("csr_pem"):
            key = cred.generate_private_key()
            kwargs["csr_pem"] = cred.make_csr(key, _csr_subject(kwargs))
            local["privateKey"] = cred.private_key_to_pem(key)
        return route.request(op, kwargs), local

    def _finish(self, op: str, route: Route, response: httpx.Response, local: dict[str, Any],
                kwargs: dict[str, Any]) -> Any:
        if response.status_code >= 400:
            raise _typed_error(response, op)
        body = _body(response)
        if body is None:
            raise AuthorityUnavailableError(f"the AZTP server gave an unusable answer to {op} (not JSON)")
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
                    raise CredentialError(f"the AZTP server's certificate for {op} does not certify the key made "
                                          "here (did it ignore the CSR?); not using it")
                data = {**data, **local}
            else:
                data = {**data, "privateKey": ""}
        return data

    def _once(self, method: str, request: _Request) -> httpx.Response:
        response = self._client.request(method, request.path, params=request.query or None,
                                        json=request.body if method not in ("GET", "DELETE") else None)
        if response.status_code >= 500:
            raise _ServerError(response)
        return response

    async def _aonce(self, client: httpx.AsyncClient, method: str, request: _Request) -> httpx.Response:
        response = await client.request(method, request.path, params=request.query or None,
                                        json=request.body if method not in ("GET", "DELETE") else None)
        if response.status_code >= 500:
            raise _ServerError(response)
        return response

    def _retrying_kwargs(self) -> dict[str, Any]:
        return {"stop": stop_after_attempt(self.retries), "reraise": True, "retry": retry_if_exception(_retryable),
                "wait": wait_exponential_jitter(initial=self.backoff, max=2.0, jitter=self.backoff / 2)}

    def _send(self, op: str, route: Route, request: _Request) -> httpx.Response:
        self._check_open()
        try:
            if route.idempotent and self.retries > 1:
                return Retrying(**self._retrying_kwargs())(self._once, route.method, request)
            return self._once(route.method, request)
        except _ServerError as exc:
            raise _typed_error(exc.response, op) from None
        except httpx.TransportError as exc:
            raise _unavailable(self.base_url, op, exc, idempotent=route.idempotent) from None

    async def _asend(self, op: str, route: Route, request: _Request) -> httpx.Response:
        self._check_open()
        client = self._async_client()
        try:
            if route.idempotent and self.retries > 1:
                return await AsyncRetrying(**self._retrying_kwargs())(self._aonce, client, route.method, request)
            return await self._aonce(client, route.method, request)
        except _ServerError as exc:
            raise _typed_error(exc.response, op) from None
        except httpx.TransportError as exc:
            raise _unavailable(self.base_url, op, exc, idempotent=route.idempotent) from None

    def call(self, op: str, /, **kwargs: Any) -> Any:
        """Run ``op`` synchronously (blocking; for synchronous callers)."""
        route = self._route(op)
        request, local = self._prepare(op, route, kwargs)
        try:
            response = self._send(op, route, request)
        finally:
            if route.writes:
                _note_write()
        return self._finish(op, route, response, local, kwargs)

    async def acall(self, op: str, /, **kwargs: Any) -> Any:
        """Run ``op`` on the event loop (one pooled ``httpx.AsyncClient`` per loop)."""
        route = self._route(op)
        request, local = self._prepare(op, route, kwargs)
        try:
            response = await self._asend(op, route, request)
        finally:
            if route.writes:
                _note_write()
        return self._finish(op, route, response, local, kwargs)

    def _async_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._aclients_lock:
            client = self._aclients.get(loop)
            if client is None or client.is_closed:
                client = httpx.AsyncClient(
                    base_url=self.base_url, headers=self._headers, timeout=self._timeouts, verify=self._verify,
                    transport=self._async_transport, event_hooks=self._async_event_hooks,
                    limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
                )
                self._aclients[loop] = client
            return client

    def _check_open(self) -> None:
        if self._closed:
            raise AuthorityUnavailableError("this remote client is closed")

    # ================================================================= decisions

    @property
    def feed_revision(self) -> int:
        """The latest revision the change feed announced (-1 before it was heard)."""
        return self._feed_revision

    @property
    def feed_revision_at(self) -> float:
        """``time.monotonic()`` when :attr:`feed_revision` last increased."""
        return self._feed_revision_at

    @property
    def replica_revision(self) -> int:
        snap = self._snapshot
        return -1 if snap is None else snap.revision

    def feed_fresh(self) -> bool:
        """Whether the change feed was heard from within ``stale_after`` seconds."""
        return time.monotonic() - self._heard <= self.stale_after

    def start(self, wait: float | None = 5.0) -> bool:
        """Start following the change feed (done on the first decision anyway); with ``wait``,
        block up to that many seconds until the replica is loaded. True if it is."""
        self._ensure_threads()
        if wait:
            return self._ready.wait(wait)
        return self._ready.is_set()

    def _ensure_threads(self) -> None:
        if self._follower is not None or self._closed:
            return
        with self._start_lock:
            if self._follower is not None or self._closed:
                return
            self._feed_client = httpx.Client(
                base_url=self.base_url, headers={**self._headers, "accept": "text/event-stream"},
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0), read=max(self.stale_after, 1.0) + 1.0),
                verify=self._verify, transport=self._transport,
            )
            self._auditor = threading.Thread(target=self._audit_loop, name="aztp-remote-audit", daemon=True)
            self._auditor.start()
            follower = threading.Thread(target=self._follow, name="aztp-remote-feed", daemon=True)
            follower.start()
            self._follower = follower

    def _needs_reload(self) -> bool:
        snap = self._snapshot
        return snap is None or self._loaded_writes != _writes or snap.revision < self._feed_revision

    def _install(self, data: Any, writes_seen: int) -> Snapshot:
        snap = snapshot_from_state(data if isinstance(data, Mapping) else {})
        with self._lock:
            current = self._snapshot
            if current is None or snap.revision >= current.revision:
                self._snapshot = snap
            self._loaded_writes = max(self._loaded_writes, writes_seen)
            self.stats["reloads"] += 1
            self._ready.set()
            return self._snapshot  # type: ignore[return-value]

    def _reload(self, *, force: bool = False) -> Snapshot:
        # One reload at a time from threads: a decision that finds the follower fetching the
        # state waits for that answer instead of asking again (it is at least as new).
        with self._reload_lock:
            snap = self._snapshot
            if snap is not None and not force and not self._needs_reload():
                return snap
            writes_seen = _writes
            response = self._send("state", _STATE, _Request(_STATE.path))
            return self._install(self._finish("state", _STATE, response, {}, {}), writes_seen)

    async def _areload(self) -> Snapshot:
        writes_seen = _writes
        response = await self._asend("state", _STATE, _Request(_STATE.path))
        return self._install(self._finish("state", _STATE, response, {}, {}), writes_seen)

    def _local(self, snap: Snapshot, started: float, flow_id: str, agent: str, tool: str, tool_name: str | None,
               context: Mapping[str, Any] | None, enforce: bool) -> Decision:
        decision, _audit = decide_on(snap, DecisionKey("", flow_id, agent, tool, tool_name, enforce), context, started)
        self.stats["local"] += 1
        if len(self._audit) == self._audit.maxlen:
            self._audit_dropped += 1
        self._audit.append((decision, context))  # made into a record by the audit thread
        return decision

    def _decision_request(self, flow_id: str, agent: str, tool: str, tool_name: str | None,
                          context: Mapping[str, Any] | None, enforce: bool) -> _Request:
        return _Request(_DECIDE.path, body=_clean({"flowId": flow_id, "agent": agent, "tool": tool,
                                                   "toolName": tool_name, "context": _json_safe(context),
                                                   "enforce": enforce}))

    def _from_answer(self, data: Any, started: float) -> Decision:
        try:
            return Decision(
                allowed=bool(data["allowed"]), reason=Reason(data["reason"]), agent=data.get("agent"),
                tool=data.get("tool"), flow=data.get("flow"), revision=int(data.get("revision", -1)),
                latency_us=(time.perf_counter() - started) * 1e6, tool_name=data.get("toolName"),
                audit=bool(data.get("audit", False)), enforced=bool(data.get("enforced", True)),
                organization=data.get("organization"),
            )
        except Exception:
            raise AuthorityUnavailableError("the AZTP server gave an unusable decision") from None

    def _fallback(self, started: float, **kw: Any) -> Decision:
        self.stats["fallback"] += 1
        request = self._decision_request(**kw)
        try:
            response = self._client.request("POST", request.path, json=request.body, timeout=self.decision_timeout)
        except httpx.TransportError as exc:
            raise _unavailable(self.base_url, "decide", exc, idempotent=True) from None
        return self._from_answer(self._finish("decide", _DECIDE, response, {}, {}), started)

    async def _afallback(self, started: float, **kw: Any) -> Decision:
        self.stats["fallback"] += 1
        request = self._decision_request(**kw)
        try:
            response = await self._async_client().request("POST", request.path, json=request.body,
                                                          timeout=self.decision_timeout)
        except httpx.TransportError as exc:
            raise _unavailable(self.base_url, "decide", exc, idempotent=True) from None
        return self._from_answer(self._finish("decide", _DECIDE, response, {}, {}), started)

    def _current(self) -> Snapshot | None:
        """The replica, if decisions may be taken on it now: the feed was heard from within
        ``stale_after``, and the replica includes the feed's latest revision and every write
        acknowledged through this process."""
        snap = self._snapshot
        if (snap is None or time.monotonic() - self._heard > self.stale_after or self._loaded_writes != _writes
                or snap.revision < self._feed_revision or self._closed):
            return None
        return snap

    def decide(self, *, flow_id: str, agent: str, tool: str, tool_name: str | None = None,
               context: Mapping[str, Any] | None = None, enforce: bool = True) -> Decision:
        """The tool-call decision: local when the feed is fresh, else the server's; raises
        :class:`AuthorityUnavailableError` when neither can be had."""
        started = time.perf_counter()
        snap = self._current()
        if snap is None:
            self._check_open()
            self._ensure_threads()
            if self.feed_fresh():
                with contextlib.suppress(AztpError):
                    self._reload()
            snap = self._current()
            if snap is None:
                return self._fallback(started, flow_id=flow_id, agent=agent, tool=tool, tool_name=tool_name,
                                      context=context, enforce=enforce)
        return self._local(snap, started, flow_id, agent, tool, tool_name, context, enforce)

    async def adecide(self, *, flow_id: str, agent: str, tool: str, tool_name: str | None = None,
                      context: Mapping[str, Any] | None = None, enforce: bool = True) -> Decision:
        """:meth:`decide` on an event loop; any I/O it needs does not block the loop."""
        started = time.perf_counter()
        snap = self._current()
        if snap is None:
            self._check_open()
            self._ensure_threads()
            if self.feed_fresh():
                with contextlib.suppress(AztpError):
                    await self._areload()
            snap = self._current()
            if snap is None:
                return await self._afallback(started, flow_id=flow_id, agent=agent, tool=tool, tool_name=tool_name,
                                             context=context, enforce=enforce)
        return self._local(snap, started, flow_id, agent, tool, tool_name, context, enforce)

    def record_decision(self, decision: Decision, context: Mapping[str, Any] | None = None) -> None:
        """Queue a decision taken elsewhere in this process (e.g. a fail-closed denial) for the
        server's audit log; it is sent with the next batch once the server can be reached."""
        if len(self._audit) == self._audit.maxlen:
            self._audit_dropped += 1
        self._audit.append((decision, context))
        self._ensure_threads()

    # ================================================================= change feed

    def _follow(self) -> None:
        """Follow ``GET /v1/state/changes`` until closed, reconnecting with backoff."""
        delay = 0.05
        refused = False
        client = self._feed_client
        assert client is not None
        while not self._stop.is_set():
            try:
                with client.stream("GET", _FEED_PATH) as response:
                    if response.status_code != 200:
                        response.read()
                        err = _typed_error(response, "state changes")
                        (log.warning if not refused else log.debug)("change feed refused: %s", err)
                        refused = True
                        raise err
                    self._feed_connected = True
                    self._heard = time.monotonic()
                    delay = 0.05
                    self._on_connect()
                    event: list[str] = []
                    for line in response.iter_lines():
                        if self._stop.is_set():
                            return
                        if line == "":
                            if event:
                                self._on_event(event)
                                event = []
                            continue
                        if line.startswith(":"):  # comment: a keep-alive
                            self._heard = time.monotonic()
                            continue
                        event.append(line)
            except Exception as exc:
                if self._stop.is_set():
                    return
                log.debug("change feed interrupted: %s", type(exc).__name__)
            self._feed_connected = False
            self.stats["feed_reconnects"] += 1
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, max(0.5, min(2.0, self.stale_after / 2)))

    def _on_connect(self) -> None:
        try:
            self._reload(force=True)
        except AztpError as exc:
            log.debug("state reload failed: %s", type(exc).__name__)

    def _on_event(self, lines: list[str]) -> None:
        data = "\n".join(line[5:].lstrip() for line in lines if line.startswith("data:"))
        revision = None
        if data:
            try:
                revision = int(json.loads(data)["revision"])
            except (ValueError, KeyError, TypeError):
                revision = None
        self._heard = time.monotonic()
        self.stats["feed_events"] += 1
        if revision is None:
            return
        with self._lock:
            if revision > self._feed_revision:
                self._feed_revision = revision
                self._feed_revision_at = time.monotonic()
                stale = True
            else:
                snap = self._snapshot
                stale = snap is None or revision < snap.revision  # the server's state went back: re-read
                if stale:
                    self._feed_revision = revision
                    self._snapshot = None
        if stale:
            try:
                self._reload()
            except AztpError as exc:
                log.debug("state reload failed: %s", type(exc).__name__)

    # ================================================================= decision audit

    def _audit_loop(self) -> None:
        while not self._stop.is_set():
            self._audit_wake.wait(self.audit_interval)
            self._audit_wake.clear()
            self._flush_audit()

    def _flush_audit(self, timeout: float | None = None) -> None:
        while self._audit:
            batch: list[tuple[Decision, Mapping[str, Any] | None]] = []
            while self._audit and len(batch) < self.audit_batch:
                batch.append(self._audit.popleft())
            try:
                records = [_audit_record(d, c) for d, c in batch]
                response = self._client.request("POST", _DECISION_AUDIT.path, json={"decisions": records},
                                                timeout=timeout or self.timeout)
                if response.status_code >= 400:
                    log.warning("the server refused %d decision audit records: HTTP %d", len(batch),
                                response.status_code)
                else:
                    self.stats["audit_sent"] += len(batch)
            except httpx.TransportError as exc:
                # Not sent: put the records back (oldest first) and try again later.
                self._audit.extendleft(reversed(batch))
                log.debug("decision audit not sent yet: %s", type(exc).__name__)
                return
            except Exception as exc:  # never let the auditor die
                log.warning("decision audit failed: %s", type(exc).__name__)
                return
        if self._audit_dropped:
            self.stats["audit_dropped"] += self._audit_dropped
            log.warning("%d decision audit records were dropped (queue full)", self._audit_dropped)
            self._audit_dropped = 0

    # ================================================================= lifecycle

    def close(self) -> None:
        """Stop the feed and audit threads (sending queued decision records first) and close
        the HTTP clients."""
        if self._closed:
            return
        self._stop.set()
        self._audit_wake.set()
        if self._auditor is not None:
            self._auditor.join(timeout=2.0)
        if self._audit and not self._client.is_closed:
            with contextlib.suppress(Exception):
                self._flush_audit(timeout=2.0)
        self._closed = True
        if self._feed_client is not None:
            with contextlib.suppress(Exception):
                self._feed_client.close()
        if self._follower is not None and self._follower is not threading.current_thread():
            # It may be blocked reading the feed until the next heartbeat (<= 1 s); it is a
            # daemon thread and ends by itself then, so do not wait long for it.
            self._follower.join(timeout=0.3)
        self._client.close()
        with self._aclients_lock:
            clients = list(self._aclients.items())
            self._aclients.clear()
        for loop, client in clients:
            self._close_async(loop, client)

    @staticmethod
    def _close_async(loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient) -> None:
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

    async def aclose(self) -> None:
        """:meth:`close` from an event loop (closes this loop's client properly)."""
        loop = asyncio.get_running_loop()
        with self._aclients_lock:
            client = self._aclients.pop(loop, None)
        if client is not None:
            await client.aclose()
        await asyncio.to_thread(self.close)
