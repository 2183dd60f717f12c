"""Changes to an organization's decision state: the records of the store's change log, and
applying them to a :class:`~.state.DecisionState` in place (pure; no I/O).

Every write that changes decision state appends, in its own transaction, one record per part
of the state it changed. A record carries the part's **resulting value**, never a delta
("agent/x is now revoked", "these are now the grants from agent/x to tool/y"), so that:

* applying a record needs nothing but the record (no read of the store);
* applying is idempotent: a record applied twice, or a batch re-applied after a partial
  apply, leaves the same state;
* the cost of applying is the size of the change (O(change)), never of the organization; the
  one exception is :class:`FlowDeleted`, which drops that flow's members (O(flow)).

Records travel as JSON (the store's log rows, the server's change feed): :func:`encode` and
:func:`decode`. An unknown ``kind`` is an error (:class:`UnknownChange`): a follower that meets
one must reload the whole state, never skip it.

Concurrency: :func:`apply` mutates the state's containers in place. Its owner serializes it
with every reader that *iterates* the state (membership tests and dict lookups are safe
against a concurrent apply under the GIL; iteration is not) and with decisions that are not
memoized. The memo is replaced (not cleared) at the end of an apply, by a copy without the
decisions the changes involve (:meth:`~.state.DecisionState.forget`), so a decision computed
on a half-applied state can only have been stored in the discarded memo.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..policy import Statement, parse_document
from .state import DecisionState

__all__ = [
    "AttachedPolicies",
    "FlowDeleted",
    "FlowRevocation",
    "FlowSettings",
    "Grants",
    "IdentityStatus",
    "Membership",
    "StateChange",
    "UnknownChange",
    "apply",
    "decode",
    "encode",
    "involved",
]


@dataclass(frozen=True, slots=True)
class IdentityStatus:
    """The identity's status now: ``"active"``, ``"revoked"``, or ``None`` (it no longer
    exists in the organization)."""

    aztp_id: str
    status: str | None


@dataclass(frozen=True, slots=True)
class Membership:
    """Whether the identity is now a member of the flow."""

    flow_id: str
    aztp_id: str
    member: bool


@dataclass(frozen=True, slots=True)
class FlowRevocation:
    """Whether the identity is now revoked in the flow (kept when it leaves the flow)."""

    flow_id: str
    aztp_id: str
    revoked: bool


@dataclass(frozen=True, slots=True)
class Grants:
    """Everything that now authorizes ``source`` -> ``target`` (one direction): an
    organization-wide link, and the flows with a flow-scoped link. Several link rows may grant
    one pair (two relationship types, a symmetric link read backwards): the writer works out
    their union, so removing one link never removes a grant another link still gives."""

    source: str
    target: str
    org_wide: bool
    flows: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AttachedPolicies:
    """The policies now attached to the identity: ``(code, document)`` pairs, documents as
    stored (validated when written)."""

    aztp_id: str
    policies: tuple[tuple[str, Mapping[str, Any]], ...]


@dataclass(frozen=True, slots=True)
class FlowSettings:
    """The flow exists now with this name, owner and visibility (created or updated).
    ``created``: by this write (it did not exist before: a follower resumed from before the
    write saw nothing of it, so the feed can tell what it saw)."""

    flow_id: str
    name: str
    owner: str | None
    public: bool
    created: bool = False


@dataclass(frozen=True, slots=True)
class FlowDeleted:
    """The flow no longer exists: its members, flow revocations and flow-scoped grants go."""

    flow_id: str


StateChange = (
    IdentityStatus
    | Membership
    | FlowRevocation
    | Grants
    | AttachedPolicies
    | FlowSettings
    | FlowDeleted
)


class UnknownChange(ValueError):
    """A change record this version cannot read: reload the whole state instead."""


# --- JSON ------------------------------------------------------------------------------

_KINDS: dict[type[Any], str] = {
    IdentityStatus: "identity",
    Membership: "member",
    FlowRevocation: "flow_revoked",
    Grants: "grants",
    AttachedPolicies: "policies",
    FlowSettings: "flow",
    FlowDeleted: "flow_deleted",
}


def encode(change: StateChange) -> dict[str, Any]:
    """The record as JSON-ready data: ``{"kind": ..., <fields>}``."""
    if isinstance(change, IdentityStatus):
        return {"kind": "identity", "id": change.aztp_id, "status": change.status}
    if isinstance(change, Membership):
        return {"kind": "member", "flow": change.flow_id, "id": change.aztp_id, "on": change.member}
    if isinstance(change, FlowRevocation):
        return {
            "kind": "flow_revoked",
            "flow": change.flow_id,
            "id": change.aztp_id,
            "on": change.revoked,
        }
    if isinstance(change, Grants):
        return {
            "kind": "grants",
            "source": change.source,
            "target": change.target,
            "org": change.org_wide,
            "flows": sorted(change.flows),
        }
    if isinstance(change, AttachedPolicies):
        return {
            "kind": "policies",
            "id": change.aztp_id,
            "policies": [{"code": code, "document": dict(doc)} for code, doc in change.policies],
        }
    if isinstance(change, FlowSettings):
        data = {
            "kind": "flow",
            "flow": change.flow_id,
            "name": change.name,
            "owner": change.owner,
            "public": change.public,
        }
        if change.created:  # (absent, not false: the records of earlier writers)
            data["created"] = True
        return data
    if isinstance(change, FlowDeleted):
        return {"kind": "flow_deleted", "flow": change.flow_id}
    raise TypeError(f"not a state change: {change!r}")


def decode(data: Mapping[str, Any]) -> StateChange:
    """The record ``data`` describes; :class:`UnknownChange` when it is not one this version
    knows (a newer writer's kind, or a malformed record)."""
    try:
        kind = data["kind"]
        if kind == "identity":
            return IdentityStatus(_text(data["id"]), _opt_text(data["status"]))
        if kind == "member":
            return Membership(_text(data["flow"]), _text(data["id"]), _flag(data["on"]))
        if kind == "flow_revoked":
            return FlowRevocation(_text(data["flow"]), _text(data["id"]), _flag(data["on"]))
        if kind == "grants":
            return Grants(
                _text(data["source"]),
                _text(data["target"]),
                _flag(data["org"]),
                tuple(_text(f) for f in data["flows"]),
            )
        if kind == "policies":
            return AttachedPolicies(
                _text(data["id"]),
                tuple((_text(p["code"]), dict(p["document"])) for p in data["policies"]),
            )
        if kind == "flow":
            return FlowSettings(
                _text(data["flow"]),
                _text(data["name"]),
                _opt_text(data["owner"]),
                _flag(data["public"]),
                _flag(data.get("created", False)),
            )
        if kind == "flow_deleted":
            return FlowDeleted(_text(data["flow"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise UnknownChange(f"malformed state change {data!r}: {exc}") from None
    raise UnknownChange(f"unknown state change kind {kind!r}")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _opt_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__}")
    return value


# --- applying --------------------------------------------------------------------------


def apply(
    state: DecisionState, changes: Iterable[StateChange], *, revision: int, position: int
) -> None:
    """Apply ``changes`` (one write's records, in order) to ``state`` in place, and mark it
    at ``revision`` (the store revision the write made) and ``position`` (the write's place in
    the organization's change log). Replaces the memo at the end (see the module's note)."""
    identities: set[str] = set()
    flows: set[str] = set()
    for change in changes:
        _apply_one(state, change)
        _involved(change, identities, flows)
    state.revision = revision
    state.position = position
    state.conditional = bool(state.conditional_ids)
    state.forget(identities, flows)


def involved(changes: Iterable[StateChange]) -> set[str]:
    """The identities (aztp ids) and flows (ids) that ``changes`` involve: a tool-call
    decision whose agent, tool and flow are none of them reads nothing the changes changed
    (the rules read only those parts of the state), so it is the same before and after them.
    The memo keeps such decisions (:func:`apply`), and another process's write touches only
    these subjects' signals (``aztp_agents.store.org_signals``)."""
    identities: set[str] = set()
    flows: set[str] = set()
    for change in changes:
        _involved(change, identities, flows)
    return identities | flows


def _involved(change: StateChange, identities: set[str], flows: set[str]) -> None:
    """What a memoized decision must involve to be affected by ``change``."""
    if isinstance(change, (IdentityStatus, AttachedPolicies, Membership, FlowRevocation)):
        identities.add(change.aztp_id)
    elif isinstance(change, Grants):
        identities.update((change.source, change.target))
    elif isinstance(change, (FlowSettings, FlowDeleted)):
        flows.add(change.flow_id)


def _apply_one(state: DecisionState, change: StateChange) -> None:
    if isinstance(change, IdentityStatus):
        if change.status is None:
            state.identities.pop(change.aztp_id, None)
        else:
            state.identities[change.aztp_id] = change.status
    elif isinstance(change, Membership):
        _toggle(state.members, change.flow_id, change.aztp_id, change.member)
    elif isinstance(change, FlowRevocation):
        _toggle(state.flow_revoked, change.flow_id, change.aztp_id, change.revoked)
    elif isinstance(change, Grants):
        _set_grants(state, change.source, change.target, change.org_wide, change.flows)
    elif isinstance(change, AttachedPolicies):
        _set_policies(state, change.aztp_id, [doc for _code, doc in change.policies])
    elif isinstance(change, FlowSettings):
        state.flows[change.flow_id] = change.name
        if change.owner is None:
            state.flow_owners.pop(change.flow_id, None)
        else:
            state.flow_owners[change.flow_id] = change.owner
        if change.public:
            state.public_flows.add(change.flow_id)
        else:
            state.public_flows.discard(change.flow_id)
    elif isinstance(change, FlowDeleted):
        # Restrictive parts first: a decision racing this apply sees the flow gone.
        state.flows.pop(change.flow_id, None)
        state.public_flows.discard(change.flow_id)
        state.flow_owners.pop(change.flow_id, None)
        state.members.pop(change.flow_id, None)
        state.flow_links.pop(change.flow_id, None)
        state.flow_revoked.pop(change.flow_id, None)
    else:
        raise UnknownChange(f"not a state change: {change!r}")


def _toggle(table: dict[str, set[str]], flow_id: str, aztp_id: str, on: bool) -> None:
    if on:
        table.setdefault(flow_id, set()).add(aztp_id)
    else:
        ids = table.get(flow_id)
        if ids is not None:
            ids.discard(aztp_id)


def _set_grants(
    state: DecisionState, source: str, target: str, org_wide: bool, flows: Sequence[str]
) -> None:
    pair = (source, target)
    wanted = set(flows)
    # Removals first (fail closed while half-applied), then additions.
    if not org_wide:
        state.links.discard(pair)
    for flow_id, pairs in state.flow_links.items():
        if flow_id not in wanted:
            pairs.discard(pair)
    for flow_id in wanted:
        state.flow_links.setdefault(flow_id, set()).add(pair)
    if org_wide:
        state.links.add(pair)


def _set_policies(
    state: DecisionState, aztp_id: str, documents: Sequence[Mapping[str, Any]]
) -> None:
    statements: list[Statement] = []
    for document in documents:
        statements.extend(_statements(json.dumps(document, sort_keys=True)))
    if statements:
        state.policies[aztp_id] = tuple(statements)
    else:
        state.policies.pop(aztp_id, None)
    if any(st.condition for st in statements):
        state.conditional_ids.add(aztp_id)
    else:
        state.conditional_ids.discard(aztp_id)


@functools.lru_cache(maxsize=1024)
def _statements(document: str) -> tuple[Statement, ...]:
    """A policy document's statements, parsed once per distinct document (parsing validates
    with pydantic, ~50 us: an identity's policies change far more often than the documents
    they are made of). Statements are immutable, so sharing them is safe."""
    return tuple(parse_document(json.loads(document)).statement)


def kinds() -> Mapping[type[Any], str]:
    """Every record type and its JSON ``kind`` (for tests that must cover each kind)."""
    return dict(_KINDS)
