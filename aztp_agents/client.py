"""The :class:`Aztp` client: the official ``aztp-client`` API, embedded or remote.

``Aztp()`` runs the authority in-process on a SQLite file under ``home`` (else
``$AZTP_HOME``, else ``~/.aztp``). ``Aztp(api_key=..., base_url=...)`` talks to an
``aztp-agents serve`` server. Same methods, same answers.

Methods are coroutines and never block the event loop: embedded operations run in a worker
thread; remote ones use one pooled ``httpx.AsyncClient``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import anyio.to_thread

from .authority import Authority, Principal
from .decisions import Decision
from .errors import AuthenticationError, ValidationError
from .ids import AztpId
from .models import FlowRecord, Identity, IdentityRecord
from .policy import Outcome, evaluate, parse_document
from .store import Store

__all__ = ["Aztp", "Backend", "EmbeddedBackend", "SecuredAgent", "default_client", "resolve_home"]

log = logging.getLogger(__name__)


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """``home``, else ``$AZTP_HOME``, else ``~/.aztp``."""
    return Path(home or os.environ.get("AZTP_HOME") or Path.home() / ".aztp").expanduser()


class Backend(Protocol):
    """Where operations go: the in-process authority or a remote server."""

    def call(self, op: str, /, **kwargs: Any) -> Any: ...
    async def acall(self, op: str, /, **kwargs: Any) -> Any: ...
    def decide(self, *, flow_id: str, agent: str, tool: str, tool_name: str | None,
               context: Mapping[str, Any] | None, enforce: bool) -> Decision: ...
    async def adecide(self, *, flow_id: str, agent: str, tool: str, tool_name: str | None,
                      context: Mapping[str, Any] | None, enforce: bool) -> Decision: ...
    @property
    def is_remote(self) -> bool: ...
    def close(self) -> None: ...


_AUTHORITIES: dict[Path, Authority] = {}
_AUTHORITIES_LOCK = threading.Lock()


def _authority_for(home: Path, trust_domain: str | None) -> Authority:
    path = (home / "aztp.db").resolve()
    with _AUTHORITIES_LOCK:
        authority = _AUTHORITIES.get(path)
        if authority is None:
            authority = Authority(Store.open_sqlite(path), default_trust_domain=trust_domain or "aztp.local")
            _AUTHORITIES[path] = authority
        return authority


class EmbeddedBackend:
    """Operations on an in-process :class:`Authority`, as one principal."""

    is_remote = False

    def __init__(self, authority: Authority, principal: Principal) -> None:
        self.authority = authority
        self.principal = principal
        #: Where the guard's decisions go (no I/O while the state is in memory).
        self.decision_point = authority.decision_point(principal)

    def call(self, op: str, /, **kwargs: Any) -> Any:
        return getattr(self.authority, op)(self.principal, **kwargs)

    async def acall(self, op: str, /, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(functools.partial(self.call, op, **kwargs))

    def decide(self, *, flow_id: str, agent: str, tool: str, tool_name: str | None = None,
               context: Mapping[str, Any] | None = None, enforce: bool = True) -> Decision:
        return self.decision_point.decide(flow_id=flow_id, agent=agent, tool=tool, tool_name=tool_name,
                                          context=context, enforce=enforce)

    async def adecide(self, **kwargs: Any) -> Decision:
        # No I/O on the loop: the state is in memory (change detection notices other
        # processes' writes) and the audit record is queued. A reload runs in a thread.
        return await self.decision_point.adecide(**kwargs)

    def record_decision(self, decision: Decision, context: Mapping[str, Any] | None = None) -> None:
        """Audit a decision the enforcement point took itself (a fail-closed denial)."""
        self.decision_point.record_decision(decision, context)

    def close(self) -> None:
        return None


class SecuredAgent:
    """What ``secure_connect`` returns: the original agent plus its ``identity``.

    Attribute access falls through to the wrapped agent; its coroutine methods verify the
    identity first (as the official client's ``SecureConnection`` does).
    """

    def __init__(self, agent: Any, identity: Identity, client: Aztp, name: str) -> None:
        self._agent = agent
        self.identity = identity
        self.name = name
        self._client = client

    async def verify(self, identity_flow_id: str | None = None) -> bool:
        return await self._client.verify_identity(self, identity_flow_id)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        attr = getattr(self._agent, name)
        if callable(attr) and asyncio.iscoroutinefunction(attr):
            @functools.wraps(attr)
            async def guarded(*args: Any, **kwargs: Any) -> Any:
                if not await self.verify():
                    raise PermissionError(f"identity verification failed for {self.identity.aztp_id}")
                return await attr(*args, **kwargs)
            return guarded
        return attr

    def __repr__(self) -> str:
        return f"SecuredAgent(aztp_id={self.identity.aztp_id!r}, valid={self.identity.valid})"


def _envelope(data: Any, message: str) -> str:
    return json.dumps({"success": True, "message": message, "data": data}, indent=2)


def _need_aztp(value: Any, what: str = "aztp_id") -> str:
    if not isinstance(value, str) or not value.startswith("aztp://"):
        raise ValidationError(f"{what} must be a full AZTP ID starting with 'aztp://', got {value!r}")
    return value


class Aztp:
    """AZTP client. ``Aztp()`` is embedded; ``Aztp(api_key=..., base_url=...)`` is remote."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        environment: str | None = None,
        timeout: float | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        trust_domain: str | None = None,
        verify: bool | str = True,
        user: str | None = None,
        backend: Backend | None = None,
    ) -> None:
        self.environment = environment or "production"
        self.trust_domain = trust_domain
        if backend is not None:
            self.backend: Backend = backend
        elif base_url:
            from .remote import RemoteBackend

            self.backend = RemoteBackend(base_url, api_key=api_key, timeout=timeout or 10.0, verify=verify)
        else:
            self.home = resolve_home(home)
            authority = _authority_for(self.home, trust_domain)
            if api_key:
                try:
                    principal = authority.authenticate(api_key)
                except AuthenticationError as exc:
                    raise AuthenticationError(
                        f"{exc.message} for the embedded authority at {self.home}: omit api_key for the "
                        "local organization, use a live key made with 'aztp-agents keys create', or pass "
                        "base_url= to talk to a server"
                    ) from None
            elif user:
                principal = authority.principal_for(authority.org_by_name("local"), user)
            else:
                principal = authority.local_principal()
            self.backend = EmbeddedBackend(authority, principal)

    def __repr__(self) -> str:
        where = "remote" if self.backend.is_remote else f"embedded home={getattr(self, 'home', '?')}"
        return f"Aztp({where})"

    @property
    def is_remote(self) -> bool:
        return self.backend.is_remote

    @property
    def sync(self) -> _SyncClient:
        """The same methods, blocking: ``client.sync.revoke_identity(aztp_id)``. For code that
        is not async (tool bodies, task callbacks, scripts). Inside a running event loop,
        ``await`` the async methods instead."""
        return _SyncClient(self)

    async def _call(self, op: str, **kwargs: Any) -> Any:
        return await self.backend.acall(op, **kwargs)

    def close(self) -> None:
        self.backend.close()

    async def __aenter__(self) -> Aztp:
        return self

    async def __aexit__(self, *exc: object) -> None:
        aclose = getattr(self.backend, "aclose", None)
        if aclose is not None:
            await aclose()
        else:
            self.close()

    # ----------------------------------------------------------------- identities

    async def secure_connect(
        self, crew_agent: object | None = None, name: str | None = None, config: Mapping[str, Any] | None = None
    ) -> SecuredAgent:
        """Issue (or re-connect) the identity ``name`` and wrap ``crew_agent`` with it."""
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise ValidationError("config must be a dict like {'isGlobalIdentity': False}")
        if not name:
            raise ValidationError("name is required: secure_connect(agent, 'my-agent', config={})")
        kwargs = self._issue_kwargs(name, config)
        answer = await self._call("secure_connect", **kwargs)
        return self._secured(crew_agent, name, answer)

    def _issue_kwargs(self, name: str, config: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "is_global": config.get("isGlobalIdentity", False),
            "trust_domain": config.get("trustDomain") or self.trust_domain,
            "parent_identity": config.get("parentIdentity"),
            "environment": config.get("environment") or self.environment,
        }

    def _secured(self, crew_agent: object, name: str, answer: Mapping[str, Any]) -> SecuredAgent:
        doc = answer["identity"]
        identity = Identity(
            aztp_id=doc["aztpId"], workload_id=doc["workloadInfo"]["workloadId"], valid=bool(answer.get("valid")),
            status=doc["status"], certificate=answer.get("certificate", ""), private_key=answer.get("privateKey", ""),
            ca_certificate=answer.get("caCertificate", ""), spiffe_id=AztpId.parse(doc["aztpId"]).spiffe_id,
            expires_at=answer.get("expiresAt"),
        )
        return SecuredAgent(crew_agent, identity, self, name)

    def secure_connect_sync(self, crew_agent: object | None = None, name: str | None = None,
                            config: Mapping[str, Any] | None = None) -> SecuredAgent:
        """Blocking :meth:`secure_connect`, for synchronous callers (framework adapters)."""
        if not name:
            raise ValidationError("name is required")
        answer = self.backend.call("secure_connect", **self._issue_kwargs(name, dict(config or {})))
        return self._secured(crew_agent, name, answer)

    async def verify_identity(self, agent: SecuredAgent, identity_flow_id: str | None = None) -> bool:
        if not getattr(agent, "identity", None) or not agent.identity.valid:
            return False
        return await self.verify_identity_by_aztp_id(agent.identity.aztp_id, identity_flow_id)

    async def verify_identity_by_aztp_id(self, aztp_id: str, identity_flow_id: str | None = None) -> bool:
        answer = await self._call("verify_identity", aztp_id=_need_aztp(aztp_id), flow_id=identity_flow_id)
        return bool(answer["valid"])

    async def verify(self, aztp_id: str, identity_flow_id: str | None = None) -> dict[str, Any]:
        """Like :meth:`verify_identity_by_aztp_id` but with the reason and message."""
        return dict(await self._call("verify_identity", aztp_id=_need_aztp(aztp_id), flow_id=identity_flow_id))

    async def verify_identity_using_agent_name(
        self, name: str, trust_domain: str = "aztp.network", workload: str = "workload",
        environment: str = "production", method: str = "node",
    ) -> bool:
        aztp_id = name if name.startswith("aztp://") else f"aztp://{trust_domain}/{workload}/{environment}/{method}/{name}"
        return await self.verify_identity_by_aztp_id(aztp_id)

    async def verify_authorize_identity_connection(
        self, fromAgentID: str | None = None, toAgentID: str | None = None, policyCode: str | None = None,
        *, from_aztp_id: str | None = None, to_aztp_id: str | None = None, policy_code: str | None = None,
    ) -> bool:
        source = _need_aztp(fromAgentID or from_aztp_id, "from_aztp_id")
        target = _need_aztp(toAgentID or to_aztp_id, "to_aztp_id")
        answer = await self._call("authorize_connection", source=source, target=target, policy_code=policyCode or policy_code)
        return bool(answer["valid"])

    async def authorize(self, from_aztp_id: str, to_aztp_id: str, policy_code: str | None = None) -> dict[str, Any]:
        """Like :meth:`verify_authorize_identity_connection` but with the reason (``no_link``,
        ``policy_denied``, ...) and message."""
        return dict(await self._call("authorize_connection", source=_need_aztp(from_aztp_id, "from_aztp_id"),
                                     target=_need_aztp(to_aztp_id, "to_aztp_id"), policy_code=policy_code))

    async def verify_credential(self, certificate_pem: str) -> dict[str, Any]:
        """Live check of an X.509-SVID: it chains to the organization's CA, its identity is
        active, and it was issued after the identity's last reissue (offline verifiers cannot
        know the last two)."""
        if not isinstance(certificate_pem, str) or "BEGIN CERTIFICATE" not in certificate_pem:
            raise ValidationError("certificate_pem must be a PEM certificate")
        return dict(await self._call("verify_credential", cert_pem=certificate_pem))

    async def get_identity(self, agent: SecuredAgent) -> str | None:
        """The identity document as a JSON string ``{"success", "message", "data"}``."""
        if not getattr(agent, "identity", None):
            return None
        doc = await self._call("get_identity", aztp_id=agent.identity.aztp_id)
        return _envelope(doc, "Workload identity found successfully")

    async def get_identity_by_name(self, name: str) -> str:
        doc = await self._call("get_identity_by_name", name=name)
        return _envelope(doc, "Workload identity found successfully")

    async def get_identity_by_aztp_id(self, aztp_id: str) -> str:
        doc = await self._call("get_identity", aztp_id=_need_aztp(aztp_id))
        return _envelope(doc, "Workload identity found successfully")

    async def identity(self, aztp_id: str) -> IdentityRecord:
        """Typed identity record."""
        return IdentityRecord.model_validate(await self._call("get_identity", aztp_id=_need_aztp(aztp_id)))

    async def list_identities(self) -> list[dict[str, Any]]:
        return list(await self._call("list_identities"))

    async def discover_identity(self, trust_domain: str | None = None, requestor_identity: str | None = None) -> str:
        docs = await self._call("discover", trust_domain=trust_domain, requestor=requestor_identity)
        return _envelope(docs, f"{len(docs)} discoverable identities")

    async def revoke_identity(self, aztp_id: str, reason: str | None = None) -> str:
        return json.dumps(await self._call("revoke_identity", aztp_id=_need_aztp(aztp_id), reason=reason), indent=2)

    async def reissue_identity(self, aztp_id: str) -> str:
        answer = dict(await self._call("reissue_identity", aztp_id=_need_aztp(aztp_id)))
        answer.pop("privateKey", None)  # never serialized; use issue_credential() for a key
        return json.dumps(answer, indent=2)

    async def issue_credential(self, aztp_id: str, *, ttl: int = 3600) -> Identity:
        """A fresh X.509-SVID (and key) for an active identity."""
        doc = await self._call("get_identity", aztp_id=_need_aztp(aztp_id))
        answer = await self._call("issue_credential", aztp_id=aztp_id, ttl=ttl)
        return self._secured(None, doc["name"], {**answer, "identity": doc, "valid": True}).identity

    async def fetch_jwt_svid(self, aztp_id: str, audience: str | Sequence[str], *, ttl: int = 300) -> str:
        answer = await self._call("fetch_jwt_svid", aztp_id=_need_aztp(aztp_id), audience=audience, ttl=ttl)
        return str(answer["token"])

    async def get_trust_bundle(self, trust_domain: str | None = None) -> dict[str, Any]:
        return dict(await self._call("trust_bundle", trust_domain=trust_domain))

    # ----------------------------------------------------------------- links

    async def link_identities(self, source_identity: str, target_identity: str, relationship_type: str = "linked",
                              metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return dict(await self._call("link_identities", source=_need_aztp(source_identity, "source_identity"),
                                     target=_need_aztp(target_identity, "target_identity"),
                                     relationship_type=relationship_type, metadata=metadata))

    async def unlink_identities(self, source_identity: str, target_identity: str,
                                relationship_type: str | None = None) -> dict[str, Any]:
        return dict(await self._call("unlink_identities", source=_need_aztp(source_identity, "source_identity"),
                                     target=_need_aztp(target_identity, "target_identity"),
                                     relationship_type=relationship_type))

    # ----------------------------------------------------------------- policies

    async def create_policy(self, name: str, document: Mapping[str, Any], code: str | None = None) -> dict[str, Any]:
        return dict(await self._call("create_policy", name=name, document=document, code=code))

    async def attach_policy(self, aztp_id: str, code: str) -> dict[str, Any]:
        return dict(await self._call("attach_policy", aztp_id=_need_aztp(aztp_id), code=code))

    async def detach_policy(self, aztp_id: str, code: str) -> dict[str, Any]:
        return dict(await self._call("detach_policy", aztp_id=_need_aztp(aztp_id), code=code))

    async def get_policy(self, aztp_id: str) -> list[dict[str, Any]]:
        return list(await self._call("get_policies", aztp_id=_need_aztp(aztp_id)))

    @staticmethod
    def get_policy_value(policies: Sequence[Mapping[str, Any]], filter_key: str, filter_value: str) -> dict[str, Any] | None:
        for policy in policies:
            if policy.get(filter_key) == filter_value:
                return policy.get("policyStatement")
        return None

    @staticmethod
    def is_action_allowed(policy: Mapping[str, Any] | None, action: str) -> bool:
        """Whether ``policy`` allows ``action``: an explicit Deny wins (unlike the official
        client, which ignores Deny); Allow or Audit allows; nothing matching is not an allow."""
        if not policy or "Statement" not in policy:
            return False
        try:
            doc = parse_document(policy)
        except ValidationError:
            return False
        return evaluate(doc.statement, action).outcome is Outcome.ALLOW

    async def check_identity_policy_permissions(self, aztp_id: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        if options is not None and not isinstance(options, Mapping):
            raise ValidationError("options must be a dict like {'policy_code': 'policy:...', 'actions': ['read']}")
        opts = dict(options or {})
        return dict(await self._call(
            "check_permissions", aztp_id=_need_aztp(aztp_id),
            policy_code=opts.get("policy_code") or opts.get("policyCode"), actions=opts.get("actions"),
            trust_domain=opts.get("trust_domain") or opts.get("trustDomain"),
        ))

    async def oiap_evaluate(self, aztp_id: str, requested_resource: str, user_id: str) -> dict[str, Any]:
        return dict(await self._call("oiap_evaluate", aztp_id=_need_aztp(aztp_id),
                                     requested_resource=requested_resource, user_id=user_id))

    # ----------------------------------------------------------------- flows

    async def flow_health(self) -> dict[str, Any]:
        """Whether the flow service is up (the official client's meaning)."""
        if self.backend.is_remote:
            return dict(await self._call("service_health"))
        return {"success": True, "message": "Identity flow service is healthy", "data": {"status": "healthy", "mode": "embedded"}}

    async def get_flow_health(self, flow_id: str) -> dict[str, Any]:
        """Per-flow health: share of members valid in the flow (healthy >= 90 %, warning >= 70 %)."""
        return dict(await self._call("flow_health", flow_id=flow_id))

    async def create_flow(self, name: str, description: str | None = None, discoverable: str = "public",
                          tags: Sequence[str] | None = None, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
        if not name:
            raise ValidationError("name is required")
        return dict(await self._call("create_flow", name=name, description=description, discoverable=discoverable,
                                     tags=tags, metadata=metadata))

    async def update_flow(self, flow_id: str, name: str | None = None, description: str | None = None,
                          discoverable: str | None = None, tags: Sequence[str] | None = None,
                          metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return dict(await self._call("update_flow", flow_id=flow_id, name=name, description=description,
                                     discoverable=discoverable, tags=tags, metadata=metadata))

    async def delete_flow(self, flow_id: str) -> dict[str, Any]:
        return dict(await self._call("delete_flow", flow_id=flow_id))

    async def get_flow(self, flow_id: str) -> dict[str, Any]:
        return dict(await self._call("get_flow", flow_id=flow_id))

    async def flow(self, flow_id: str) -> FlowRecord:
        """Typed flow record."""
        return FlowRecord.model_validate(await self._call("get_flow", flow_id=flow_id))

    async def list_flows(self) -> list[dict[str, Any]]:
        return list(await self._call("list_flows"))

    async def add_identity_to_flow(self, identity_flow_id: str, aztp_id: str) -> dict[str, Any]:
        return dict(await self._call("add_identity_to_flow", flow_id=identity_flow_id, aztp_id=_need_aztp(aztp_id)))

    async def remove_identity_from_flow(self, identity_flow_id: str, aztp_id: str) -> dict[str, Any]:
        return dict(await self._call("remove_identity_from_flow", flow_id=identity_flow_id, aztp_id=_need_aztp(aztp_id)))

    async def revoke_flow_identity(self, aztp_id: str, identity_flow_id: str, reason: str | None = None) -> dict[str, Any]:
        return dict(await self._call("revoke_flow_identity", aztp_id=_need_aztp(aztp_id), flow_id=identity_flow_id, reason=reason))

    async def reinstate_flow_identity(self, aztp_id: str, identity_flow_id: str) -> dict[str, Any]:
        return dict(await self._call("reinstate_flow_identity", aztp_id=_need_aztp(aztp_id), flow_id=identity_flow_id))

    # ----------------------------------------------------------------- federation

    async def federate(self, trust_domain: str) -> dict[str, Any]:
        """Trust another organization's trust domain. Cross-domain connections are authorized
        only once both organizations trust each other (and a link, and the policy, allow it)."""
        return dict(await self._call("federate", trust_domain=trust_domain))

    async def unfederate(self, trust_domain: str) -> dict[str, Any]:
        """Withdraw that trust; cross-domain authorization fails again at once."""
        return dict(await self._call("unfederate", trust_domain=trust_domain))

    # ----------------------------------------------------------------- audit

    async def audit(self, limit: int | None = None, action: str | None = None) -> list[dict[str, Any]]:
        entries = await self._call("audit_entries", limit=limit, action=action)
        return [e if isinstance(e, dict) else e.model_dump() for e in entries]

    async def verify_audit(self) -> dict[str, Any]:
        report = await self._call("verify_audit")
        return report if isinstance(report, dict) else report.to_dict()


class _SyncClient:
    """Blocking view of an :class:`Aztp` (see :attr:`Aztp.sync`)."""

    def __init__(self, client: Aztp) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not asyncio.iscoroutinefunction(method):
            return method

        @functools.wraps(method)
        def blocking(*args: Any, **kwargs: Any) -> Any:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(method(*args, **kwargs))
            raise RuntimeError(
                f"client.sync.{name}() was called inside a running event loop, where it would block "
                f"the loop: use 'await client.{name}(...)' instead"
            )

        return blocking


_DEFAULT: Aztp | None = None
_DEFAULT_LOCK = threading.Lock()


def default_client() -> Aztp:
    """The process-wide embedded client adapters use when given none."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Aztp()
        return _DEFAULT
