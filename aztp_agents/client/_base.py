"""What :class:`~aztp_agents.Aztp` and :class:`~aztp_agents.client.SyncAztp` share: choosing
the backend, checking arguments and typing results — everything but the I/O.

Each client method has one plan here (``_<method>``, see :mod:`._plan`): it checks the
arguments, yields the backend operations it needs and turns their answers into the method's
result (the official client's JSON strings, dicts, or typed models). The two clients run the
same plans, one with blocking backend calls, one with coroutines.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..config import AztpConfig
from ..enrollment_cache import EnrollmentCache
from ..errors import ValidationError
from ..ids import AztpId
from ..policy import authorize, parse_document, requested_actions
from ..wire import FlowRecord, Identity, IdentityRecord
from ._backend import Backend
from ._embedded import open_embedded, resolve_home
from ._plan import Call, Plan
from ._secured_agent import SecuredAgent

__all__ = ["ClientBase"]

C = TypeVar("C", bound="ClientBase")

_FOUND = "Workload identity found successfully"


def _call(op: str, /, **kwargs: Any) -> Call:
    return Call(op, kwargs)


def _envelope(data: Any, message: str) -> str:
    return json.dumps({"success": True, "message": message, "data": data}, indent=2)


def _need_aztp(value: Any, what: str = "aztp_id") -> str:
    if not isinstance(value, str) or not value.startswith("aztp://"):
        raise ValidationError(
            f"{what} must be a full AZTP ID starting with 'aztp://', got {value!r}"
        )
    return value


class ClientBase:
    """AZTP client state and plans. ``ClientBase()`` is embedded; with ``api_key`` and
    ``base_url`` it is remote; ``backend`` gives any :class:`Backend`."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | Sequence[str] | None = None,
        environment: str | None = None,
        timeout: float | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        trust_domain: str | None = None,
        verify: bool | str = True,
        user: str | None = None,
        database_url: str | None = None,
        backend: Backend | None = None,
    ) -> None:
        self.environment = environment or "production"
        self.trust_domain = trust_domain
        #: The embedded authority's folder (None for a remote or given backend).
        self.home: Path | None = None
        #: The embedded authority's database when it is not the SQLite file under ``home``.
        self.database_url: str | None = None
        #: What guards on this client enrolled (securing the same crew shape again costs no
        #: write: :mod:`aztp_agents.enrollment_cache`).
        self.enrollments = EnrollmentCache()
        if backend is not None:
            self.backend: Backend = backend
            return
        # The environment, read now and the same way as the CLI and ``default_client`` read
        # it; an explicit ``home`` means the embedded store even when ``AZTP_URL`` is set.
        config = AztpConfig.from_env()
        if base_url is None and home is None and database_url is None:
            base_url = config.url
            database_url = config.database_url
        if base_url:
            from ._remote import RemoteBackend

            self.backend = RemoteBackend(
                base_url, api_key=api_key or config.api_key, timeout=timeout or 10.0, verify=verify
            )
        else:
            self.home = resolve_home(home or config.home)
            self.database_url = None if home is not None else database_url
            self.backend = open_embedded(
                self.home,
                trust_domain,
                api_key=api_key,
                user=user,
                database_url=self.database_url,
            )

    def __repr__(self) -> str:
        where = (
            "remote"
            if self.backend.is_remote
            else f"embedded database={self.database_url.split('@')[-1]}"
            if self.database_url
            else f"embedded home={self.home or '?'}"
        )
        return f"{type(self).__name__}({where})"

    @property
    def is_remote(self) -> bool:
        return self.backend.is_remote

    def close(self) -> None:
        self.backend.close()

    def _sibling(self, cls: type[C]) -> C:
        """A client of the other kind over the same backend and settings."""
        other = cls(
            environment=self.environment, trust_domain=self.trust_domain, backend=self.backend
        )
        other.home = self.home
        return other

    # ----------------------------------------------------------------- identities

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
            aztp_id=doc["aztpId"],
            workload_id=doc["workloadInfo"]["workloadId"],
            valid=bool(answer.get("valid")),
            status=doc["status"],
            certificate=answer.get("certificate", ""),
            private_key=answer.get("privateKey", ""),
            ca_certificate=answer.get("caCertificate", ""),
            spiffe_id=AztpId.parse(doc["aztpId"]).spiffe_id,
            expires_at=answer.get("expiresAt"),
        )
        return SecuredAgent(crew_agent, identity, self, name)

    def _secure_connect(
        self, crew_agent: object | None, name: str | None, config: Mapping[str, Any] | None
    ) -> Plan[SecuredAgent]:
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise ValidationError("config must be a dict like {'isGlobalIdentity': False}")
        if not name:
            raise ValidationError("name is required: secure_connect(agent, 'my-agent', config={})")
        answer = yield _call("secure_connect", **self._issue_kwargs(name, config))
        return self._secured(crew_agent, name, answer)

    def _verify_identity(self, agent: SecuredAgent, identity_flow_id: str | None) -> Plan[bool]:
        if not getattr(agent, "identity", None) or not agent.identity.valid:
            return False
        return (
            yield from self._verify_identity_by_aztp_id(agent.identity.aztp_id, identity_flow_id)
        )

    def _verify_identity_by_aztp_id(self, aztp_id: str, identity_flow_id: str | None) -> Plan[bool]:
        answer = yield _call(
            "verify_identity", aztp_id=_need_aztp(aztp_id), flow_id=identity_flow_id
        )
        return bool(answer["valid"])

    def _verify(self, aztp_id: str, identity_flow_id: str | None) -> Plan[dict[str, Any]]:
        return dict(
            (yield _call("verify_identity", aztp_id=_need_aztp(aztp_id), flow_id=identity_flow_id))
        )

    def _verify_identity_using_agent_name(
        self, name: str, trust_domain: str, workload: str, environment: str, method: str
    ) -> Plan[bool]:
        aztp_id = (
            name
            if name.startswith("aztp://")
            else f"aztp://{trust_domain}/{workload}/{environment}/{method}/{name}"
        )
        return (yield from self._verify_identity_by_aztp_id(aztp_id, None))

    def _verify_authorize_identity_connection(
        self, source: str | None, target: str | None, policy_code: str | None
    ) -> Plan[bool]:
        answer = yield from self._authorize(source, target, policy_code)
        return bool(answer["valid"])

    def _authorize(
        self, source: str | None, target: str | None, policy_code: str | None
    ) -> Plan[dict[str, Any]]:
        return dict(
            (
                yield _call(
                    "authorize_connection",
                    source=_need_aztp(source, "from_aztp_id"),
                    target=_need_aztp(target, "to_aztp_id"),
                    policy_code=policy_code,
                )
            )
        )

    def _verify_credential(self, certificate_pem: str) -> Plan[dict[str, Any]]:
        if not isinstance(certificate_pem, str) or "BEGIN CERTIFICATE" not in certificate_pem:
            raise ValidationError("certificate_pem must be a PEM certificate")
        return dict((yield _call("verify_credential", cert_pem=certificate_pem)))

    def _get_identity(self, agent: SecuredAgent) -> Plan[str | None]:
        if not getattr(agent, "identity", None):
            return None
        return _envelope((yield _call("get_identity", aztp_id=agent.identity.aztp_id)), _FOUND)

    def _get_identity_by_name(self, name: str) -> Plan[str]:
        return _envelope((yield _call("get_identity_by_name", name=name)), _FOUND)

    def _get_identity_by_aztp_id(self, aztp_id: str) -> Plan[str]:
        return _envelope((yield _call("get_identity", aztp_id=_need_aztp(aztp_id))), _FOUND)

    def _identity(self, aztp_id: str) -> Plan[IdentityRecord]:
        return IdentityRecord.model_validate(
            (yield _call("get_identity", aztp_id=_need_aztp(aztp_id)))
        )

    def _list_identities(self) -> Plan[list[dict[str, Any]]]:
        return list((yield _call("list_identities")))

    def _discover_identity(
        self, trust_domain: str | None, requestor_identity: str | None
    ) -> Plan[str]:
        docs = yield _call("discover", trust_domain=trust_domain, requestor=requestor_identity)
        return _envelope(docs, f"{len(docs)} discoverable identities")

    def _revoke_identity(self, aztp_id: str, reason: str | None) -> Plan[str]:
        return json.dumps(
            (yield _call("revoke_identity", aztp_id=_need_aztp(aztp_id), reason=reason)), indent=2
        )

    def _reissue_identity(self, aztp_id: str) -> Plan[str]:
        answer = dict((yield _call("reissue_identity", aztp_id=_need_aztp(aztp_id))))
        answer.pop("privateKey", None)  # never serialized; use issue_credential() for a key
        return json.dumps(answer, indent=2)

    def _issue_credential(self, aztp_id: str, ttl: int) -> Plan[Identity]:
        doc = yield _call("get_identity", aztp_id=_need_aztp(aztp_id))
        answer = yield _call("issue_credential", aztp_id=aztp_id, ttl=ttl)
        return self._secured(None, doc["name"], {**answer, "identity": doc, "valid": True}).identity

    def _fetch_jwt_svid(self, aztp_id: str, audience: str | Sequence[str], ttl: int) -> Plan[str]:
        answer = yield _call(
            "fetch_jwt_svid", aztp_id=_need_aztp(aztp_id), audience=audience, ttl=ttl
        )
        return str(answer["token"])

    def _get_trust_bundle(self, trust_domain: str | None) -> Plan[dict[str, Any]]:
        return dict((yield _call("trust_bundle", trust_domain=trust_domain)))

    # ----------------------------------------------------------------- links

    def _link_identities(
        self,
        source_identity: str,
        target_identity: str,
        relationship_type: str,
        metadata: Mapping[str, Any] | None,
    ) -> Plan[dict[str, Any]]:
        return dict(
            (
                yield _call(
                    "link_identities",
                    source=_need_aztp(source_identity, "source_identity"),
                    target=_need_aztp(target_identity, "target_identity"),
                    relationship_type=relationship_type,
                    metadata=metadata,
                )
            )
        )

    def _unlink_identities(
        self,
        source_identity: str,
        target_identity: str,
        relationship_type: str | None,
        reason: str | None = None,
    ) -> Plan[dict[str, Any]]:
        return dict(
            (
                yield _call(
                    "unlink_identities",
                    source=_need_aztp(source_identity, "source_identity"),
                    target=_need_aztp(target_identity, "target_identity"),
                    relationship_type=relationship_type,
                    reason=reason,
                )
            )
        )

    def _restore_link(
        self, source_identity: str, target_identity: str, relationship_type: str | None
    ) -> Plan[dict[str, Any]]:
        return dict(
            (
                yield _call(
                    "restore_link",
                    source=_need_aztp(source_identity, "source_identity"),
                    target=_need_aztp(target_identity, "target_identity"),
                    relationship_type=relationship_type,
                )
            )
        )

    def _list_link_removals(self, aztp_id: str | None) -> Plan[list[dict[str, Any]]]:
        aztp = None if aztp_id is None else _need_aztp(aztp_id)
        return list((yield _call("list_link_removals", aztp_id=aztp)))

    def _list_links(self, aztp_id: str | None) -> Plan[list[dict[str, Any]]]:
        aztp = None if aztp_id is None else _need_aztp(aztp_id)
        return list((yield _call("list_links", aztp_id=aztp)))

    # ----------------------------------------------------------------- policies

    def _create_policy(
        self, name: str, document: Mapping[str, Any], code: str | None
    ) -> Plan[dict[str, Any]]:
        return dict((yield _call("create_policy", name=name, document=document, code=code)))

    def _attach_policy(self, aztp_id: str, code: str) -> Plan[dict[str, Any]]:
        return dict((yield _call("attach_policy", aztp_id=_need_aztp(aztp_id), code=code)))

    def _detach_policy(self, aztp_id: str, code: str) -> Plan[dict[str, Any]]:
        return dict((yield _call("detach_policy", aztp_id=_need_aztp(aztp_id), code=code)))

    def _list_policies(self) -> Plan[list[dict[str, Any]]]:
        return list((yield _call("list_policies")))

    def _get_policy(self, aztp_id: str) -> Plan[list[dict[str, Any]]]:
        return list((yield _call("get_policies", aztp_id=_need_aztp(aztp_id))))

    @staticmethod
    def get_policy_value(
        policies: Sequence[Mapping[str, Any]], filter_key: str, filter_value: str
    ) -> dict[str, Any] | None:
        for policy in policies:
            if policy.get(filter_key) == filter_value:
                return policy.get("policyStatement")
        return None

    @staticmethod
    def is_action_allowed(policy: Mapping[str, Any] | None, action: str) -> bool:
        """Whether ``policy`` allows ``action``: an explicit Deny wins (unlike the official
        client, which ignores Deny); Allow or Audit allows; nothing matching is not an allow.
        The rule the tool-call decision uses (:func:`aztp_agents.policy.authorize`), with
        ``tool:NAME`` asked as a call of tool NAME is (``tool:invoke`` too)."""
        if not policy or "Statement" not in policy:
            return False
        try:
            doc = parse_document(policy)
        except ValidationError:
            return False
        # A document with no statement allows nothing (it is not "no policy attached").
        return bool(doc.statement) and authorize(doc.statement, requested_actions(action)).allowed

    def _check_identity_policy_permissions(
        self, aztp_id: str, options: Mapping[str, Any] | None
    ) -> Plan[dict[str, Any]]:
        if options is not None and not isinstance(options, Mapping):
            raise ValidationError(
                "options must be a dict like {'policy_code': 'policy:...', 'actions': ['read']}"
            )
        opts = dict(options or {})
        return dict(
            (
                yield _call(
                    "check_permissions",
                    aztp_id=_need_aztp(aztp_id),
                    policy_code=opts.get("policy_code") or opts.get("policyCode"),
                    actions=opts.get("actions"),
                    trust_domain=opts.get("trust_domain") or opts.get("trustDomain"),
                    resource=opts.get("resource"),
                )
            )
        )

    def _oiap_evaluate(
        self, aztp_id: str, requested_resource: str, user_id: str
    ) -> Plan[dict[str, Any]]:
        return dict(
            (
                yield _call(
                    "oiap_evaluate",
                    aztp_id=_need_aztp(aztp_id),
                    requested_resource=requested_resource,
                    user_id=user_id,
                )
            )
        )

    # ----------------------------------------------------------------- flows

    def _flow_health(self) -> Plan[dict[str, Any]]:
        if self.backend.is_remote:
            return dict((yield _call("service_health")))
        return {
            "success": True,
            "message": "Identity flow service is healthy",
            "data": {"status": "healthy", "mode": "embedded"},
        }

    def _get_flow_health(self, flow_id: str) -> Plan[dict[str, Any]]:
        return dict((yield _call("flow_health", flow_id=flow_id)))

    def _create_flow(
        self,
        name: str,
        description: str | None,
        discoverable: str,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
    ) -> Plan[dict[str, Any]]:
        if not name:
            raise ValidationError("name is required")
        return dict(
            (
                yield _call(
                    "create_flow",
                    name=name,
                    description=description,
                    discoverable=discoverable,
                    tags=tags,
                    metadata=metadata,
                )
            )
        )

    def _update_flow(
        self,
        flow_id: str,
        name: str | None,
        description: str | None,
        discoverable: str | None,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
    ) -> Plan[dict[str, Any]]:
        return dict(
            (
                yield _call(
                    "update_flow",
                    flow_id=flow_id,
                    name=name,
                    description=description,
                    discoverable=discoverable,
                    tags=tags,
                    metadata=metadata,
                )
            )
        )

    def _delete_flow(self, flow_id: str) -> Plan[dict[str, Any]]:
        return dict((yield _call("delete_flow", flow_id=flow_id)))

    def _ensure_flow(
        self, name: str, discoverable: str, description: str | None
    ) -> Plan[dict[str, Any]]:
        if not name:
            raise ValidationError("name is required")
        return dict(
            (
                yield _call(
                    "ensure_flow", name=name, discoverable=discoverable, description=description
                )
            )
        )

    def _get_flow(self, flow_id: str) -> Plan[dict[str, Any]]:
        return dict((yield _call("get_flow", flow_id=flow_id)))

    def _flow(self, flow_id: str) -> Plan[FlowRecord]:
        return FlowRecord.model_validate((yield _call("get_flow", flow_id=flow_id)))

    def _list_flows(self) -> Plan[list[dict[str, Any]]]:
        return list((yield _call("list_flows")))

    def _add_identity_to_flow(self, identity_flow_id: str, aztp_id: str) -> Plan[dict[str, Any]]:
        return dict(
            (
                yield _call(
                    "add_identity_to_flow", flow_id=identity_flow_id, aztp_id=_need_aztp(aztp_id)
                )
            )
        )

    def _remove_identity_from_flow(
        self, identity_flow_id: str, aztp_id: str
    ) -> Plan[dict[str, Any]]:
        return dict(
            (
                yield _call(
                    "remove_identity_from_flow",
                    flow_id=identity_flow_id,
                    aztp_id=_need_aztp(aztp_id),
                )
            )
        )

    def _revoke_flow_identity(
        self, aztp_id: str, identity_flow_id: str, reason: str | None
    ) -> Plan[dict[str, Any]]:
        return dict(
            (
                yield _call(
                    "revoke_flow_identity",
                    aztp_id=_need_aztp(aztp_id),
                    flow_id=identity_flow_id,
                    reason=reason,
                )
            )
        )

    def _reinstate_flow_identity(self, aztp_id: str, identity_flow_id: str) -> Plan[dict[str, Any]]:
        return dict(
            (
                yield _call(
                    "reinstate_flow_identity", aztp_id=_need_aztp(aztp_id), flow_id=identity_flow_id
                )
            )
        )

    # ----------------------------------------------------------------- federation

    def _federate(self, trust_domain: str) -> Plan[dict[str, Any]]:
        return dict((yield _call("federate", trust_domain=trust_domain)))

    def _unfederate(self, trust_domain: str) -> Plan[dict[str, Any]]:
        return dict((yield _call("unfederate", trust_domain=trust_domain)))

    # ----------------------------------------------------------------- decisions

    def _explain(
        self,
        agent: str,
        tool: str,
        flow_id: str,
        tool_name: str | None,
        context: Mapping[str, Any] | None,
    ) -> Plan[dict[str, Any]]:
        if not isinstance(flow_id, str) or not flow_id:
            raise ValidationError("flow_id must be a flow's _id")
        return dict(
            (
                yield _call(
                    "explain",
                    agent=_need_aztp(agent, "agent"),
                    tool=_need_aztp(tool, "tool"),
                    flow_id=flow_id,
                    tool_name=tool_name,
                    context=None if context is None else dict(context),
                )
            )
        )

    # ----------------------------------------------------------------- audit

    def _audit(self, limit: int | None, action: str | None) -> Plan[list[dict[str, Any]]]:
        entries = yield _call("audit_entries", limit=limit, action=action)
        return [e if isinstance(e, dict) else e.to_doc() for e in entries]

    def _verify_audit(
        self, checkpoint: Mapping[str, Any] | str | None, public_key: str | None
    ) -> Plan[dict[str, Any]]:
        if checkpoint is None and public_key is None:
            report = yield _call("verify_audit")
        else:
            report = yield _call("verify_audit", checkpoint=checkpoint, public_key=public_key)
        return report if isinstance(report, dict) else report.to_dict()

    def _audit_checkpoint(self) -> Plan[dict[str, Any]]:
        return dict((yield _call("audit_checkpoint")))

    def _audit_checkpoint_key(self) -> Plan[dict[str, str]]:
        return dict((yield _call("audit_checkpoint_key")))
