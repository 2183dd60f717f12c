"""The FastAPI application: the AZTP REST API (WIRE.md) plus our ``/v1`` extensions.

Every route authenticates the caller's API key to a :class:`Principal` and calls one
authority operation with it, so every answer is scoped to the caller's organization. Route
functions are plain ``def``: FastAPI runs them in its worker threads, so the (blocking) store
never runs on the event loop. Answers are ``{"success", "message", "data"}``; errors use the
same envelope with the status code of the :class:`~aztp_agents.errors.AztpError` raised.

The one hot route, ``POST aztp/verify-identity``, is usually answered from memory before it
reaches FastAPI (:mod:`.fastpath`); every other case of it goes through the route below.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response, StreamingResponse

from .. import __version__
from ..authority import Authority, Principal
from ..decisions import Decision, Reason
from ..errors import (
    AuthenticationError,
    AztpError,
    InvalidIdError,
    RateLimitedError,
    ValidationError,
)
from . import schemas as s
from .fastpath import FastPathMiddleware
from .feed import AuthCache, StoreWatcher, state_document
from .middleware import DEFAULT_MAX_BODY, BodyLimitMiddleware
from .responses import error, ok

__all__ = ["ServerContext", "create_app"]

log = logging.getLogger(__name__)

_api_key_header = APIKeyHeader(
    name="api_access_key", scheme_name="apiAccessKey", auto_error=False,
    description="API key (as the official aztp-client sends it). Make one with 'aztp-agents keys create'.",
)
_bearer = HTTPBearer(scheme_name="bearer", auto_error=False, description="The same API key as a Bearer token.")


@dataclass
class ServerContext:
    authority: Authority
    watcher: StoreWatcher
    auth_cache: AuthCache


def _ctx(request: Request) -> ServerContext:
    return request.app.state.aztp  # type: ignore[no-any-return]


async def _principal(
    request: Request,
    api_key: Annotated[str | None, Security(_api_key_header)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> Principal:
    key = api_key or (bearer.credentials if bearer else None)
    if not key:
        raise AuthenticationError(
            "missing API key: send it in the 'api_access_key' header or as 'Authorization: Bearer <key>'"
        )
    cache = _ctx(request).auth_cache
    principal = cache.cached(key)
    if principal is None:
        principal = await anyio.to_thread.run_sync(cache.authenticate, key)
    return principal


P = Annotated[Principal, Depends(_principal)]


async def _authority(request: Request) -> Authority:
    return _ctx(request).authority


A = Annotated[Authority, Depends(_authority)]


async def _single_valued_query(request: Request) -> None:
    """No route takes a list in its query: ``?x=1&x=2`` is an error, not "the last one wins"."""
    params = request.query_params
    if len(params.multi_items()) != len(params):
        seen: set[str] = set()
        for name, _ in params.multi_items():
            if name in seen:
                raise ValidationError(f"query parameter {name!r} is given more than once; give it once")
            seen.add(name)

_ERR = {"model": s.ErrorEnvelope}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {**_ERR, "description": "Malformed request: bad JSON, wrong type, invalid ID or value"},
    401: {**_ERR, "description": "Missing, unknown or revoked API key"},
    403: {**_ERR, "description": "Not allowed (another user's private flow, another organization's trust domain)"},
    404: {**_ERR, "description": "Not found in the caller's organization"},
    409: {**_ERR, "description": "Conflicts with existing state (already revoked, name taken)"},
    413: {**_ERR, "description": "Request body too large"},
    429: {**_ERR, "description": "Rate limited"},
    503: {**_ERR, "description": "Store unavailable; retry"},
}


def _doc(model: Any, description: str = "Success") -> dict[int | str, dict[str, Any]]:
    return {200: {"model": s.Envelope[model], "description": description}}  # type: ignore[index]


# ====================================================================== WIRE.md routes


def _wire_routes(r: APIRouter) -> None:
    @r.post("/aztp/issue-identity", tags=["identities"], responses=_doc(s.IssuedIdentity),
            summary="Issue (or re-connect) an identity; no credential is made (official secure_connect)")
    def issue_identity(body: s.IssueIdentityBody, p: P, a: A) -> Response:
        meta = body.metadata or s.IssueMetadata()
        answer = a.secure_connect(
            p, body.workloadId, is_global=body.isGlobalIdentity, trust_domain=meta.trustDomain,
            parent_identity=meta.parentIdentity, environment=meta.environment or "production",
            method=body.method or "node", hostname=meta.hostname, extra=meta.extra, make_key=False,
        )
        data = {**answer["identity"], "valid": answer["valid"]}
        if answer.get("error"):
            data["error"] = answer["error"]
            return ok(data, answer["error"])
        return ok(data, "Workload identity issued successfully")

    @r.post("/aztp/verify-identity", tags=["identities"], responses=_doc(s.Verification),
            summary="Verify an identity, globally or in a flow (a negative answer is 200 with data.valid=false)")
    def verify_identity(body: s.VerifyBody, p: P, a: A) -> Response:
        data = a.verify_identity(p, body.aztpId, body.identityFlowId)
        return ok(data, data["message"])

    @r.post("/aztp/authorize-connection-with-identities", tags=["links"], responses=_doc(s.Verification),
            summary="Both identities valid, a link allows aztpId -> requestAztpId, and the policy (if any) allows it")
    def authorize_connection(body: s.AuthorizeBody, p: P, a: A) -> Response:
        data = a.authorize_connection(p, body.aztpId, body.requestAztpId, body.policyCode)
        return ok(data, data["message"])

    def get_identity(
        p: P, a: A,
        agentName: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
        aztpId: Annotated[str | None, Query(min_length=1, max_length=2048)] = None,
    ) -> Response:
        if aztpId:
            doc = a.get_identity(p, aztpId)
        elif agentName:
            doc = a.get_identity_by_name(p, agentName)
        else:
            raise ValidationError("give the identity's name as ?agentName=NAME (or its ID as ?aztpId=)")
        message = "Workload identity found successfully"
        # The seeds read json.loads(await client.get_identity(agent))["data"]["aztpId"], and the
        # official client returns this route's data (minus top-level selectors) as that JSON:
        # so data is the identity record that also carries the seed's envelope.
        return ok({**doc, "success": True, "message": message, "data": doc}, message)

    for path, in_schema in (("/aztp/get-identity", True), ("/aztp/get-identity/", False)):
        r.add_api_route(path, get_identity, methods=["GET"], tags=["identities"], include_in_schema=in_schema,
                        responses=_doc(s.FoundIdentity), summary="Get an identity by name (?agentName=) or ID")

    @r.get("/aztp/discover-with-trust-domain", tags=["identities"], responses=_doc(list[s.IdentityDoc]),
           summary="Discoverable identities of one of the caller's trust domains")
    def discover_with_trust_domain(
        p: P, a: A,
        trustDomain: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
        aztpId: Annotated[str | None, Query(min_length=1, max_length=2048)] = None,
    ) -> Response:
        docs = a.discover(p, trust_domain=trustDomain, requestor=aztpId)
        return ok(docs, f"{len(docs)} discoverable identities")

    @r.get("/aztp/discoverable", tags=["identities"], responses=_doc(list[s.IdentityDoc]),
           summary="Discoverable identities: global ones and members of visible public flows")
    def discoverable(p: P, a: A, discoverable: bool | None = None) -> Response:
        docs = a.discover(p)
        return ok(docs, f"{len(docs)} discoverable identities")

    @r.get("/aztp/get-identity-access-policy", tags=["policies"], responses=_doc(list[s.PolicyInfo]),
           summary="Policies attached to an identity")
    def get_policy(p: P, a: A, aztpId: Annotated[str, Query(min_length=1, max_length=2048)]) -> Response:
        policies = a.get_policies(p, aztpId)
        return ok(policies, f"{len(policies)} policies")

    @r.get("/aztp/get-identity-action-permissions", tags=["policies"], responses=_doc(s.Loose),
           summary="Whether the identity's policies (or the one named) allow each action")
    def action_permissions(
        p: P, a: A,
        aztpId: Annotated[str, Query(min_length=1, max_length=2048)],
        policy_code: Annotated[str | None, Query(max_length=128)] = None,
        policy_id: Annotated[str | None, Query(max_length=128)] = None,
        action: Annotated[str | None, Query(max_length=4096, description="comma-separated actions")] = None,
        trust_domain: Annotated[str | None, Query(max_length=255)] = None,
    ) -> Response:
        data = a.check_permissions(p, aztpId, policy_code=policy_code or policy_id, actions=action,
                                   trust_domain=trust_domain)
        return ok(data, "Action permissions evaluated")

    @r.post("/aztp/revoke-identity", tags=["identities"], responses=_doc(s.Loose),
            summary="Revoke an identity everywhere")
    def revoke_identity(body: s.RevokeBody, p: P, a: A) -> Response:
        return ok(a.revoke_identity(p, body.aztpId, body.reason), "Workload identity revoked successfully")

    @r.post("/aztp/reissue-revoked-identity", tags=["identities"], responses=_doc(s.Loose),
            summary="Make a revoked identity valid again (credentials issued before stay dead)")
    def reissue_identity(body: s.ReissueBody, p: P, a: A) -> Response:
        data = a.reissue_identity(p, body.aztpId, csr_pem=body.csr, make_key=False)
        data.pop("privateKey", None)
        return ok(data, "Workload identity reissued successfully")

    @r.post("/aztp/create-workload-identity-link", tags=["links"], responses=_doc(s.Loose),
            summary="Link two identities (authorizes source -> target; 'linked' is symmetric)")
    def link(body: s.LinkBody, p: P, a: A) -> Response:
        data = a.link_identities(p, body.sourceIdentity, body.targetIdentity, body.relationshipType, body.metadata)
        return ok(data, "Workload identity link created successfully")

    @r.get("/identity-flow/health", tags=["service"], responses=_doc(s.Health),
           summary="Whether the identity flow service is up (no key needed)")
    def flow_service_health() -> Response:
        return ok({"status": "healthy", "service": "identity-flow", "version": __version__},
                  "Identity flow service is healthy")

    @r.post("/identity-flow/create", tags=["flows"], responses=_doc(s.FlowDoc), summary="Create an identity flow")
    def create_flow(body: s.CreateFlowBody, p: P, a: A) -> Response:
        data = a.create_flow(p, body.name, description=body.description, discoverable=body.discoverable,
                             tags=body.tags, metadata=body.metadata)
        return ok(data, "Identity flow created successfully")

    @r.put("/identity-flow/update/{flow_id}", tags=["flows"], responses=_doc(s.FlowDoc),
           summary="Update a flow's name, description, discoverability, tags or metadata")
    def update_flow(flow_id: Annotated[str, Path(min_length=1, max_length=128)], body: s.UpdateFlowBody, p: P, a: A) -> Response:
        changes = body.model_dump(exclude_none=True)
        return ok(a.update_flow(p, flow_id, **changes), "Identity flow updated successfully")

    @r.delete("/identity-flow/delete/{flow_id}", tags=["flows"], responses=_doc(s.Loose),
              summary="Delete a flow (its memberships go, the identities stay)")
    def delete_flow(flow_id: Annotated[str, Path(min_length=1, max_length=128)], p: P, a: A) -> Response:
        return ok(a.delete_flow(p, flow_id), "Identity flow deleted successfully")

    @r.post("/identity-flow/add-identity-to-flow", tags=["flows"], responses=_doc(s.FlowDoc),
            summary="Add an identity to a flow (idempotent)")
    def add_to_flow(body: s.AddToFlowBody, p: P, a: A) -> Response:
        aztp_id = body.identity.aztpId if body.identity else body.aztpId
        if not aztp_id:
            raise ValidationError("give the identity as {'identity': {'aztpId': ...}}")
        return ok(a.add_identity_to_flow(p, body.identityFlowId, aztp_id), "Identity added to flow successfully")

    @r.post("/identity-flow/remove-identity-from-flow", tags=["flows"], responses=_doc(s.FlowDoc),
            summary="Remove an identity from a flow (idempotent; a flow revocation stays)")
    def remove_from_flow(body: s.RemoveFromFlowBody, p: P, a: A) -> Response:
        return ok(a.remove_identity_from_flow(p, body.identityFlowId, body.aztpId),
                  "Identity removed from flow successfully")

    @r.post("/aztp/revoke-identity-for-flow", tags=["flows"], responses=_doc(s.Loose),
            summary="Revoke an identity in one flow only")
    def revoke_for_flow(body: s.RevokeFlowBody, p: P, a: A) -> Response:
        return ok(a.revoke_flow_identity(p, body.aztpId, body.identityFlowId, body.reason),
                  "Identity revoked for this flow")

    @r.post("/oiap/evaluate", tags=["policies"], responses=_doc(s.Loose),
            summary="Organization identity access policy: may the identity access the resource?")
    def oiap_evaluate(body: s.OiapBody, p: P, a: A) -> Response:
        return ok(a.oiap_evaluate(p, body.aztp_id, body.requested_resource, body.user_id), "OIAP evaluated")


# ====================================================================== /v1 extensions


def _v1_routes(r: APIRouter) -> None:
    @r.get("/v1/health", tags=["service"], responses=_doc(s.Health), summary="Service health (no key needed)")
    def health() -> Response:
        return ok({"status": "healthy", "version": __version__}, "aztp-agents server is healthy")

    # ---------------------------------------------------------------- identities

    @r.post("/v1/identities", tags=["identities"], responses=_doc(s.IssueAnswer),
            summary="Issue (or re-connect) an identity; with a CSR, an X.509-SVID for the caller's key")
    def new_identity(body: s.NewIdentityBody, p: P, a: A) -> Response:
        answer = a.secure_connect(
            p, body.name, is_global=body.isGlobalIdentity, trust_domain=body.trustDomain,
            parent_identity=body.parentIdentity, environment=body.environment or "production",
            method=body.method or "node", hostname=body.hostname, extra=body.extra,
            csr_pem=body.csr, make_key=False, ttl=body.ttl,
        )
        answer.pop("privateKey", None)  # never made here, never sent
        return ok(answer, answer.get("error") or "Workload identity issued successfully")

    @r.post("/v1/identities/credential", tags=["credentials"], responses=_doc(s.Loose),
            summary="A fresh X.509-SVID for an active identity, for the key of the CSR")
    def credential(body: s.CredentialBody, p: P, a: A) -> Response:
        data = dict(a.issue_credential(p, body.aztpId, csr_pem=body.csr, ttl=body.ttl))
        data.pop("privateKey", None)
        return ok(data, "X.509-SVID issued")

    @r.post("/v1/credentials/verify", tags=["credentials"], responses=_doc(s.Verification),
            summary="Live check of an X.509-SVID: chain, identity active, issued after the last reissue")
    def verify_credential(body: s.VerifyCredentialBody, p: P, a: A) -> Response:
        data = a.verify_credential(p, body.certificate)
        return ok({**data, "message": "Credential is valid" if data["valid"] else f"Credential is not valid: {data['reason']}"},
                  "Credential checked")

    @r.get("/v1/identities", tags=["identities"], responses=_doc(list[s.IdentityDoc]),
           summary="All identities of the caller's organization")
    def list_identities(p: P, a: A) -> Response:
        docs = a.list_identities(p)
        return ok(docs, f"{len(docs)} identities")

    @r.get("/v1/identities/by-name/{name:path}", tags=["identities"], responses=_doc(s.IdentityDoc),
           summary="One identity by name")
    def identity_by_name(name: str, p: P, a: A) -> Response:
        return ok(a.get_identity_by_name(p, name), "Workload identity found successfully")

    @r.get("/v1/identities/{aztp_id:path}", tags=["identities"], responses=_doc(s.IdentityDoc),
           summary="One identity by AZTP ID")
    def identity(aztp_id: str, p: P, a: A) -> Response:
        return ok(a.get_identity(p, aztp_id), "Workload identity found successfully")

    @r.post("/v1/svid/jwt", tags=["credentials"], responses=_doc(s.Loose), summary="A JWT-SVID for an audience")
    def jwt_svid(body: s.JwtSvidBody, p: P, a: A) -> Response:
        return ok(a.fetch_jwt_svid(p, body.aztpId, body.audience, ttl=body.ttl), "JWT-SVID issued")

    @r.get("/.well-known/spiffe-bundle", tags=["credentials"], responses=_doc(dict[str, dict[str, Any]]),
           summary="SPIFFE bundles (JWKS) of the caller's trust domains, keyed by trust domain")
    def bundle(p: P, a: A, trustDomain: Annotated[str | None, Query(max_length=255)] = None) -> Response:
        return ok(a.trust_bundle(p, trustDomain or None), "SPIFFE trust bundle")

    # ---------------------------------------------------------------- links

    @r.post("/v1/links/delete", tags=["links"], responses=_doc(s.Loose), summary="Remove a link")
    def unlink(body: s.UnlinkBody, p: P, a: A) -> Response:
        return ok(a.unlink_identities(p, body.sourceIdentity, body.targetIdentity, body.relationshipType),
                  "Workload identity link removed")

    @r.get("/v1/links", tags=["links"], responses=_doc(list[s.Loose]), summary="Links (of one identity, or all)")
    def links(p: P, a: A, aztpId: Annotated[str | None, Query(max_length=2048)] = None) -> Response:
        data = a.list_links(p, aztpId or None)
        return ok(data, f"{len(data)} links")

    # ---------------------------------------------------------------- flows

    @r.post("/v1/flows/reinstate", tags=["flows"], responses=_doc(s.FlowDoc),
            summary="Undo a flow revocation")
    def reinstate(body: s.ReinstateBody, p: P, a: A) -> Response:
        return ok(a.reinstate_flow_identity(p, body.aztpId, body.identityFlowId), "Identity reinstated in flow")

    @r.post("/v1/flows/ensure", tags=["flows"], responses=_doc(s.FlowDoc),
            summary="The visible flow with this name, created if missing")
    def ensure_flow(body: s.EnsureFlowBody, p: P, a: A) -> Response:
        return ok(a.ensure_flow(p, body.name, discoverable=body.discoverable, description=body.description),
                  "Identity flow ready")

    @r.get("/v1/flows", tags=["flows"], responses=_doc(list[s.FlowDoc]), summary="Flows visible to the caller")
    def list_flows(p: P, a: A) -> Response:
        data = a.list_flows(p)
        return ok(data, f"{len(data)} flows")

    @r.get("/v1/flows/{flow_id}", tags=["flows"], responses=_doc(s.FlowDoc), summary="One flow")
    def get_flow(flow_id: Annotated[str, Path(min_length=1, max_length=128)], p: P, a: A) -> Response:
        return ok(a.get_flow(p, flow_id), "Identity flow found")

    @r.get("/v1/flows/{flow_id}/health", tags=["flows"], responses=_doc(s.Loose),
           summary="Share of members valid in the flow: healthy >= 90 %, warning >= 70 %, else critical")
    def flow_health(flow_id: Annotated[str, Path(min_length=1, max_length=128)], p: P, a: A) -> Response:
        return ok(a.flow_health(p, flow_id), "Flow health")

    # ---------------------------------------------------------------- policies

    @r.post("/v1/policies", tags=["policies"], responses=_doc(s.PolicyInfo), summary="Create a policy")
    def create_policy(body: s.PolicyBody, p: P, a: A) -> Response:
        return ok(a.create_policy(p, body.name, body.document, code=body.code), "Policy created")

    @r.post("/v1/policies/attach", tags=["policies"], responses=_doc(s.Loose), summary="Attach a policy")
    def attach_policy(body: s.AttachBody, p: P, a: A) -> Response:
        return ok(a.attach_policy(p, body.aztpId, body.code), "Policy attached")

    @r.post("/v1/policies/detach", tags=["policies"], responses=_doc(s.Loose), summary="Detach a policy")
    def detach_policy(body: s.AttachBody, p: P, a: A) -> Response:
        return ok(a.detach_policy(p, body.aztpId, body.code), "Policy detached")

    # ---------------------------------------------------------------- audit

    @r.get("/v1/audit", tags=["audit"], responses=_doc(list[s.Loose]), summary="The organization's audit log")
    def audit(
        p: P, a: A,
        limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
        action: Annotated[str | None, Query(max_length=128)] = None,
    ) -> Response:
        entries = a.audit_entries(p, limit=limit, action=action or None)
        return ok([e.model_dump(mode="json") for e in entries], f"{len(entries)} audit entries")

    @r.get("/v1/audit/verify", tags=["audit"], responses=_doc(s.Loose), summary="Check the audit hash chain")
    def audit_verify(p: P, a: A) -> Response:
        report = a.verify_audit(p).to_dict()
        return ok(report, "Audit chain intact" if report["ok"] else f"Audit chain broken: {report['problem']}")

    # ---------------------------------------------------------------- federation

    @r.post("/v1/federation", tags=["federation"], responses=_doc(s.Loose),
            summary="Trust another organization's trust domain (effective once both sides do)")
    def federate(body: s.FederationBody, p: P, a: A) -> Response:
        return ok(a.federate(p, body.trustDomain), "Trust domain federated")

    @r.delete("/v1/federation/{trust_domain}", tags=["federation"], responses=_doc(s.Loose),
              summary="Stop trusting a trust domain")
    def unfederate(trust_domain: Annotated[str, Path(min_length=1, max_length=255)], p: P, a: A) -> Response:
        return ok(a.unfederate(p, trust_domain), "Trust domain no longer federated")

    # ---------------------------------------------------------------- decisions and state

    @r.post("/v1/decisions", tags=["decisions"], responses=_doc(s.DecisionDoc),
            summary="Tool-call decision, taken and audited by the authority (enforcement points' fallback)")
    def decide(body: s.DecideBody, p: P, a: A) -> Response:
        decision = a.decide(p, flow_id=body.flowId, agent=body.agent, tool=body.tool, tool_name=body.toolName,
                            context=body.context, enforce=body.enforce)
        return ok(decision.to_dict(), decision.describe())

    @r.post("/v1/decisions/audit", tags=["decisions"], responses=_doc(s.Loose),
            summary="Record decisions taken at a remote enforcement point in the audit log")
    def decisions_audit(body: s.DecisionAuditBody, p: P, a: A) -> Response:
        for rec in body.decisions:
            decision = Decision(
                allowed=rec.allowed, reason=Reason(rec.reason), agent=rec.agent, tool=rec.tool, flow=rec.flow,
                revision=rec.revision, latency_us=rec.latencyUs, tool_name=rec.toolName, audit=rec.audit,
                enforced=rec.enforced, organization=p.org_id,
            )
            a.record_decision(p, decision, rec.context)
        return ok({"recorded": len(body.decisions)}, f"{len(body.decisions)} decisions recorded")

    @r.get("/v1/state", tags=["decisions"], responses=_doc(s.StateDoc),
           summary="The organization's decision state (for enforcement points)")
    def state(p: P, a: A) -> Response:
        return ok(state_document(a.snapshot(p.org_id), p.user_id), "Decision state")

    @r.get("/v1/state/changes", tags=["decisions"], response_class=StreamingResponse,
           responses={200: {"description": "Server-sent events: 'revision' at once and on every change, "
                                           "'heartbeat' every second; data is {\"revision\": N}",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}}}},
           summary="Change feed (text/event-stream)")
    async def changes(request: Request, p: P) -> StreamingResponse:
        return StreamingResponse(_ctx(request).watcher.events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# ====================================================================== errors


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AztpError)
    async def aztp_error(request: Request, exc: AztpError) -> Response:
        extra: dict[str, Any] = {}
        headers = None
        if isinstance(exc, InvalidIdError):
            extra["rule"] = exc.rule
        if isinstance(exc, RateLimitedError):
            extra["retryAfter"] = exc.retry_after
            headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
        if isinstance(exc, AuthenticationError):
            headers = {"WWW-Authenticate": 'Bearer, ApiKey header="api_access_key"'}
        status = exc.status_code if 400 <= exc.status_code < 600 else 400
        if status >= 500:
            log.warning("%s %s -> %d %s: %s", request.method, request.url.path, status, exc.code, exc.message)
        return error(status, exc.message, exc.code, headers=headers, **extra)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for e in exc.errors()[:20]:
            loc = [str(x) for x in e.get("loc", ())]
            problems.append({"loc": loc, "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))})
        first = problems[0] if problems else {"loc": [], "msg": "invalid request"}
        where = ".".join(first["loc"][1:] if len(first["loc"]) > 1 else first["loc"]) or "request"
        return error(400, f"invalid request: {where}: {first['msg']}", "invalid_request", errors=problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        status = exc.status_code if exc.status_code < 500 else 400
        return error(status, message, codes.get(exc.status_code, "http_error"), headers=exc.headers)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> Response:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return error(500, "internal server error (a bug in aztp-agents; it has been logged)", "internal_error")


# ====================================================================== app factory


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document without FastAPI's 422 (we answer 400 with our envelope)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes,
                      tags=app.openapi_tags)
    for item in doc.get("paths", {}).values():
        for op in item.values():
            if isinstance(op, dict):
                op.get("responses", {}).pop("422", None)
    schemas = doc.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    app.openapi_schema = doc
    return doc


def create_app(authority: Authority, *, prefix: str = "", max_body: int = DEFAULT_MAX_BODY,
               poll_interval: float = 0.005) -> FastAPI:
    """The ASGI application serving ``authority``. ``prefix`` (like ``/astha/v1``) is put
    before every route; the official client's ``base_url`` then ends with it."""
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    watcher = StoreWatcher(authority.store, interval=poll_interval)
    context = ServerContext(authority, watcher, AuthCache(authority, watcher))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        watcher.start()
        try:
            yield
        finally:
            watcher.stop()

    app = FastAPI(
        title="aztp-agents identity authority",
        version=__version__,
        description="The AZTP REST API (the official aztp-client works unchanged) plus aztp-agents "
                    "extensions under /v1. Every answer is {success, message, data}.",
        lifespan=lifespan,
        docs_url=f"{prefix}/docs",
        redoc_url=None,
        openapi_url=f"{prefix}/openapi.json",
    )
    app.state.aztp = context
    router = APIRouter(responses=ERRORS, dependencies=[Depends(_single_valued_query)])
    _wire_routes(router)
    _v1_routes(router)
    app.include_router(router, prefix=prefix)
    _install_error_handlers(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    # outermost last: body cap, then the verify fast path, then the routes
    app.add_middleware(FastPathMiddleware, context=context, prefix=prefix)
    app.add_middleware(BodyLimitMiddleware, max_body=max_body)
    return app
