"""The decision state of one organization at one store revision (pure data).

The authority loads it from the store (embedded), or the remote backend builds it from the
server's ``GET /v1/state`` answer; the rules (:mod:`.rules`) and the fast path
(:mod:`.fastpath`) read it and never change it, except for the fast path's memo of decisions
already made on it (a new revision is a new state with an empty memo).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..policy import Statement

__all__ = ["DecisionState", "Snapshot"]

_EMPTY: Mapping[Any, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
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
    """

    organization: str
    revision: int
    identities: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    members: Mapping[str, frozenset[str]] = field(default_factory=lambda: _EMPTY)
    flow_revoked: Mapping[str, frozenset[str]] = field(default_factory=lambda: _EMPTY)
    links: frozenset[tuple[str, str]] = frozenset()
    flow_links: Mapping[str, frozenset[tuple[str, str]]] = field(default_factory=lambda: _EMPTY)
    policies: Mapping[str, tuple[Statement, ...]] = field(default_factory=lambda: _EMPTY)
    flows: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    flow_owners: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    public_flows: frozenset[str] = frozenset()
    #: Decisions already made on this (immutable) state, owned by :mod:`.fastpath`: the one
    #: memo. Keyed by :class:`~.fastpath.DecisionKey`; never holds context-dependent results.
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    #: Whether any attached policy statement has a Condition (results then depend on the
    #: call's context and are not memoized). Worked out once, at construction.
    conditional: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "conditional", any(st.condition for sts in self.policies.values() for st in sts)
        )

    def flow_visible(self, flow_id: str, user_id: str) -> bool:
        """Public flows are visible to every user of the organization; private ones only to
        their owner."""
        return flow_id in self.public_flows or self.flow_owners.get(flow_id) == user_id


#: The former name of :class:`DecisionState`.
Snapshot = DecisionState
