"""What one user of an organization may be told about its decision state (pure; no I/O).

A remote follower holds the organization's state *as its user sees it*: every identity, policy
and organization-wide link, but only the flows the user may see (public flows, and the private
flows the user owns). :func:`user_view` is that state; :func:`filter_changes` is what the
change feed sends that follower for one write, so that applying the filtered records to a
user view (with :func:`~.changes.apply`, the same code the embedded path runs) gives the user
view of the state after the write.

**Tenant isolation.** A record about a flow the user may not see is never sent, and a flow's
owner is never sent. The feed's filter keeps, per follower, whether each flow is visible
(:data:`Visibility`). When a write changes whether a flow is visible to the user (made public,
private, given to another owner), or the filter cannot tell whether it was visible before, the
write is not sent: the follower is told to ``reset`` (load its user view again) — the simplest
rule that never sends a record the user may not see and never leaves the follower holding a
flow the user may no longer see.

In the user view every flow is marked public and has no owner: the follower holds only flows
its user may see, and decides with no user id (the server already chose).
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass

from .changes import (
    FlowDeleted,
    FlowRevocation,
    FlowSettings,
    Grants,
    Membership,
    StateChange,
)
from .state import DecisionState

__all__ = [
    "UNKNOWN",
    "Filtered",
    "Visibility",
    "filter_changes",
    "mark_unknown",
    "settings_touched",
    "user_view",
    "visibility",
]

#: Flow id -> whether the user may see it (``True`` / ``False``), or :data:`UNKNOWN` (the
#: filter cannot tell: a resumed follower's flows whose settings changed since its position).
#: A flow not in the mapping does not exist.
Visibility = MutableMapping[str, "bool | None"]
#: A flow whose visibility to the user is not known: any record about it resets.
UNKNOWN = None


def _visible(owner: str | None, public: bool, user_id: str | None) -> bool:
    """The rule of :meth:`DecisionState.flow_visible`; no user (an organization-wide caller)
    sees every flow."""
    return user_id is None or public or owner == user_id


def visibility(state: DecisionState, user_id: str | None) -> dict[str, bool | None]:
    """Every flow of ``state`` and whether ``user_id`` may see it."""
    return {
        flow_id: _visible(state.flow_owners.get(flow_id), flow_id in state.public_flows, user_id)
        for flow_id in state.flows
    }


def user_view(state: DecisionState, user_id: str | None) -> DecisionState:
    """The state ``user_id``'s follower holds: only the flows the user may see, each marked
    public and without its owner; everything else as it is. A new object (copies)."""
    shown = {f for f, seen in visibility(state, user_id).items() if seen}
    return DecisionState(
        organization=state.organization,
        revision=state.revision,
        identities=dict(state.identities),
        members={f: set(m) for f, m in state.members.items() if f in shown},
        flow_revoked={f: set(m) for f, m in state.flow_revoked.items() if f in shown},
        links=set(state.links),
        flow_links={f: set(p) for f, p in state.flow_links.items() if f in shown},
        policies=dict(state.policies),
        flows={f: n for f, n in state.flows.items() if f in shown},
        flow_owners={},
        public_flows=set(shown),
        position=state.position,
    )


@dataclass(frozen=True, slots=True)
class Filtered:
    """One write's records as ``user_id``'s follower gets them: ``records`` to apply, or
    ``reset`` (send none of them: the follower loads its user view again)."""

    records: tuple[StateChange, ...]
    reset: bool = False


def filter_changes(
    changes: Iterable[StateChange], visible: Visibility, user_id: str | None
) -> Filtered:
    """The records of one write (in order) that ``user_id``'s follower may be sent, given
    ``visible`` (each flow's visibility before the write). Updates ``visible`` in place to
    after the write — also when the answer is a reset, so the filter stays exact for the
    writes after it."""
    out: list[StateChange] = []
    reset = False
    for change in changes:
        if isinstance(change, FlowSettings):
            after = _visible(change.owner, change.public, user_id)
            # created by this write: the follower had nothing of it, whatever ``visible``
            # says of it now (a resumed follower's flows created since are UNKNOWN there)
            new = change.created or change.flow_id not in visible
            before = visible.get(change.flow_id)
            visible[change.flow_id] = after
            if not new and (before is UNKNOWN or before != after):
                reset = True  # what the user sees of the flow changed (or cannot be told)
            elif after:
                out.append(FlowSettings(change.flow_id, change.name, None, True, change.created))
        elif isinstance(change, FlowDeleted):
            was = visible.pop(change.flow_id, False)
            if was is UNKNOWN:
                reset = True
            elif was:
                out.append(change)
        elif isinstance(change, (Membership, FlowRevocation)):
            seen = visible.get(change.flow_id, False)
            if seen is UNKNOWN:
                reset = True
            elif seen:
                out.append(change)
        elif isinstance(change, Grants):
            flows = []
            for flow_id in change.flows:
                seen = visible.get(flow_id, False)
                if seen is UNKNOWN:
                    reset = True
                elif seen:
                    flows.append(flow_id)
            out.append(Grants(change.source, change.target, change.org_wide, tuple(flows)))
        else:  # identity status, attached policies: organization-wide
            out.append(change)
    return Filtered((), True) if reset else Filtered(tuple(out))


def mark_unknown(visible: Visibility, flows: Iterable[str]) -> None:
    """Mark ``flows`` as :data:`UNKNOWN` (their settings changed after the point ``visible``
    describes is known for; see ``server.feed``)."""
    for flow_id in flows:
        visible[flow_id] = UNKNOWN


def settings_touched(changes: Iterable[StateChange]) -> set[str]:
    """The flows whose settings (visibility, owner, existence) ``changes`` set."""
    return {c.flow_id for c in changes if isinstance(c, (FlowSettings, FlowDeleted))}
