"""Loading an organization's decision state from the store (what :mod:`aztp_agents.decisions`
decides on)."""

from __future__ import annotations

from sqlalchemy import and_, select

from ..decisions.state import DecisionState
from ..policy import Statement, parse_document
from ..store import Store
from ..store import schema as t
from ._context import SYMMETRIC

__all__ = ["load_state"]


def load_state(store: Store, org_id: str) -> DecisionState:
    """One organization's decision state as committed now (one read transaction)."""
    with store.read() as conn:
        rev = store.revision(conn)
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
    )
