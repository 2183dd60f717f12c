"""The :class:`SyncAztp` client: the same API as :class:`~aztp_agents.Aztp`, blocking.

For code that is not async (tool bodies, task callbacks, scripts): each method runs the same
plan from :class:`~._base.ClientBase` as its :class:`~aztp_agents.Aztp` sibling, with the
backend's blocking calls (no event loop is started). ``Aztp(...).sync`` is one over the same
backend.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from ..wire import FlowRecord, Identity, IdentityRecord
from ._base import ClientBase
from ._plan import Plan, run_sync
from ._secured_agent import SecuredAgent

__all__ = ["SyncAztp"]

T = TypeVar("T")


class SyncAztp(ClientBase):
    """Blocking AZTP client: ``SyncAztp()`` is embedded, ``SyncAztp(api_key=..., base_url=...)``
    remote. Inside a running event loop its methods refuse to run (they would block the
    loop): ``await`` the :class:`~aztp_agents.Aztp` methods there."""

    def _run(self, plan: Plan[T]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return run_sync(self.backend, plan)
        name = plan.__name__.lstrip("_")
        plan.close()
        raise RuntimeError(
            f"client.sync.{name}() was called inside a running event loop, where it would block "
            f"the loop: use 'await client.{name}(...)' instead"
        )

    def __enter__(self) -> SyncAztp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- identities

    def secure_connect(
        self,
        crew_agent: object | None = None,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> SecuredAgent:
        """Issue (or re-connect) the identity ``name`` and wrap ``crew_agent`` with it."""
        return self._run(self._secure_connect(crew_agent, name, config))

    def verify_identity(self, agent: SecuredAgent, identity_flow_id: str | None = None) -> bool:
        return self._run(self._verify_identity(agent, identity_flow_id))

    def verify_identity_by_aztp_id(self, aztp_id: str, identity_flow_id: str | None = None) -> bool:
        return self._run(self._verify_identity_by_aztp_id(aztp_id, identity_flow_id))

    def verify(self, aztp_id: str, identity_flow_id: str | None = None) -> dict[str, Any]:
        """Like :meth:`verify_identity_by_aztp_id` but with the reason and message."""
        return self._run(self._verify(aztp_id, identity_flow_id))

    def verify_identity_using_agent_name(
        self,
        name: str,
        trust_domain: str = "aztp.network",
        workload: str = "workload",
        environment: str = "production",
        method: str = "node",
    ) -> bool:
        return self._run(
            self._verify_identity_using_agent_name(
                name, trust_domain, workload, environment, method
            )
        )

    def verify_authorize_identity_connection(
        self,
        fromAgentID: str | None = None,
        toAgentID: str | None = None,
        policyCode: str | None = None,
        *,
        from_aztp_id: str | None = None,
        to_aztp_id: str | None = None,
        policy_code: str | None = None,
    ) -> bool:
        return self._run(
            self._verify_authorize_identity_connection(
                fromAgentID or from_aztp_id, toAgentID or to_aztp_id, policyCode or policy_code
            )
        )

    def authorize(
        self, from_aztp_id: str, to_aztp_id: str, policy_code: str | None = None
    ) -> dict[str, Any]:
        """Like :meth:`verify_authorize_identity_connection` but with the reason (``no_link``,
        ``policy_denied``, ...) and message."""
        return self._run(self._authorize(from_aztp_id, to_aztp_id, policy_code))

    def verify_credential(self, certificate_pem: str) -> dict[str, Any]:
        """Live check of an X.509-SVID: it chains to the organization's CA, its identity is
        active, and it was issued after the identity's last reissue (offline verifiers cannot
        know the last two)."""
        return self._run(self._verify_credential(certificate_pem))

    def get_identity(self, agent: SecuredAgent) -> str | None:
        """The identity document as a JSON string ``{"success", "message", "data"}``."""
        return self._run(self._get_identity(agent))

    def get_identity_by_name(self, name: str) -> str:
        return self._run(self._get_identity_by_name(name))

    def get_identity_by_aztp_id(self, aztp_id: str) -> str:
        return self._run(self._get_identity_by_aztp_id(aztp_id))

    def identity(self, aztp_id: str) -> IdentityRecord:
        """Typed identity record."""
        return self._run(self._identity(aztp_id))

    def list_identities(self) -> list[dict[str, Any]]:
        return self._run(self._list_identities())

    def discover_identity(
        self, trust_domain: str | None = None, requestor_identity: str | None = None
    ) -> str:
        return self._run(self._discover_identity(trust_domain, requestor_identity))

    def revoke_identity(self, aztp_id: str, reason: str | None = None) -> str:
        return self._run(self._revoke_identity(aztp_id, reason))

    def reissue_identity(self, aztp_id: str) -> str:
        return self._run(self._reissue_identity(aztp_id))

    def issue_credential(self, aztp_id: str, *, ttl: int = 3600) -> Identity:
        """A fresh X.509-SVID (and key) for an active identity."""
        return self._run(self._issue_credential(aztp_id, ttl))

    def fetch_jwt_svid(self, aztp_id: str, audience: str | Sequence[str], *, ttl: int = 300) -> str:
        return self._run(self._fetch_jwt_svid(aztp_id, audience, ttl))

    def get_trust_bundle(self, trust_domain: str | None = None) -> dict[str, Any]:
        return self._run(self._get_trust_bundle(trust_domain))

    # ----------------------------------------------------------------- links

    def link_identities(
        self,
        source_identity: str,
        target_identity: str,
        relationship_type: str = "linked",
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self._run(
            self._link_identities(source_identity, target_identity, relationship_type, metadata)
        )

    def unlink_identities(
        self,
        source_identity: str,
        target_identity: str,
        relationship_type: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Remove the link(s) (an operator action). The removal is recorded: enrollment does
        not re-create the link at the next process start; :meth:`restore_link` undoes it."""
        return self._run(
            self._unlink_identities(source_identity, target_identity, relationship_type, reason)
        )

    def restore_link(
        self, source_identity: str, target_identity: str, relationship_type: str | None = None
    ) -> dict[str, Any]:
        """Undo an operator's :meth:`unlink_identities`: the link comes back with the scope it
        had, and enrollment may declare it again."""
        return self._run(self._restore_link(source_identity, target_identity, relationship_type))

    def list_link_removals(self, aztp_id: str | None = None) -> list[dict[str, Any]]:
        """The links operators removed (``state: removed_by_operator``, who, when, why)."""
        return self._run(self._list_link_removals(aztp_id))

    def list_links(self, aztp_id: str | None = None) -> list[dict[str, Any]]:
        """The organization's links (or those of ``aztp_id``), each with its ``scope``:
        ``organization`` (made through the AZTP API; holds everywhere) or ``flow`` (a grant an
        adapter declared for a crew; holds in ``identityFlowIds`` only)."""
        return self._run(self._list_links(aztp_id))

    # ----------------------------------------------------------------- policies

    def create_policy(
        self, name: str, document: Mapping[str, Any], code: str | None = None
    ) -> dict[str, Any]:
        return self._run(self._create_policy(name, document, code))

    def attach_policy(self, aztp_id: str, code: str) -> dict[str, Any]:
        return self._run(self._attach_policy(aztp_id, code))

    def detach_policy(self, aztp_id: str, code: str) -> dict[str, Any]:
        return self._run(self._detach_policy(aztp_id, code))

    def list_policies(self) -> list[dict[str, Any]]:
        """See :meth:`Aztp.list_policies`."""
        return self._run(self._list_policies())

    def get_policy(self, aztp_id: str) -> list[dict[str, Any]]:
        return self._run(self._get_policy(aztp_id))

    def check_identity_policy_permissions(
        self, aztp_id: str, options: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return self._run(self._check_identity_policy_permissions(aztp_id, options))

    def oiap_evaluate(self, aztp_id: str, requested_resource: str, user_id: str) -> dict[str, Any]:
        return self._run(self._oiap_evaluate(aztp_id, requested_resource, user_id))

    # ----------------------------------------------------------------- flows

    def flow_health(self) -> dict[str, Any]:
        """Whether the flow service is up (the official client's meaning)."""
        return self._run(self._flow_health())

    def get_flow_health(self, flow_id: str) -> dict[str, Any]:
        """Per-flow health: share of members valid in the flow (healthy >= 90 %, warning >= 70 %)."""
        return self._run(self._get_flow_health(flow_id))

    def create_flow(
        self,
        name: str,
        description: str | None = None,
        discoverable: str = "public",
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self._run(self._create_flow(name, description, discoverable, tags, metadata))

    def ensure_flow(
        self, name: str, discoverable: str = "private", description: str | None = None
    ) -> dict[str, Any]:
        """The visible flow named ``name``, created (``discoverable``) when missing: what a
        script that runs again should call instead of ``create_flow``."""
        return self._run(self._ensure_flow(name, discoverable, description))

    def update_flow(
        self,
        flow_id: str,
        name: str | None = None,
        description: str | None = None,
        discoverable: str | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self._run(
            self._update_flow(flow_id, name, description, discoverable, tags, metadata)
        )

    def delete_flow(self, flow_id: str) -> dict[str, Any]:
        return self._run(self._delete_flow(flow_id))

    def get_flow(self, flow_id: str) -> dict[str, Any]:
        return self._run(self._get_flow(flow_id))

    def flow(self, flow_id: str) -> FlowRecord:
        """Typed flow record."""
        return self._run(self._flow(flow_id))

    def list_flows(self) -> list[dict[str, Any]]:
        return self._run(self._list_flows())

    def add_identity_to_flow(self, identity_flow_id: str, aztp_id: str) -> dict[str, Any]:
        return self._run(self._add_identity_to_flow(identity_flow_id, aztp_id))

    def remove_identity_from_flow(self, identity_flow_id: str, aztp_id: str) -> dict[str, Any]:
        return self._run(self._remove_identity_from_flow(identity_flow_id, aztp_id))

    def revoke_flow_identity(
        self, aztp_id: str, identity_flow_id: str, reason: str | None = None
    ) -> dict[str, Any]:
        return self._run(self._revoke_flow_identity(aztp_id, identity_flow_id, reason))

    def reinstate_flow_identity(self, aztp_id: str, identity_flow_id: str) -> dict[str, Any]:
        return self._run(self._reinstate_flow_identity(aztp_id, identity_flow_id))

    # ----------------------------------------------------------------- federation

    def federate(self, trust_domain: str) -> dict[str, Any]:
        """Trust another organization's trust domain. Cross-domain connections are authorized
        only once both organizations trust each other (and a link, and the policy, allow it)."""
        return self._run(self._federate(trust_domain))

    def unfederate(self, trust_domain: str) -> dict[str, Any]:
        """Withdraw that trust; cross-domain authorization fails again at once."""
        return self._run(self._unfederate(trust_domain))

    # ----------------------------------------------------------------- decisions

    def explain(
        self,
        agent: str,
        tool: str,
        flow_id: str,
        tool_name: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """See :meth:`Aztp.explain`."""
        return self._run(self._explain(agent, tool, flow_id, tool_name, context))

    # ----------------------------------------------------------------- audit

    def audit(self, limit: int | None = None, action: str | None = None) -> list[dict[str, Any]]:
        return self._run(self._audit(limit, action))

    def verify_audit(
        self, checkpoint: Mapping[str, Any] | str | None = None, public_key: str | None = None
    ) -> dict[str, Any]:
        """See :meth:`Aztp.verify_audit`."""
        return self._run(self._verify_audit(checkpoint, public_key))

    def audit_checkpoint(self) -> dict[str, Any]:
        """See :meth:`Aztp.audit_checkpoint`."""
        return self._run(self._audit_checkpoint())

    def audit_checkpoint_key(self) -> dict[str, str]:
        """See :meth:`Aztp.audit_checkpoint_key`."""
        return self._run(self._audit_checkpoint_key())
