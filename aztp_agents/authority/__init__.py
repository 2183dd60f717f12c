"""The identity authority: every AZTP operation, for any number of organizations.

The authority is synchronous and thread-safe; it runs in-process behind the embedded
:class:`~aztp_agents.Aztp` client and behind the HTTP server. Each operation is one store
transaction (nothing is half-written) and appends to the organization's audit chain.

Answers are plain dicts shaped as the AZTP API shows them (camelCase, ``_id``), so the
server can send them as they are and the client can return them as the seeds expect.

:class:`Authority` is a thin facade over one component per concept, which share an
:class:`~._context.AuthorityContext` (store, audit paths, decision cache):

* :mod:`.tenants` organizations, users, API keys   * :mod:`.trust` trust domains, CAs, bundles
* :mod:`.identities` identity records               * :mod:`.svids` X.509- and JWT-SVIDs
* :mod:`.links` links                               * :mod:`.flows` identity flows
* :mod:`.verification` verification, connections    * :mod:`.policies` policies
* :mod:`.federation` federation                     * :mod:`.audit_log` reading the audit chain
* :mod:`.decision_state` loading the decision state; the decisions themselves are
  :mod:`aztp_agents.decisions`; :mod:`.explanations` why a decision is what it is
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar

from ..audit import FieldData
from ..decisions import Decision, DecisionKey, DecisionState, LocalDecisions, PrincipalDecisions
from ..ids import TrustDomain
from ..ratelimit import TokenBuckets
from ..store import Store
from ._context import DEFAULT_TRUST_DOMAIN, LOCAL_ORG, AuthorityContext, Principal
from .audit_log import AuditLog
from .decision_state import StoreChangeLog, load_state
from .explanations import Explanations
from .federation import Federation
from .flows import Flows
from .identities import Identities
from .links import Links
from .policies import Policies
from .svids import Svids
from .tenants import Tenants
from .trust import Trust
from .verification import Verification, verify_answer

__all__ = ["DEFAULT_TRUST_DOMAIN", "LOCAL_ORG", "Authority", "Principal", "verify_answer"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _delegate(
    method: Callable[Concatenate[Any, _P], _R], component: str
) -> Callable[Concatenate[Authority, _P], _R]:
    """A facade method that calls ``method`` on the component named ``component``."""

    @functools.wraps(method)
    def call(self: Authority, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        return method(getattr(self, component), *args, **kwargs)

    return call


class Authority:
    """AZTP operations over a :class:`Store`. One instance per process is enough."""

    def __init__(
        self,
        store: Store,
        *,
        default_trust_domain: str = DEFAULT_TRUST_DOMAIN,
        issuance_rate: tuple[float, int] | None = (200.0, 1000),
    ) -> None:
        """``issuance_rate``: (identities per second, burst) per organization, or None."""
        self.store = store
        self.default_trust_domain = TrustDomain.parse(default_trust_domain).name
        #: This authority's view of store changes, and the decisions taken on its states.
        self.changes = store.changes.cursor()
        self.decisions = LocalDecisions(
            functools.partial(load_state, store),
            StoreChangeLog(store),
            self.changes,
            store.audit_queue,
            store.signals,
        )
        ctx = self.ctx = AuthorityContext(
            store,
            default_trust_domain=self.default_trust_domain,
            issuance=TokenBuckets(*issuance_rate) if issuance_rate else None,
            decisions=self.decisions,
        )
        self.tenants = ctx.tenants = Tenants(ctx)
        self.trust = ctx.trust = Trust(ctx)
        self.identities = ctx.identities = Identities(ctx)
        self.svids = ctx.svids = Svids(ctx)
        self.links = ctx.links = Links(ctx)
        self.verification = ctx.verification = Verification(ctx)
        self.flows = ctx.flows = Flows(ctx)
        self.policies = ctx.policies = Policies(ctx)
        self.federation = ctx.federation = Federation(ctx)
        self.audit_log = ctx.audit_log = AuditLog(ctx)
        self.explanations = Explanations(ctx)

    # --- tenants
    local_principal = _delegate(Tenants.local_principal, "tenants")
    create_org = _delegate(Tenants.create_org, "tenants")
    create_user = _delegate(Tenants.create_user, "tenants")
    add_trust_domain = _delegate(Tenants.add_trust_domain, "tenants")
    org_by_name = _delegate(Tenants.org_by_name, "tenants")
    principal_for = _delegate(Tenants.principal_for, "tenants")
    create_api_key = _delegate(Tenants.create_api_key, "tenants")
    list_orgs = _delegate(Tenants.list_orgs, "tenants")
    list_users = _delegate(Tenants.list_users, "tenants")
    list_api_keys = _delegate(Tenants.list_api_keys, "tenants")
    revoke_api_key = _delegate(Tenants.revoke_api_key, "tenants")
    rotate_api_key = _delegate(Tenants.rotate_api_key, "tenants")
    authenticate = _delegate(Tenants.authenticate, "tenants")

    # --- trust
    trust_domains = _delegate(Trust.trust_domains, "trust")
    trust_bundle = _delegate(Trust.trust_bundle, "trust")

    # --- identities
    secure_connect = _delegate(Identities.secure_connect, "identities")
    import_identities = _delegate(Identities.import_identities, "identities")
    get_identity = _delegate(Identities.get_identity, "identities")
    get_identity_by_name = _delegate(Identities.get_identity_by_name, "identities")
    list_identities = _delegate(Identities.list_identities, "identities")
    discover = _delegate(Identities.discover, "identities")
    revoke_identity = _delegate(Identities.revoke_identity, "identities")
    reissue_identity = _delegate(Identities.reissue_identity, "identities")

    # --- svids
    issue_credential = _delegate(Svids.issue_credential, "svids")
    verify_credential = _delegate(Svids.verify_credential, "svids")
    fetch_jwt_svid = _delegate(Svids.fetch_jwt_svid, "svids")

    # --- links
    link_identities = _delegate(Links.link_identities, "links")
    unlink_identities = _delegate(Links.unlink_identities, "links")
    list_links = _delegate(Links.list_links, "links")
    restore_link = _delegate(Links.restore_link, "links")
    list_link_removals = _delegate(Links.list_link_removals, "links")

    # --- verification
    verify_identity = _delegate(Verification.verify_identity, "verification")
    verify_cached = _delegate(Verification.verify_cached, "verification")
    authorize_connection = _delegate(Verification.authorize_connection, "verification")

    # --- flows
    create_flow = _delegate(Flows.create_flow, "flows")
    get_flow = _delegate(Flows.get_flow, "flows")
    find_flow = _delegate(Flows.find_flow, "flows")
    ensure_flow = _delegate(Flows.ensure_flow, "flows")
    list_flows = _delegate(Flows.list_flows, "flows")
    update_flow = _delegate(Flows.update_flow, "flows")
    delete_flow = _delegate(Flows.delete_flow, "flows")
    add_identity_to_flow = _delegate(Flows.add_identity_to_flow, "flows")
    remove_identity_from_flow = _delegate(Flows.remove_identity_from_flow, "flows")
    revoke_flow_identity = _delegate(Flows.revoke_flow_identity, "flows")
    reinstate_flow_identity = _delegate(Flows.reinstate_flow_identity, "flows")
    flow_health = _delegate(Flows.flow_health, "flows")

    # --- policies
    create_policy = _delegate(Policies.create_policy, "policies")
    attach_policy = _delegate(Policies.attach_policy, "policies")
    detach_policy = _delegate(Policies.detach_policy, "policies")
    get_policies = _delegate(Policies.get_policies, "policies")
    list_policies = _delegate(Policies.list_policies, "policies")
    check_permissions = _delegate(Policies.check_permissions, "policies")
    oiap_evaluate = _delegate(Policies.oiap_evaluate, "policies")

    # --- federation
    federate = _delegate(Federation.federate, "federation")
    unfederate = _delegate(Federation.unfederate, "federation")

    # --- audit_log
    audit_entries = _delegate(AuditLog.audit_entries, "audit_log")
    verify_audit = _delegate(AuditLog.verify_audit, "audit_log")
    audit_checkpoint = _delegate(AuditLog.audit_checkpoint, "audit_log")
    audit_checkpoint_key = _delegate(AuditLog.audit_checkpoint_key, "audit_log")

    # --- decisions
    explain = _delegate(Explanations.explain, "explanations")

    def snapshot(self, org_id: str) -> DecisionState:
        """The organization's decision state, current as of the latest committed write here
        or in any other process sharing the store, with the store's revision it is current
        at (for followers, who compare it with the change feed's). A state confirmed by its
        organization's change signal keeps the revision of its organization's last write;
        the store's revision read *before* confirming it is one it is current at too."""
        return self.decisions.view(org_id, lambda state: state)

    def cached_snapshot(self, org_id: str) -> DecisionState | None:
        """The state without any I/O (for event loops), or None when it must be (re)loaded
        with :meth:`snapshot` in a worker thread."""
        return self.decisions.cached_state(org_id)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Run this thread's operations inside as one write transaction: one commit for all
        of them (enrolling a crew: its identities, memberships and grants), and they all
        commit or none does. Each operation still audits and logs its changes as it would
        alone."""
        with self.store.write():
            yield

    def decide(
        self,
        p: Principal,
        *,
        flow_id: str,
        agent: str,
        tool: str,
        tool_name: str | None = None,
        context: Mapping[str, Any] | None = None,
        enforce: bool = True,
        snap: DecisionState | None = None,
    ) -> Decision:
        """The tool-call decision (DESIGN "Tool-call decision"), audited. Raises only if the
        state cannot be read; enforcement points turn that into a denial. With ``snap`` (from
        :meth:`cached_snapshot`) it does no I/O at all."""
        key = DecisionKey(p.user_id, flow_id, agent, tool, tool_name, enforce)
        return self.decisions.decide(p.org_id, key, context, snap)

    def decide_memoized(
        self,
        p: Principal,
        key: tuple[Any, ...],
        context: Mapping[str, Any] | None = None,
        flat_context: FieldData | None = None,
    ) -> Decision | None:
        """The decision for ``key`` (a :class:`~aztp_agents.decisions.DecisionKey`), audited,
        when this exact call was already decided and **allowed** on the current state; else
        ``None`` and nothing is audited (take :meth:`decide`). No I/O."""
        return self.decisions.memoized(p.org_id, key, context, flat_context)

    def record_decision(
        self,
        p: Principal,
        decision: Decision,
        context: Mapping[str, Any] | None = None,
        *,
        decided_at: float | None = None,
    ) -> None:
        """Queue the audit record of a decision taken elsewhere (a fail-closed denial, or a
        remote enforcement point's decision taken at ``decided_at``, epoch seconds)."""
        self.decisions.record(p.org_id, p.user_id, decision, context, decided_at)

    def decision_point(self, p: Principal) -> PrincipalDecisions:
        """The no-I/O decision point of ``p`` (what an embedded guard decides through)."""
        return self.decisions.for_principal(p.org_id, p.user_id)

    def close(self) -> None:
        self.changes.close()
        self.store.close()
