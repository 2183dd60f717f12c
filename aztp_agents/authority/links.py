"""Links between identities (who may talk to whom)."""

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
    ) -> dict[str, Any]:
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
            existing = conn.execute(
                select(t.links).where(
                    t.links.c.org_id == p.org_id,
                    t.links.c.source == src,
                    t.links.c.target == dst,
                    t.links.c.relationship_type == relationship_type,
                )
            ).first()
            if existing is None:
                conn.execute(
                    insert(t.links).values(
                        id=object_id(),
                        org_id=p.org_id,
                        source=src,
                        target=dst,
                        relationship_type=relationship_type,
                        metadata=meta,
                        created_at=now_iso(),
                    )
                )
                self.ctx.audit(
                    conn,
                    p.org_id,
                    p.user_id,
                    "link.create",
                    src,
                    {"target": dst, "relationshipType": relationship_type},
                )
            row = conn.execute(
                select(t.links).where(
                    t.links.c.org_id == p.org_id,
                    t.links.c.source == src,
                    t.links.c.target == dst,
                    t.links.c.relationship_type == relationship_type,
                )
            ).one()
        self.ctx.invalidate()
        return self._link_doc(row)

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
    def _link_doc(row: Any) -> dict[str, Any]:
        return {
            "_id": row.id,
            "sourceIdentity": row.source,
            "targetIdentity": row.target,
            "relationshipType": row.relationship_type,
            "metadata": row.metadata,
            "createdAt": row.created_at,
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
            n = conn.execute(delete(t.links).where(cond)).rowcount
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
            return [
                self._link_doc(r) for r in conn.execute(stmt.order_by(t.links.c.created_at)).all()
            ]
