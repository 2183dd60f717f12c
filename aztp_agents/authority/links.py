"""Links between identities (who may talk to whom).

A link is **organization-wide** (made through the AZTP API: it authorizes source -> target in
every flow and for ``verify_authorize_identity_connection``) or **flow-scoped** (the grants an
adapter declares for a crew: they authorize tool calls in the flows they were declared for
only, rows of ``link_flows``). One row per (source, target, relationship): its scope is
organization-wide when it has no ``link_flows`` row, else the set of its flows. A link is
never widened by losing its flows: removing its last flow removes the link.

**Operator intent outlasts declared links.** An adapter declares its crew's links again at
every process start (``declared=True``: enrollment). A link an operator removed (``unlink``)
is recorded in ``link_removals``, and enrollment never re-creates it: the tool stays denied
(``no_link``). Only an operator action clears the record: ``restore_link`` (puts the link back
with the scope it had) or an operator's own ``link_identities`` (``declared=False``).
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
from ..wire import REMOVED_BY_OPERATOR
from ._context import (
    SYMMETRIC,
    Component,
    Principal,
    Touched,
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
        declared: bool = False,
    ) -> dict[str, Any]:
        """Link ``source`` -> ``target``: organization-wide, or with ``flow_id`` in that flow
        only (added to the flows of an existing flow-scoped link; an organization-wide link
        already holds there and stays as it is). Without ``flow_id`` an existing flow-scoped
        link becomes organization-wide: that is what the caller asked for.

        ``declared``: the link comes from enrollment (an adapter declaring its crew's grants),
        not from an operator. A declared link an operator removed is not created (the answer
        has ``state: removed_by_operator``); an operator's link clears the removal."""
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
            removal = and_(
                t.link_removals.c.org_id == p.org_id,
                t.link_removals.c.source == src,
                t.link_removals.c.target == dst,
                t.link_removals.c.relationship_type == relationship_type,
            )
            removed = conn.execute(select(t.link_removals).where(removal)).first()
            if removed is not None and declared:
                # Operator intent outlasts the code that declared the link: not re-created.
                return self._removal_doc(removed)
            if removed is not None:
                # An operator links explicitly: the removal is over.
                conn.execute(delete(t.link_removals).where(removal))
            found = and_(
                t.links.c.org_id == p.org_id,
                t.links.c.source == src,
                t.links.c.target == dst,
                t.links.c.relationship_type == relationship_type,
            )
            existing = conn.execute(select(t.links).where(found)).first()
            changed = existing is None
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
                    changed = True
                elif flow is not None and flows and flow not in flows:
                    self._add_flow(conn, p, existing.id, flow)
                    self._audit_link(conn, p, src, dst, relationship_type, flow)
                    changed = True
            if changed:
                self.ctx.state_changed(conn, p.org_id, Touched(links={(src, dst)}))
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

    @staticmethod
    def _removal_doc(row: Any) -> dict[str, Any]:
        return {
            "sourceIdentity": row.source,
            "targetIdentity": row.target,
            "relationshipType": row.relationship_type,
            "state": REMOVED_BY_OPERATOR,
            "scope": "flow" if row.flows else "organization",
            "identityFlowIds": list(row.flows),
            "removedBy": row.removed_by,
            "removedAt": row.removed_at,
            "reason": row.reason,
        }

    @staticmethod
    def _between(table: Any, src: str, dst: str, relationship_type: str | None) -> Any:
        """Rows of ``table`` from ``src`` to ``dst``, and the symmetric ones the other way (a
        symmetric link authorizes both ways, so it is removed or restored from either end)."""
        forward = and_(table.c.source == src, table.c.target == dst)
        backward = and_(
            table.c.source == dst,
            table.c.target == src,
            table.c.relationship_type.in_(SYMMETRIC),
        )
        cond = or_(forward, backward)
        if relationship_type:
            cond = and_(cond, table.c.relationship_type == relationship_type)
        return cond

    def unlink_identities(
        self,
        p: Principal,
        source: str,
        target: str,
        relationship_type: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Remove the link(s) from ``source`` to ``target`` (an operator action). Each removal
        is recorded, so enrollment does not re-create the link at the next process start."""
        src, dst = str(need_aztp_id(source, "source")), str(need_aztp_id(target, "target"))
        if reason is not None and not isinstance(reason, str):
            raise ValidationError("reason must be a string")
        with self.ctx.store.write() as conn:
            cond = and_(
                t.links.c.org_id == p.org_id, self._between(t.links, src, dst, relationship_type)
            )
            rows = conn.execute(select(t.links).where(cond)).all()
            ids = [r.id for r in rows]
            flows = self._flows_of(conn, ids)
            now = now_iso()
            for r in rows:
                key = and_(
                    t.link_removals.c.org_id == p.org_id,
                    t.link_removals.c.source == r.source,
                    t.link_removals.c.target == r.target,
                    t.link_removals.c.relationship_type == r.relationship_type,
                )
                conn.execute(delete(t.link_removals).where(key))
                conn.execute(
                    insert(t.link_removals).values(
                        org_id=p.org_id,
                        source=r.source,
                        target=r.target,
                        relationship_type=r.relationship_type,
                        flows=flows.get(r.id, []),
                        metadata=r.metadata,
                        removed_by=p.user_name or p.user_id,
                        removed_at=now,
                        reason=reason,
                    )
                )
            conn.execute(delete(t.link_flows).where(t.link_flows.c.link_id.in_(ids)))
            n = conn.execute(delete(t.links).where(t.links.c.id.in_(ids))).rowcount
            if not n:
                raise NotFoundError(f"no link from {src} to {dst}")
            touched = Touched(links={(r.source, r.target) for r in rows})
            self.ctx.state_changed(conn, p.org_id, touched)
            self.ctx.audit(
                conn,
                p.org_id,
                p.user_id,
                "link.delete",
                src,
                {
                    "target": dst,
                    "relationshipType": relationship_type,
                    "removed": n,
                    "reason": reason,
                },
            )
        self.ctx.invalidate()
        return {"sourceIdentity": src, "targetIdentity": dst, "removed": n}

    def restore_link(
        self, p: Principal, source: str, target: str, relationship_type: str | None = None
    ) -> dict[str, Any]:
        """Undo an operator's ``unlink`` (an operator action): the removal record goes and
        each removed link comes back with the scope it had (the flows that still exist; a
        flow-scoped link whose flows are all gone comes back when enrollment declares it)."""
        src, dst = str(need_aztp_id(source, "source")), str(need_aztp_id(target, "target"))
        restored: list[dict[str, Any]] = []
        with self.ctx.store.write() as conn:
            cond = and_(
                t.link_removals.c.org_id == p.org_id,
                self._between(t.link_removals, src, dst, relationship_type),
            )
            rows = conn.execute(select(t.link_removals).where(cond)).all()
            if not rows:
                raise NotFoundError(f"no operator removal of a link from {src} to {dst}")
            conn.execute(delete(t.link_removals).where(cond))
            relinked = Touched()
            for r in rows:
                flows = [
                    f
                    for f in r.flows
                    if conn.execute(
                        select(t.flows.c.id).where(t.flows.c.id == f, t.flows.c.org_id == p.org_id)
                    ).first()
                ]
                # the source is ours (the target may be federated: no row here to check)
                source_exists = conn.execute(
                    select(t.identities.c.id).where(
                        t.identities.c.org_id == p.org_id, t.identities.c.aztp_id == r.source
                    )
                ).first()
                exists = conn.execute(
                    select(t.links.c.id).where(
                        t.links.c.org_id == p.org_id,
                        t.links.c.source == r.source,
                        t.links.c.target == r.target,
                        t.links.c.relationship_type == r.relationship_type,
                    )
                ).first()
                relink = exists is None and source_exists is not None and bool(flows or not r.flows)
                if relink:
                    link_id = object_id()
                    conn.execute(
                        insert(t.links).values(
                            id=link_id,
                            org_id=p.org_id,
                            source=r.source,
                            target=r.target,
                            relationship_type=r.relationship_type,
                            metadata=r.metadata,
                            created_at=now_iso(),
                        )
                    )
                    for f in flows:
                        self._add_flow(conn, p, link_id, f)
                    relinked.links.add((r.source, r.target))
                    restored.append(
                        self._link_doc(
                            conn.execute(select(t.links).where(t.links.c.id == link_id)).one(),
                            sorted(flows),
                        )
                    )
                self.ctx.audit(
                    conn,
                    p.org_id,
                    p.user_id,
                    "link.restore",
                    r.source,
                    {
                        "target": r.target,
                        "relationshipType": r.relationship_type,
                        "flowIds": flows,
                        "relinked": relink,
                    },
                )
            self.ctx.state_changed(conn, p.org_id, relinked)
        self.ctx.invalidate()
        return {
            "sourceIdentity": src,
            "targetIdentity": dst,
            "restored": len(rows),
            "links": restored,
        }

    def list_link_removals(self, p: Principal, aztp_id: str | None = None) -> list[dict[str, Any]]:
        """The links operators removed (which enrollment does not re-create)."""
        with self.ctx.store.read() as conn:
            stmt = select(t.link_removals).where(t.link_removals.c.org_id == p.org_id)
            if aztp_id:
                stmt = stmt.where(
                    or_(t.link_removals.c.source == aztp_id, t.link_removals.c.target == aztp_id)
                )
            rows = conn.execute(stmt.order_by(t.link_removals.c.removed_at)).all()
            return [self._removal_doc(r) for r in rows]

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
