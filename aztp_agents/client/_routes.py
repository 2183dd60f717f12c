"""The remote route table: how each authority operation travels over HTTP.

:data:`ROUTES` maps every operation name a client, the guard or an adapter calls on a backend
(``secure_connect``, ``revoke_identity``, ...) to a :class:`Route`: method, path, how the
keyword arguments become query parameters or a JSON body (the wire names of
:mod:`aztp_agents.wire`'s request bodies), and how the answer's ``data`` becomes the value the
embedded :class:`~aztp_agents.authority.Authority` returns. WIRE.md routes (the official
client's) where one exists, ``v1/`` extensions otherwise. Declarative: no I/O here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .. import wire
from ..errors import ValidationError

__all__ = [
    "DECIDE_ROUTE",
    "DECISION_AUDIT_ROUTE",
    "FEED_PATH",
    "ROUTES",
    "STATE_ROUTE",
    "Route",
    "WireRequest",
    "clean",
]

Builder = Callable[[dict[str, Any]], "WireRequest"]


@dataclass(frozen=True, slots=True)
class WireRequest:
    """One request, ready to send: a path under the base URL, query parameters, JSON body."""

    path: str
    query: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None


def clean(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` without the ``None`` ones (an absent argument is not sent)."""
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
    embedded authority returns. ``body_model``: the :mod:`aztp_agents.wire` model the server
    validates the JSON body with (the wire names in ``fields`` are its fields).
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
    body_model: type[wire.Body] | None = None

    def request(self, op: str, kwargs: dict[str, Any]) -> WireRequest:
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
        wire = clean({self.fields[k]: v for k, v in rest.items()})
        path = self.path.format(**path_args)
        if self.method in ("GET", "DELETE"):
            return WireRequest(path, query=wire)
        return WireRequest(path, body=wire)


def _placeholders(path: str) -> list[str]:
    out, i = [], 0
    while (start := path.find("{", i)) >= 0:
        end = path.index("}", start)
        out.append(path[start + 1 : end])
        i = end + 1
    return out


def _read(method: str, path: str, **fields: str) -> Route:
    return Route(method, path, fields, idempotent=True, writes=False)


def _write(
    method: str,
    path: str,
    *,
    body_model: type[wire.Body] | None = None,
    idempotent: bool = False,
    **fields: str,
) -> Route:
    return Route(method, path, fields, idempotent=idempotent, body_model=body_model)


_ISSUE_FIELDS = {
    "name": "name",
    "is_global": "isGlobalIdentity",
    "trust_domain": "trustDomain",
    "parent_identity": "parentIdentity",
    "environment": "environment",
    "method": "method",
    "hostname": "hostname",
    "extra": "extra",
    "ttl": "ttl",
    "csr_pem": "csr",
}


def _build_secure_connect(kw: dict[str, Any]) -> WireRequest:
    kw = dict(kw)
    kw.pop("make_key", None)  # handled by the key-pair step
    unknown = sorted(set(kw) - set(_ISSUE_FIELDS))
    if unknown:
        raise TypeError(
            f"secure_connect() got unexpected keyword argument(s): {', '.join(unknown)}"
        )
    return WireRequest("v1/identities", body=clean({_ISSUE_FIELDS[k]: v for k, v in kw.items()}))


def _build_reissue(kw: dict[str, Any]) -> WireRequest:
    kw = dict(kw)
    kw.pop("make_key", None)
    aztp_id = kw.pop("aztp_id")
    csr = kw.pop("csr_pem", None)
    if kw:
        raise TypeError(
            f"reissue_identity() got unexpected keyword argument(s): {', '.join(sorted(kw))}"
        )
    return WireRequest("aztp/reissue-revoked-identity", body=clean({"aztpId": aztp_id, "csr": csr}))


def _build_discover(kw: dict[str, Any]) -> WireRequest:
    td, requestor = kw.get("trust_domain"), kw.get("requestor")
    if td is None and requestor is None:
        return WireRequest("aztp/discoverable", query={"discoverable": "true"})
    return WireRequest(
        "aztp/discover-with-trust-domain", query=clean({"trustDomain": td, "aztpId": requestor})
    )


def _build_add_to_flow(kw: dict[str, Any]) -> WireRequest:
    return WireRequest(
        "identity-flow/add-identity-to-flow",
        body={"identityFlowId": kw["flow_id"], "identity": {"aztpId": kw["aztp_id"]}},
    )


def _build_check_permissions(kw: dict[str, Any]) -> WireRequest:
    code, actions = kw.get("policy_code"), kw.get("actions")
    query: dict[str, Any] = {"aztpId": kw["aztp_id"]}
    if code:
        query["policy_code" if str(code).startswith("policy:") else "policy_id"] = code
    if actions:
        query["action"] = actions if isinstance(actions, str) else ",".join(actions)
    if kw.get("trust_domain"):
        query["trust_domain"] = kw["trust_domain"]
    if kw.get("resource"):
        query["resource"] = kw["resource"]
    return WireRequest("aztp/get-identity-action-permissions", query=query)


def _build_update_flow(kw: dict[str, Any]) -> WireRequest:
    kw = dict(kw)
    flow_id = _segment(kw.pop("flow_id"), "flow_id")
    allowed = {"name", "description", "discoverable", "tags", "metadata"}
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise ValidationError(f"unknown flow field(s): {', '.join(unknown)}")
    return WireRequest(f"identity-flow/update/{flow_id}", body=clean(kw))


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
    "secure_connect": Route(
        "POST",
        "v1/identities",
        body_model=wire.NewIdentityBody,
        idempotent=True,
        keypair=True,
        build=_build_secure_connect,
    ),
    "issue_credential": Route(
        "POST",
        "v1/identities/credential",
        {"aztp_id": "aztpId", "csr_pem": "csr", "ttl": "ttl"},
        body_model=wire.CredentialBody,
        idempotent=True,
        writes=False,
        keypair=True,
    ),
    "reissue_identity": Route(
        "POST",
        "aztp/reissue-revoked-identity",
        body_model=wire.ReissueBody,
        keypair=True,
        build=_build_reissue,
    ),
    "get_identity": _read("GET", "v1/identities/{aztp_id}"),
    "get_identity_by_name": _read("GET", "v1/identities/by-name/{name}"),
    "list_identities": Route("GET", "v1/identities", idempotent=True, writes=False, parse=_as_list),
    "discover": Route(
        "GET",
        "aztp/discoverable",
        idempotent=True,
        writes=False,
        build=_build_discover,
        parse=_as_list,
    ),
    "revoke_identity": _write(
        "POST",
        "aztp/revoke-identity",
        body_model=wire.RevokeBody,
        aztp_id="aztpId",
        reason="reason",
    ),
    "verify_identity": Route(
        "POST",
        "aztp/verify-identity",
        {"aztp_id": "aztpId", "flow_id": "identityFlowId"},
        body_model=wire.VerifyBody,
        idempotent=True,
        writes=False,
    ),
    "authorize_connection": Route(
        "POST",
        "aztp/authorize-connection-with-identities",
        {"source": "aztpId", "target": "requestAztpId", "policy_code": "policyCode"},
        body_model=wire.AuthorizeBody,
        idempotent=True,
        writes=False,
    ),
    "verify_credential": Route(
        "POST",
        "v1/credentials/verify",
        {"cert_pem": "certificate"},
        body_model=wire.VerifyCredentialBody,
        idempotent=True,
        writes=False,
    ),
    "fetch_jwt_svid": Route(
        "POST",
        "v1/svid/jwt",
        {"aztp_id": "aztpId", "audience": "audience", "ttl": "ttl"},
        body_model=wire.JwtSvidBody,
        idempotent=True,
        writes=False,
    ),
    "trust_bundle": Route(
        "GET",
        ".well-known/spiffe-bundle",
        {"trust_domain": "trustDomain"},
        idempotent=True,
        writes=False,
        parse=_bundle,
    ),
    # links
    "link_identities": _write(
        "POST",
        "aztp/create-workload-identity-link",
        body_model=wire.LinkBody,
        idempotent=True,
        source="sourceIdentity",
        target="targetIdentity",
        relationship_type="relationshipType",
        metadata="metadata",
        flow_id="identityFlowId",
        declared="declared",
    ),
    "unlink_identities": _write(
        "POST",
        "v1/links/delete",
        body_model=wire.UnlinkBody,
        source="sourceIdentity",
        target="targetIdentity",
        relationship_type="relationshipType",
        reason="reason",
    ),
    "restore_link": _write(
        "POST",
        "v1/links/restore",
        body_model=wire.RestoreLinkBody,
        source="sourceIdentity",
        target="targetIdentity",
        relationship_type="relationshipType",
    ),
    "list_link_removals": Route(
        "GET",
        "v1/links/removals",
        {"aztp_id": "aztpId"},
        idempotent=True,
        writes=False,
        parse=_as_list,
    ),
    "list_links": Route(
        "GET", "v1/links", {"aztp_id": "aztpId"}, idempotent=True, writes=False, parse=_as_list
    ),
    # policies
    "create_policy": _write(
        "POST",
        "v1/policies",
        body_model=wire.PolicyBody,
        name="name",
        document="document",
        code="code",
    ),
    "attach_policy": _write(
        "POST",
        "v1/policies/attach",
        body_model=wire.AttachBody,
        idempotent=True,
        aztp_id="aztpId",
        code="code",
    ),
    "detach_policy": _write(
        "POST", "v1/policies/detach", body_model=wire.AttachBody, aztp_id="aztpId", code="code"
    ),
    "list_policies": Route("GET", "v1/policies", idempotent=True, writes=False, parse=_as_list),
    "get_policies": Route(
        "GET",
        "aztp/get-identity-access-policy",
        {"aztp_id": "aztpId"},
        idempotent=True,
        writes=False,
        parse=_as_list,
    ),
    "check_permissions": Route(
        "GET",
        "aztp/get-identity-action-permissions",
        idempotent=True,
        writes=False,
        build=_build_check_permissions,
    ),
    "oiap_evaluate": Route(
        "POST",
        "oiap/evaluate",
        {"aztp_id": "aztp_id", "requested_resource": "requested_resource", "user_id": "user_id"},
        body_model=wire.OiapBody,
        idempotent=True,
        writes=False,
    ),
    # flows
    "create_flow": _write(
        "POST",
        "identity-flow/create",
        body_model=wire.CreateFlowBody,
        name="name",
        description="description",
        discoverable="discoverable",
        tags="tags",
        metadata="metadata",
    ),
    "update_flow": Route(
        "PUT",
        "identity-flow/update/{flow_id}",
        body_model=wire.UpdateFlowBody,
        idempotent=True,
        build=_build_update_flow,
    ),
    "delete_flow": _write("DELETE", "identity-flow/delete/{flow_id}"),
    "get_flow": _read("GET", "v1/flows/{flow_id}"),
    "list_flows": Route("GET", "v1/flows", idempotent=True, writes=False, parse=_as_list),
    "ensure_flow": _write(
        "POST",
        "v1/flows/ensure",
        body_model=wire.EnsureFlowBody,
        idempotent=True,
        name="name",
        discoverable="discoverable",
        description="description",
    ),
    "add_identity_to_flow": Route(
        "POST",
        "identity-flow/add-identity-to-flow",
        body_model=wire.AddToFlowBody,
        idempotent=True,
        build=_build_add_to_flow,
    ),
    "remove_identity_from_flow": _write(
        "POST",
        "identity-flow/remove-identity-from-flow",
        body_model=wire.RemoveFromFlowBody,
        idempotent=True,
        flow_id="identityFlowId",
        aztp_id="aztpId",
    ),
    "revoke_flow_identity": _write(
        "POST",
        "aztp/revoke-identity-for-flow",
        body_model=wire.RevokeFlowBody,
        aztp_id="aztpId",
        flow_id="identityFlowId",
        reason="reason",
    ),
    "reinstate_flow_identity": _write(
        "POST",
        "v1/flows/reinstate",
        body_model=wire.ReinstateBody,
        aztp_id="aztpId",
        flow_id="identityFlowId",
    ),
    "flow_health": _read("GET", "v1/flows/{flow_id}/health"),
    "service_health": Route(
        "GET", "identity-flow/health", idempotent=True, writes=False, envelope=False
    ),
    # decisions
    "explain": Route(
        "POST",
        "v1/decisions/explain",
        {
            "flow_id": "flowId",
            "agent": "agent",
            "tool": "tool",
            "tool_name": "toolName",
            "context": "context",
        },
        body_model=wire.ExplainBody,
        idempotent=True,
        writes=False,
    ),
    # audit
    "audit_entries": Route(
        "GET",
        "v1/audit",
        {"limit": "limit", "action": "action"},
        idempotent=True,
        writes=False,
        parse=_as_list,
    ),
    "verify_audit": Route(
        "POST",
        "v1/audit/verify",
        {"checkpoint": "checkpoint", "public_key": "publicKey"},
        idempotent=True,
        writes=False,
        body_model=wire.AuditVerifyBody,
    ),
    "audit_checkpoint": _read("GET", "v1/audit/checkpoint"),
    "audit_checkpoint_key": _read("GET", "v1/audit/checkpoint/key"),
    # federation
    "federate": _write(
        "POST",
        "v1/federation",
        body_model=wire.FederationBody,
        idempotent=True,
        trust_domain="trustDomain",
    ),
    "unfederate": _write("DELETE", "v1/federation/{trust_domain}"),
}

# The decision replica's routes (not authority operations).
#: The decision state of the caller's organization (a ``StateDoc``).
STATE_ROUTE = Route("GET", "v1/state", idempotent=True, writes=False)
#: A decision taken by the server. Safe to repeat, but sent once: a decision must not wait
#: out retries (the replica's fallback passes ``attempts=1``).
DECIDE_ROUTE = Route(
    "POST", "v1/decisions", body_model=wire.DecideBody, idempotent=True, writes=False
)
#: Decisions taken locally, sent in batches for the server's audit log.
DECISION_AUDIT_ROUTE = Route(
    "POST", "v1/decisions/audit", body_model=wire.DecisionAuditBody, writes=False
)
#: The change feed (server-sent events).
FEED_PATH = "v1/state/changes"
