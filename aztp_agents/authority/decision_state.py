"""An organization's decision state in the store: loading all of it (:func:`load_state`), and
reading the resulting value of the parts one write touched (:func:`read_changes`), which the
write appends to the change log (:mod:`aztp_agents.store.change_log`).

Both read the same tables the same way, so a state kept current by applying a write's records
equals the state loaded after that write (``tests/authority/test_change_log.py`` checks it
over random sequences of every write). A write names what it touched; it never works out a
delta itself."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection, and_, or_, select

from ..decisions.changes import (
    AttachedPolicies,
    FlowDeleted,
    FlowRevocation,
    FlowSettings,
    Grants,
    IdentityStatus,
    Membership,
    StateChange,
)
from ..decisions.state import DecisionState
from ..policy import Statement, parse_document
from ..store import Store, change_log
from ..store import schema as t

__all__ = [
    "SYMMETRIC",
    "StoreChangeLog",
    "Touched",
    "load_state",
    "read_changes",
    "touched_links",
]

#: Relationship types that authorize both ways.
SYMMETRIC = frozenset({"linked"})


def load_state(store: Store, org_id: str) -> DecisionState:
    """One organization's decision state as committed now (one read transaction)."""
    with store.read() as conn:
        rev = store.revision(conn)
        position = change_log.heads(conn, [org_id])[org_id]
        idents = {
            r.aztp_id: r.status
            for r in conn.execute(
                select(t.identities.c.aztp_id, t.identities.c.status).where(
                    t.identities.c.org_id == org_id
                )
            )
        }
        flow_rows = conn.execute(
            select(
                t.flows.c.id, t.flows.c.name, t.flows.c.discoverable, t.flows.c.owner_user_id
            ).where(t.flows.c.org_id == org_id)
        ).all()
        flows = {r.id: r.name for r in flow_rows}
        members: dict[str, set[str]] = {f: set() for f in flows}
        for r in conn.execute(
            select(t.flow_members.c.flow_id, t.flow_members.c.aztp_id).where(
                t.flow_members.c.flow_id.in_(list(flows))
            )
        ):
            members[r.flow_id].add(r.aztp_id)
        revoked: dict[str, set[str]] = {f: set() for f in flows}
        for r in conn.execute(
            select(t.flow_revocations.c.flow_id, t.flow_revocations.c.aztp_id).where(
                t.flow_revocations.c.flow_id.in_(list(flows))
            )
        ):
            revoked[r.flow_id].add(r.aztp_id)
        scopes: dict[str, list[str]] = {}
        for r in conn.execute(
            select(t.link_flows.c.link_id, t.link_flows.c.flow_id).where(
                t.link_flows.c.org_id == org_id
            )
        ):
            scopes.setdefault(r.link_id, []).append(r.flow_id)
        links: set[tuple[str, str]] = set()
        flow_links: dict[str, set[tuple[str, str]]] = {}
        for r in conn.execute(
            select(
                t.links.c.id, t.links.c.source, t.links.c.target, t.links.c.relationship_type
            ).where(t.links.c.org_id == org_id)
        ):
            pairs = [(r.source, r.target)]
            if r.relationship_type in SYMMETRIC:
                pairs.append((r.target, r.source))
            if r.id not in scopes:  # organization-wide
                links.update(pairs)
            for flow_id in scopes.get(r.id, ()):
                flow_links.setdefault(flow_id, set()).update(pairs)
        policies: dict[str, list[Statement]] = {}
        for r in conn.execute(
            select(t.policy_attachments.c.aztp_id, t.policies.c.document)
            .join(
                t.policies,
                and_(
                    t.policies.c.org_id == t.policy_attachments.c.org_id,
                    t.policies.c.code == t.policy_attachments.c.code,
                ),
            )
            .where(t.policy_attachments.c.org_id == org_id)
        ):
            policies.setdefault(r.aztp_id, []).extend(parse_document(r.document).statement)
    return DecisionState(
        organization=org_id,
        revision=rev,
        identities=idents,
        members=members,
        flow_revoked=revoked,
        links=links,
        flow_links=flow_links,
        policies={k: tuple(v) for k, v in policies.items()},
        flows=flows,
        flow_owners={r.id: r.owner_user_id for r in flow_rows},
        public_flows={r.id for r in flow_rows if r.discoverable == "public"},
        position=position,
    )


@dataclass(slots=True)
class Touched:
    """The parts of one organization's decision state a write changed (by key)."""

    flows: set[str] = field(default_factory=set)
    identities: set[str] = field(default_factory=set)
    #: (flow_id, aztp_id): membership and flow revocation
    members: set[tuple[str, str]] = field(default_factory=set)
    #: (source, target): every link between them, both directions
    links: set[tuple[str, str]] = field(default_factory=set)
    #: aztp_ids whose attached policies changed
    policies: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.flows or self.identities or self.members or self.links or self.policies)


def read_changes(conn: Connection, org_id: str, touched: Touched) -> list[StateChange]:
    """The records of a write that changed ``touched``: each part's value as the write
    transaction ``conn`` sees it now (flows first, so a deleted flow goes before its parts)."""
    out: list[StateChange] = []
    for flow_id in sorted(touched.flows):
        row = conn.execute(
            select(t.flows.c.name, t.flows.c.owner_user_id, t.flows.c.discoverable).where(
                t.flows.c.id == flow_id, t.flows.c.org_id == org_id
            )
        ).first()
        out.append(
            FlowDeleted(flow_id)
            if row is None
            else FlowSettings(flow_id, row.name, row.owner_user_id, row.discoverable == "public")
        )
    if touched.identities:
        status = dict(
            conn.execute(
                select(t.identities.c.aztp_id, t.identities.c.status).where(
                    t.identities.c.org_id == org_id,
                    t.identities.c.aztp_id.in_(sorted(touched.identities)),
                )
            ).all()
        )
        out.extend(IdentityStatus(i, status.get(i)) for i in sorted(touched.identities))
    for flow_id, aztp_id in sorted(touched.members):
        if flow_id in touched.flows and FlowDeleted(flow_id) in out:
            continue
        member = conn.execute(
            select(t.flow_members.c.aztp_id).where(
                t.flow_members.c.flow_id == flow_id, t.flow_members.c.aztp_id == aztp_id
            )
        ).first()
        revoked = conn.execute(
            select(t.flow_revocations.c.aztp_id).where(
                t.flow_revocations.c.flow_id == flow_id, t.flow_revocations.c.aztp_id == aztp_id
            )
        ).first()
        out.append(Membership(flow_id, aztp_id, member is not None))
        out.append(FlowRevocation(flow_id, aztp_id, revoked is not None))
    pairs = sorted({p for a, b in touched.links for p in ((a, b), (b, a))})
    out.extend(_grants(conn, org_id, source, target) for source, target in pairs)
    for aztp_id in sorted(touched.policies):
        attached = conn.execute(
            select(t.policies.c.code, t.policies.c.document)
            .join(
                t.policy_attachments,
                and_(
                    t.policies.c.org_id == t.policy_attachments.c.org_id,
                    t.policies.c.code == t.policy_attachments.c.code,
                ),
            )
            .where(
                t.policy_attachments.c.org_id == org_id, t.policy_attachments.c.aztp_id == aztp_id
            )
            .order_by(t.policies.c.code)
        ).all()
        out.append(AttachedPolicies(aztp_id, tuple((r.code, r.document) for r in attached)))
    return out


def _grants(conn: Connection, org_id: str, source: str, target: str) -> Grants:
    """What authorizes ``source`` -> ``target`` now: the links from source to target, and the
    symmetric ones from target to source (as :func:`load_state` reads them)."""
    rows = conn.execute(
        select(t.links.c.id).where(
            t.links.c.org_id == org_id,
            or_(
                and_(t.links.c.source == source, t.links.c.target == target),
                and_(
                    t.links.c.source == target,
                    t.links.c.target == source,
                    t.links.c.relationship_type.in_(sorted(SYMMETRIC)),
                ),
            ),
        )
    ).all()
    link_ids = [r.id for r in rows]
    scopes: dict[str, set[str]] = {}
    if link_ids:
        for r in conn.execute(
            select(t.link_flows.c.link_id, t.link_flows.c.flow_id).where(
                t.link_flows.c.link_id.in_(link_ids)
            )
        ):
            scopes.setdefault(r.link_id, set()).add(r.flow_id)
    org_wide = any(i not in scopes for i in link_ids)
    flows = sorted({f for fs in scopes.values() for f in fs})
    return Grants(source, target, org_wide, tuple(flows))


def touched_links(conn: Connection, link_ids: Iterable[str]) -> set[tuple[str, str]]:
    """The (source, target) pairs of ``link_ids`` (read before the links go)."""
    ids = list(link_ids)
    if not ids:
        return set()
    return {
        (r.source, r.target)
        for r in conn.execute(
            select(t.links.c.source, t.links.c.target).where(t.links.c.id.in_(ids))
        )
    }


class StoreChangeLog:
    """The store's change log as the decision cache reads it
    (:class:`aztp_agents.decisions.fastpath.ChangeLog`)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def tail(self, org_id: str, position: int) -> tuple[int, change_log.Since]:
        quick = change_log.tail_quick(self.store.quick_rows, org_id, position)
        if quick is not None:
            return quick
        with self.store.read() as conn:
            return self.store.revision(conn), change_log.since(conn, org_id, position)

    def committed(self) -> tuple[int | None, int]:
        """The store's change token, then its revision (in that order: see
        :meth:`aztp_agents.decisions.fastpath.LocalDecisions.invalidate`)."""
        token = self.store.change_token()
        return token, self.store.revision()
