"""Links between identities (who may talk to whom).

A link is **organization-wide** (made through the AZTP API: it authorizes source -> target in
every flow and for ``verify_authorize_identity_connection``) or **flow-scoped** (the grants an
adapter declares for a crew: they authorize tool calls in the flows they were declared for
only, rows of ``link_flows``). One row per (source, target, relationship): its scope is
organization-wide when it has no ``link_flows`` row, else the set of its flows. A link is
never widened by losing its flows: removing its last flow removes the link.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, or_, select

from .._util import now_iso, object_id
from ..errors import (
    NotFoundError,
    ValidationError,
)
from ..store import schema as t
from ._context import (
    SYMMETRIC,
    Component,
    Principal,
    json_value,
    need_aztp_id,
)

__all__ = ["Links"]

_RELATIONSHIP = re.compile(r"[a-z_]{1,64}")


class Links(Component):
    """Links: create, remove, list."""

    def link_identities(
        self,
        p: Principal,
        source: str,
        target: str,
        relationship_type: str = "linked",
        metadata: Mapping[str, Any] | None = None,
        *,
        flow_id: str | None = None,
    ) -> dict[str, Any]:
        """Link ``source`` -> ``target``: organization-wide, or with ``flow_id`` in that flow
        only (added to the flows of an existing flow-scoped link; an organization-wide link
        already holds there and stays as it is). Without ``flow_id`` an existing flow-scoped
        link becomes organization-wide: that is what the caller asked for."""
        if not isinstance(relationship_type, str) or not _RELATIONSHIP.fullmatch(relationship_type):
            raise ValidationError(
                f"relationship_type must match [a-z_]+ (like 'linked', 'parent', 'data_pipeline'), got {relationship_type!r}"
            )
        meta = (
            json_value(dict(metadata or {}), "metadata")
            if metadata is None or isinstance(metadata, Mapping)
            else None
        )
        if meta is None:
            raise ValidationError("metadata must be an object")
        with self.ctx.store.write() as conn:
            src = self.ctx.identities.row(conn, p, source).aztp_id
            dst = self._linkable_target(conn, p, target)
            if src == dst:
                raise ValidationError("an identity cannot be linked to itself")
            flow = None if flow_id is None else self._flow_of(conn, p, flow_id)
            found = and_(
                t.links.c.org_id == p.org_id,
                t.links.c.source == src,
                t.links.c.target == dst,
                t.links.c.relationship_type == relationship_type,
            )
            existing = conn.execute(select(t.links).where(found)).first()
            if existing is None:
                link_id = object_id()
                conn.execute(
                    insert(t.links).values(
                        id=link_id,
                        org_id=p.org_id,
                        source=src,
                        target=dst,
                        relationship_type=relationship_type,
                        metadata=meta,
                        created_at=now_iso(),
                    )
                )
                if flow is not None:
                    self._add_flow(conn, p, link_id, flow)
                self._audit_link(conn, p, src, dst, relationship_type, flow)
            else:
                flows = self._flows_of(conn, [existing.id]).get(existing.id, [])
                if flow is None and flows:
                    # An organization-wide link asked for: the flow-scoped one is widened.
                    conn.execute(delete(t.link_flows).where(t.link_flows.c.link_id == existing.id))
                    self._audit_link(conn, p, src, dst, relationship_type, None)
                elif flow is not None and flows and flow not in flows:
                    self._add_flow(conn, p, existing.id, flow)
                    self._audit_link(conn, p, src, dst, relationship_type, flow)
            row = conn.execute(select(t.links).where(found)).one()
            doc = self._link_doc(row, self._flows_of(conn, [row.id]).get(row.id, []))
        self.ctx.invalidate()
        return doc

    def _flow_of(self, conn: Connection, p: Principal, flow_id: str) -> str:
        row = conn.execute(
            select(t.flows.c.id).where(t.flows.c.id == flow_id, t.flows.c.org_id == p.org_id)
        ).first()
        if row is None:
            raise NotFoundError(f"flow {flow_id!r} not found in this organization")
        return str(row.id)

    @staticmethod
    def _add_flow(conn: Connection, p: Principal, link_id: str, flow_id: str) -> None:
        conn.execute(insert(t.link_flows).values(link_id=link_id, flow_id=flow_id, org_id=p.org_id))

    def _audit_link(
        self,
        conn: Connection,
        p: Principal,
        src: str,
        dst: str,
        relationship_type: str,
        flow_id: str | None,
    ) -> None:
        data: dict[str, Any] = {"target": dst, "relationshipType": relationship_type}
        data["scope"] = "organization" if flow_id is None else "flow"
        if flow_id is not None:
            data["flowId"] = flow_id
        self.ctx.audit(conn, p.org_id, p.user_id, "link.create", src, data)

    @staticmethod
    def _flows_of(conn: Connection, link_ids: list[str]) -> dict[str, list[str]]:
        """link id -> the flows it is scoped to (absent: organization-wide)."""
        out: dict[str, list[str]] = {}
        if not link_ids:
            return out
        for r in conn.execute(
            select(t.link_flows.c.link_id, t.link_flows.c.flow_id)
            .where(t.link_flows.c.link_id.in_(link_ids))
            .order_by(t.link_flows.c.flow_id)
        ):
            out.setdefault(r.link_id, []).append(r.flow_id)
        return out

    def _linkable_target(self, conn: Connection, p: Principal, target: str) -> str:
        aztp = need_aztp_id(target, "target")
        row = conn.execute(
            select(t.identities.c.org_id).where(t.identities.c.aztp_id == str(aztp))
        ).first()
        if row is not None and row.org_id == p.org_id:
            return str(aztp)
        federated = conn.execute(
            select(t.federations.c.trust_domain).where(
                t.federations.c.org_id == p.org_id,
                t.federations.c.trust_domain == aztp.trust_domain.name,
            )
        ).first()
        if federated is not None:
            return str(aztp)
        raise NotFoundError(
            f"identity {aztp} not found in this organization (nor in a federated trust domain)"
        )

    @staticmethod
    def _link_doc(row: Any, flows: list[str]) -> dict[str, Any]:
        return {
            "_id": row.id,
            "sourceIdentity": row.source,
            "targetIdentity": row.target,
            "relationshipType": row.relationship_type,
            "metadata": row.metadata,
            "createdAt": row.created_at,
            # "organization": authorizes everywhere; "flow": only in the flows listed.
            "scope": "flow" if flows else "organization",
            "identityFlowIds": flows,
        }

    def unlink_identities(
        self, p: Principal, source: str, target: str, relationship_type: str | None = None
    ) -> dict[str, Any]:
        src, dst = str(need_aztp_id(source, "source")), str(need_aztp_id(target, "target"))
        with self.ctx.store.write() as conn:
            forward = and_(t.links.c.source == src, t.links.c.target == dst)
            # a symmetric link authorizes both ways, so it can be removed from either end
            backward = and_(
                t.links.c.source == dst,
                t.links.c.target == src,
                t.links.c.relationship_type.in_(SYMMETRIC),
            )
            cond = and_(t.links.c.org_id == p.org_id, or_(forward, backward))
            if relationship_type:
                cond = and_(cond, t.links.c.relationship_type == relationship_type)
            ids = list(conn.execute(select(t.links.c.id).where(cond)).scalars())
            conn.execute(delete(t.link_flows).where(t.link_flows.c.link_id.in_(ids)))
            n = conn.execute(delete(t.links).where(t.links.c.id.in_(ids))).rowcount
            if not n:
                raise NotFoundError(f"no link from {src} to {dst}")
            self.ctx.audit(
                conn,
                p.org_id,
                p.user_id,
                "link.delete",
                src,
                {"target": dst, "relationshipType": relationship_type, "removed": n},
            )
        self.ctx.invalidate()
        return {"sourceIdentity": src, "targetIdentity": dst, "removed": n}

    def list_links(self, p: Principal, aztp_id: str | None = None) -> list[dict[str, Any]]:
        with self.ctx.store.read() as conn:
            stmt = select(t.links).where(t.links.c.org_id == p.org_id)
            if aztp_id:
                stmt = stmt.where(or_(t.links.c.source == aztp_id, t.links.c.target == aztp_id))
            rows = conn.execute(stmt.order_by(t.links.c.created_at)).all()
            flows = self._flows_of(conn, [r.id for r in rows])
            return [self._link_doc(r, flows.get(r.id, [])) for r in rows]


def drop_flow_scopes(conn: Connection, flow_id: str) -> None:
    """A flow is deleted: its links scopes go, and so do the links that held in it only (a
    link is never widened to the whole organization by losing its last flow)."""
    link_ids = list(
        conn.execute(
            select(t.link_flows.c.link_id).where(t.link_flows.c.flow_id == flow_id)
        ).scalars()
    )
    if not link_ids:
        return
    conn.execute(delete(t.link_flows).where(t.link_flows.c.flow_id == flow_id))
    still_scoped = set(
        conn.execute(
            select(t.link_flows.c.link_id).where(t.link_flows.c.link_id.in_(link_ids))
        ).scalars()
    )
    orphans = [i for i in link_ids if i not in still_scoped]
    if orphans:
        conn.execute(delete(t.links).where(t.links.c.id.in_(orphans)))
