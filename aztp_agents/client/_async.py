"""The :class:`Aztp` client: the official ``aztp-client`` API, with coroutine methods.

Methods never block the event loop: embedded operations run in a worker thread; remote ones
use one pooled ``httpx.AsyncClient`` per loop. Each method runs its plan from
:class:`~._base.ClientBase`; :class:`~._sync.SyncAztp` runs the same plans blocking.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from ..wire import FlowRecord, Identity, IdentityRecord
from ._base import ClientBase
from ._plan import Plan, run_async, run_sync
from ._secured_agent import SecuredAgent
from ._sync import SyncAztp

__all__ = ["Aztp"]

T = TypeVar("T")


class Aztp(ClientBase):
    """AZTP client. ``Aztp()`` is embedded; ``Aztp(api_key=..., base_url=...)`` is remote."""

    async def _run(self, plan: Plan[T]) -> T:
        return await run_async(self.backend, plan)

    @functools.cached_property
    def sync(self) -> SyncAztp:
        """The same methods, blocking: ``client.sync.revoke_identity(aztp_id)``. For code that
        is not async (tool bodies, task callbacks, scripts). Inside a running event loop,
        ``await`` the async methods instead."""
        return self._sibling(SyncAztp)

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
        self,
        crew_agent: object | None = None,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> SecuredAgent:
        """Issue (or re-connect) the identity ``name`` and wrap ``crew_agent`` with it."""
        return await self._run(self._secure_connect(crew_agent, name, config))

    def secure_connect_sync(
        self,
        crew_agent: object | None = None,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> SecuredAgent:
        """Blocking :meth:`secure_connect`, for synchronous callers (framework adapters)."""
        return run_sync(self.backend, self._secure_connect(crew_agent, name, config))

    async def verify_identity(
        self, agent: SecuredAgent, identity_flow_id: str | None = None
    ) -> bool:
        return await self._run(self._verify_identity(agent, identity_flow_id))

    async def verify_identity_by_aztp_id(
        self, aztp_id: str, identity_flow_id: str | None = None
    ) -> bool:
        return await self._run(self._verify_identity_by_aztp_id(aztp_id, identity_flow_id))

    async def verify(self, aztp_id: str, identity_flow_id: str | None = None) -> dict[str, Any]:
        """Like :meth:`verify_identity_by_aztp_id` but with the reason and message."""
        return await self._run(self._verify(aztp_id, identity_flow_id))

    async def verify_identity_using_agent_name(
        self,
        name: str,
        trust_domain: str = "aztp.network",
        workload: str = "workload",
        environment: str = "production",
        method: str = "node",
    ) -> bool:
        return await self._run(
            self._verify_identity_using_agent_name(
                name, trust_domain, workload, environment, method
            )
        )

    async def verify_authorize_identity_connection(
        self,
        fromAgentID: str | None = None,
        toAgentID: str | None = None,
        policyCode: str | None = None,
        *,
        from_aztp_id: str | None = None,
        to_aztp_id: str | None = None,
        policy_code: str | None = None,
    ) -> bool:
        return await self._run(
            self._verify_authorize_identity_connection(
                fromAgentID or from_aztp_id, toAgentID or to_aztp_id, policyCode or policy_code
            )
        )

    async def authorize(
        self, from_aztp_id: str, to_aztp_id: str, policy_code: str | None = None
    ) -> dict[str, Any]:
        """Like :meth:`verify_authorize_identity_connection` but with the reason (``no_link``,
        ``policy_denied``, ...) and message."""
        return await self._run(self._authorize(from_aztp_id, to_aztp_id, policy_code))

    async def verify_credential(self, certificate_pem: str) -> dict[str, Any]:
        """Live check of an X.509-SVID: it chains to the organization's CA, its identity is
        active, and it was issued after the identity's last reissue (offline verifiers cannot
        know the last two)."""
        return await self._run(self._verify_credential(certificate_pem))

    async def get_identity(self, agent: SecuredAgent) -> str | None:
        """The identity document as a JSON string ``{"success", "message", "data"}``."""
        return await self._run(self._get_identity(agent))

    async def get_identity_by_name(self, name: str) -> str:
        return await self._run(self._get_identity_by_name(name))

    async def get_identity_by_aztp_id(self, aztp_id: str) -> str:
        return await self._run(self._get_identity_by_aztp_id(aztp_id))

    async def identity(self, aztp_id: str) -> IdentityRecord:
        """Typed identity record."""
        return await self._run(self._identity(aztp_id))

    async def list_identities(self) -> list[dict[str, Any]]:
        return await self._run(self._list_identities())

    async def discover_identity(
        self, trust_domain: str | None = None, requestor_identity: str | None = None
    ) -> str:
        return await self._run(self._discover_identity(trust_domain, requestor_identity))

    async def revoke_identity(self, aztp_id: str, reason: str | None = None) -> str:
        return await self._run(self._revoke_identity(aztp_id, reason))

    async def reissue_identity(self, aztp_id: str) -> str:
        return await self._run(self._reissue_identity(aztp_id))

    async def issue_credential(self, aztp_id: str, *, ttl: int = 3600) -> Identity:
        """A fresh X.509-SVID (and key) for an active identity."""
        return await self._run(self._issue_credential(aztp_id, ttl))

    async def fetch_jwt_svid(
        self, aztp_id: str, audience: str | Sequence[str], *, ttl: int = 300
    ) -> str:
        return await self._run(self._fetch_jwt_svid(aztp_id, audience, ttl))

    async def get_trust_bundle(self, trust_domain: str | None = None) -> dict[str, Any]:
        return await self._run(self._get_trust_bundle(trust_domain))

    # ----------------------------------------------------------------- links

    async def link_identities(
        self,
        source_identity: str,
        target_identity: str,
        relationship_type: str = "linked",
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return await self._run(
            self._link_identities(source_identity, target_identity, relationship_type, metadata)
        )

    async def unlink_identities(
        self,
        source_identity: str,
        target_identity: str,
        relationship_type: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Remove the link(s) (an operator action). The removal is recorded: enrollment does
        not re-create the link at the next process start; :meth:`restore_link` undoes it."""
        return await self._run(
            self._unlink_identities(source_identity, target_identity, relationship_type, reason)
        )

    async def restore_link(
        self, source_identity: str, target_identity: str, relationship_type: str | None = None
    ) -> dict[str, Any]:
        """Undo an operator's :meth:`unlink_identities`: the link comes back with the scope it
        had, and enrollment may declare it again."""
        return await self._run(
            self._restore_link(source_identity, target_identity, relationship_type)
        )

    async def list_link_removals(self, aztp_id: str | None = None) -> list[dict[str, Any]]:
        """The links operators removed (``state: removed_by_operator``, who, when, why)."""
        return await self._run(self._list_link_removals(aztp_id))

    async def list_links(self, aztp_id: str | None = None) -> list[dict[str, Any]]:
        """The organization's links (or those of ``aztp_id``), each with its ``scope``:
        ``organization`` (made through the AZTP API; holds everywhere) or ``flow`` (a grant an
        adapter declared for a crew; holds in ``identityFlowIds`` only)."""
        return await self._run(self._list_links(aztp_id))

    # ----------------------------------------------------------------- policies

    async def create_policy(
        self, name: str, document: Mapping[str, Any], code: str | None = None
    ) -> dict[str, Any]:
        return await self._run(self._create_policy(name, document, code))

    async def attach_policy(self, aztp_id: str, code: str) -> dict[str, Any]:
        return await self._run(self._attach_policy(aztp_id, code))

    async def detach_policy(self, aztp_id: str, code: str) -> dict[str, Any]:
        return await self._run(self._detach_policy(aztp_id, code))

    async def list_policies(self) -> list[dict[str, Any]]:
        """Every policy of the organization (``code``, ``policyName``, ``policyStatement``,
        ``createdAt``) and the identities each is attached to (``attachedTo``)."""
        return await self._run(self._list_policies())

    async def get_policy(self, aztp_id: str) -> list[dict[str, Any]]:
        return await self._run(self._get_policy(aztp_id))

    async def check_identity_policy_permissions(
        self, aztp_id: str, options: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return await self._run(self._check_identity_policy_permissions(aztp_id, options))

    async def oiap_evaluate(
        self, aztp_id: str, requested_resource: str, user_id: str
    ) -> dict[str, Any]:
        return await self._run(self._oiap_evaluate(aztp_id, requested_resource, user_id))

    # ----------------------------------------------------------------- flows

    async def flow_health(self) -> dict[str, Any]:
        """Whether the flow service is up (the official client's meaning)."""
        return await self._run(self._flow_health())

    async def get_flow_health(self, flow_id: str) -> dict[str, Any]:
        """Per-flow health: share of members valid in the flow (healthy >= 90 %, warning >= 70 %)."""
        return await self._run(self._get_flow_health(flow_id))

    async def create_flow(
        self,
        name: str,
        description: str | None = None,
        discoverable: str = "public",
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return await self._run(self._create_flow(name, description, discoverable, tags, metadata))

    async def ensure_flow(
        self, name: str, discoverable: str = "private", description: str | None = None
    ) -> dict[str, Any]:
        """The visible flow named ``name``, created (``discoverable``) when missing: what a
        script that runs again should call instead of ``create_flow``."""
        return await self._run(self._ensure_flow(name, discoverable, description))

    async def update_flow(
        self,
        flow_id: str,
        name: str | None = None,
        description: str | None = None,
        discoverable: str | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return await self._run(
            self._update_flow(flow_id, name, description, discoverable, tags, metadata)
        )

    async def delete_flow(self, flow_id: str) -> dict[str, Any]:
        return await self._run(self._delete_flow(flow_id))

    async def get_flow(self, flow_id: str) -> dict[str, Any]:
        return await self._run(self._get_flow(flow_id))

    async def flow(self, flow_id: str) -> FlowRecord:
        """Typed flow record."""
        return await self._run(self._flow(flow_id))

    async def list_flows(self) -> list[dict[str, Any]]:
        return await self._run(self._list_flows())

    async def add_identity_to_flow(self, identity_flow_id: str, aztp_id: str) -> dict[str, Any]:
        return await self._run(self._add_identity_to_flow(identity_flow_id, aztp_id))

    async def remove_identity_from_flow(
        self, identity_flow_id: str, aztp_id: str
    ) -> dict[str, Any]:
        return await self._run(self._remove_identity_from_flow(identity_flow_id, aztp_id))

    async def revoke_flow_identity(
        self, aztp_id: str, identity_flow_id: str, reason: str | None = None
    ) -> dict[str, Any]:
        return await self._run(self._revoke_flow_identity(aztp_id, identity_flow_id, reason))

    async def reinstate_flow_identity(self, aztp_id: str, identity_flow_id: str) -> dict[str, Any]:
        return await self._run(self._reinstate_flow_identity(aztp_id, identity_flow_id))

    # ----------------------------------------------------------------- federation

    async def federate(self, trust_domain: str) -> dict[str, Any]:
        """Trust another organization's trust domain. Cross-domain connections are authorized
        only once both organizations trust each other (and a link, and the policy, allow it)."""
        return await self._run(self._federate(trust_domain))

    async def unfederate(self, trust_domain: str) -> dict[str, Any]:
        """Withdraw that trust; cross-domain authorization fails again at once."""
        return await self._run(self._unfederate(trust_domain))

    # ----------------------------------------------------------------- decisions

    async def explain(
        self,
        agent: str,
        tool: str,
        flow_id: str,
        tool_name: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Why a call of ``tool`` by ``agent`` in flow ``flow_id`` is (or would be) allowed or
        denied now: ``reason`` (what the decision answers), ``detail``, every check in order
        (``checks``: flow known; agent known, active, member, not revoked in the flow; the
        same for the tool; link; policy) with ``status`` pass/fail/skip and a ``fix``
        command, ``linkScope`` and the policy ``statements`` that decided (policy code,
        index, Sid, effect, actions, resources). ``tool_name`` is the tool's name as the
        agent calls it (policies on ``tool:NAME``); ``context`` the call's condition keys."""
        return await self._run(self._explain(agent, tool, flow_id, tool_name, context))

    # ----------------------------------------------------------------- audit

    async def audit(
        self, limit: int | None = None, action: str | None = None
    ) -> list[dict[str, Any]]:
        return await self._run(self._audit(limit, action))

    async def verify_audit(
        self, checkpoint: Mapping[str, Any] | str | None = None, public_key: str | None = None
    ) -> dict[str, Any]:
        """Check the audit hash chain; with ``checkpoint`` (from :meth:`audit_checkpoint`, as
        a document or its JSON text) also that the chain still holds the checkpointed history:
        not truncated, rewritten or forked. ``public_key`` (PEM, from
        :meth:`audit_checkpoint_key`) is the key to check its signature with; without it, the
        organization's own checkpoint key."""
        return await self._run(self._verify_audit(checkpoint, public_key))

    async def audit_checkpoint(self) -> dict[str, Any]:
        """A signed checkpoint of the audit chain's head: keep it outside the store (a file,
        another system) and pass it to :meth:`verify_audit` later."""
        return await self._run(self._audit_checkpoint())

    async def audit_checkpoint_key(self) -> dict[str, str]:
        """The organization's checkpoint public key (``public_key`` PEM, ``kid``)."""
        return await self._run(self._audit_checkpoint_key())
