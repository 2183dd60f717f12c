"""The decision state of one organization (data, kept current in place).

The authority loads it from the store (embedded), or the remote backend builds it from the
server; from then on its owner keeps it current by applying the organization's change records
(:mod:`.changes`) in place — O(change), never a reload. The rules (:mod:`.rules`) and the fast
path (:mod:`.fastpath`) read it and never change it, except for the fast path's memo of the
decisions already made on it, which every apply replaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..policy import Statement

__all__ = ["DecisionState", "Snapshot"]


@dataclass(slots=True, eq=False)
class DecisionState:
    """Decision state of one organization at one store revision.

    * ``identities``: aztp_id -> status (``"active"`` or ``"revoked"``)
    * ``members``: flow_id -> the aztp_ids that are members of the flow
    * ``flow_revoked``: flow_id -> the aztp_ids revoked in that flow, kept even when the
      identity left the flow (a flow revocation survives remove + re-add)
    * ``links``: the (source, target) pairs that authorize source -> target everywhere
      (organization-wide links; symmetric relationships are stored in both directions)
    * ``flow_links``: flow_id -> the pairs authorized in that flow only (the grants adapters
      declare for a crew of that flow)
    * ``policies``: aztp_id -> statements of every policy attached to it
    * ``flows``: flow_id -> name; ``flow_owners``: flow_id -> owner user id;
      ``public_flows``: the flows every user of the organization may see
    * ``revision``: the store revision of the last write applied to this organization;
      ``position``: that write's place in the organization's change log (0: none yet)

    The containers are mutable because :func:`.changes.apply` updates them in place; given
    other mappings and sets (frozensets, read-only views), the constructor copies them once.
    """

    organization: str
    revision: int
    identities: dict[str, str] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)
    flow_revoked: dict[str, set[str]] = field(default_factory=dict)
    links: set[tuple[str, str]] = field(default_factory=set)
    flow_links: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    policies: dict[str, tuple[Statement, ...]] = field(default_factory=dict)
    flows: dict[str, str] = field(default_factory=dict)
    flow_owners: dict[str, str] = field(default_factory=dict)
    public_flows: set[str] = field(default_factory=set)
    position: int = 0
    #: Decisions already made on this state, owned by :mod:`.fastpath`: the one memo. Keyed
    #: by :class:`~.fastpath.DecisionKey`; never holds context-dependent results. Replaced
    #: (not cleared) by every apply.
    memo: dict[Any, Any] = field(default_factory=dict, repr=False)
    #: The identities with an attached policy statement that has a Condition, and whether
    #: there are any (results then depend on the call's context and are not memoized): a
    #: plain attribute, read on the fast path without a call.
    conditional_ids: set[str] = field(init=False, repr=False)
    conditional: bool = field(init=False, repr=False)
    #: Owned by :mod:`.fastpath` (a store with change signals): the store's change token at
    #: which this state was last confirmed current (-1: never), and the organization's change
    #: signal read before the store read it reflects (None: none to trust).
    token: int = field(default=-1, repr=False)
    signal: int | None = field(default=None, repr=False)
    #: Owned by :mod:`.fastpath`: the store's clock read just before ``signal`` (None: none):
    #: a subject whose slot is still at most this value was not touched since the state's
    #: read (``aztp_agents.store.org_signals``).
    clock: int | None = field(default=None, repr=False)
    #: Owned by :mod:`.fastpath`: decisions answered on this state since its organization
    #: was written elsewhere (the state behind; see ``fastpath.BEHIND_USES``).
    behind_uses: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if type(self.identities) is not dict:
            self.identities = dict(self.identities)
        self.members = _sets(self.members)
        self.flow_revoked = _sets(self.flow_revoked)
        if type(self.links) is not set:
            self.links = set(self.links)
        self.flow_links = _sets(self.flow_links)
        if type(self.policies) is not dict:
            self.policies = dict(self.policies)
        if type(self.flows) is not dict:
            self.flows = dict(self.flows)
        if type(self.flow_owners) is not dict:
            self.flow_owners = dict(self.flow_owners)
        if type(self.public_flows) is not set:
            self.public_flows = set(self.public_flows)
        self.conditional_ids = {
            aztp_id for aztp_id, sts in self.policies.items() if any(st.condition for st in sts)
        }
        self.conditional = bool(self.conditional_ids)

    #: Past this many memoized decisions, an apply drops the memo instead of sifting it.
    MEMO_SIFT_LIMIT = 4096

    def forget(self, identities: set[str], flows: set[str]) -> None:
        """Replace the memo by one without the decisions that involve ``identities`` (as agent
        or tool) or ``flows``: a write about an unrelated identity leaves the memoized
        decisions of the others in place. (Memo keys are :class:`~.fastpath.DecisionKey`
        tuples: ``(user_id, flow_id, agent, tool, tool_name, enforce)``; a test holds the
        two to the same order.)"""
        memo = self.memo
        if len(memo) > self.MEMO_SIFT_LIMIT:
            self.memo = {}
            return
        self.memo = {
            key: made
            for key, made in memo.items()
            if key[1] not in flows and key[2] not in identities and key[3] not in identities
        }

    def flow_visible(self, flow_id: str, user_id: str) -> bool:
        """Public flows are visible to every user of the organization; private ones only to
        their owner."""
        return flow_id in self.public_flows or self.flow_owners.get(flow_id) == user_id


def _sets(table: Any) -> dict[str, Any]:
    """``table`` as a dict of mutable sets (copied only where it is not one already)."""
    if type(table) is dict and all(type(v) is set for v in table.values()):
        return table
    return {k: set(v) for k, v in table.items()}


#: The former name of :class:`DecisionState`.
Snapshot = DecisionState
