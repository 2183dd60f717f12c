"""Identity flows: records, membership, flow-scoped revocation, health."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from .._util import iso, now_iso, object_id, utcnow
from ..decisions import (
    IDENTITY_CODES,
    verify_in_snapshot,
)
from ..errors import (
    AlreadyRevokedError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from ..store import schema as t
from ._context import (
    DISCOVERABLE,
    Component,
    Principal,
    Touched,
    json_value,
    need_aztp_id,
    need_str,
    opt_text,
)
from .decision_state import touched_links
from .links import drop_flow_scopes

__all__ = ["Flows"]


class Flows(Component):
    """Identity flows."""

    def _visible(self, p: Principal) -> Any:
        return or_(t.flows.c.discoverable == "public", t.flows.c.owner_user_id == p.user_id)

    def _flow_row(self, conn: Connection, p: Principal, flow_id: str) -> Any:
        if not isinstance(flow_id, str) or not flow_id:
            raise ValidationError("flow_id must be a non-empty string (the flow's _id)")
        row = conn.execute(
            select(t.flows).where(
                t.flows.c.id == flow_id, t.flows.c.org_id == p.org_id, self._visible(p)
            )
        ).first()
        if row is None:
            raise NotFoundError(f"identity flow {flow_id!r} not found")
        return row

    def row(self, conn: Connection, p: Principal, flow_id: str) -> Any:
        """The flow's row, if the principal may see it (else :class:`NotFoundError`)."""
        return self._flow_row(conn, p, flow_id)

    def _flow_doc(self, conn: Connection, row: Any) -> dict[str, Any]:
        members = conn.execute(
            select(t.flow_members)
            .where(t.flow_members.c.flow_id == row.id)
            .order_by(t.flow_members.c.added_at)
        ).all()
        revoked = {
            r.aztp_id: r
            for r in conn.execute(
                select(t.flow_revocations).where(t.flow_revocations.c.flow_id == row.id)
            ).all()
        }
        identities = []
        for m in members:
            r = revoked.get(m.aztp_id)
            entry = {
                "aztpId": m.aztp_id,
                "status": "revoked" if r else "active",
                "addedAt": m.added_at,
                "updatedAt": m.updated_at,
            }
            if r:
                entry.update({"revokedAt": r.revoked_at, "revocationReason": r.reason})
            identities.append(entry)
        return {
            "_id": row.id,
            "name": row.name,
            "description": row.description,
            "discoverable": row.discoverable,
            "tags": list(row.tags),
            "metadata": row.metadata,
            "userId": row.owner_user_id,
            "identities": identities,
            "createdAt": row.created_at,
            "updatedAt": row.updated_at,
        }

    def create_flow(
        self,
        p: Principal,
        name: str,
        description: str | None = None,
        discoverable: str = "public",
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        name = need_str(name, "flow name", max_len=256)
        if discoverable not in DISCOVERABLE:
            raise ValidationError(
                f"discoverable must be 'public' or 'private', got {discoverable!r}"
            )
        if description is not None and not isinstance(description, str):
            raise ValidationError("description must be a string")
        tags = self._tags(tags)
        if metadata is not None and not isinstance(metadata, Mapping):
            raise ValidationError("metadata must be an object")
        meta = json_value(dict(metadata or {}), "metadata")
        now = now_iso()
        flow_id = object_id()
        try:
            with self.ctx.store.write() as conn:
                clash = conn.execute(
                    select(t.flows.c.id, t.flows.c.discoverable, t.flows.c.owner_user_id).where(
                        t.flows.c.org_id == p.org_id, t.flows.c.name == name
                    )
                ).first()
                if clash is not None:
                    # Flow names are organization-wide, so that a name is taken cannot be
                    # hidden; which flow took it (its id) is told only to who may see it.
                    seen = clash.discoverable == "public" or clash.owner_user_id == p.user_id
                    raise ConflictError(
                        f"a flow named {name!r} already exists in this organization"
                        + (
                            f" (id {clash.id}); to reuse it, call ensure_flow({name!r}) (finds "
                            f"it, or creates it when missing) or get_flow({clash.id!r})"
                            if seen
                            else "; choose another name"
                        )
                    )
                conn.execute(
                    insert(t.flows).values(
                        id=flow_id,
                        org_id=p.org_id,
                        owner_user_id=p.user_id,
                        name=name,
                        description=description,
                        discoverable=discoverable,
                        tags=tags,
                        metadata=meta,
                        created_at=now,
                        updated_at=now,
                    )
                )
                self.ctx.audit(
                    conn,
                    p.org_id,
                    p.user_id,
                    "flow.create",
                    flow_id,
                    {"name": name, "discoverable": discoverable},
                )
                self.ctx.state_changed(conn, p.org_id, Touched(flows={flow_id}))
                doc = self._flow_doc(conn, self._flow_row(conn, p, flow_id))
        except IntegrityError:
            raise ConflictError(
                f"a flow named {name!r} already exists in this organization"
            ) from None
        self.ctx.invalidate()
        return doc

    @staticmethod
    def _tags(tags: Any) -> list[str]:
        if tags is None:
            return []
        if isinstance(tags, str) or not all(isinstance(x, str) for x in tags):
            raise ValidationError("tags must be a list of strings")
        return list(tags)

    def get_flow(self, p: Principal, flow_id: str) -> dict[str, Any]:
        with self.ctx.store.read() as conn:
            return self._flow_doc(conn, self._flow_row(conn, p, flow_id))

    def find_flow(self, p: Principal, name: str) -> dict[str, Any] | None:
        with self.ctx.store.read() as conn:
            row = conn.execute(
                select(t.flows).where(t.flows.c.org_id == p.org_id, t.flows.c.name == name)
            ).first()
            # Another user's private flow is, to this caller, as if it did not exist.
            if row is None or (row.discoverable != "public" and row.owner_user_id != p.user_id):
                return None
            return self._flow_doc(conn, row)

    def ensure_flow(
        self,
        p: Principal,
        name: str,
        *,
        discoverable: str = "private",
        description: str | None = None,
    ) -> dict[str, Any]:
        """The visible flow named ``name``, created (``discoverable``) if missing."""
        found = self.find_flow(p, name)
        if found is not None:
            return found
        try:
            return self.create_flow(
                p,
                name,
                description=description or f"aztp-agents flow {name}",
                discoverable=discoverable,
            )
        except ConflictError:
            found = self.find_flow(p, name)  # made concurrently
            if found is None:
                raise
            return found

    def list_flows(self, p: Principal) -> list[dict[str, Any]]:
        with self.ctx.store.read() as conn:
            rows = conn.execute(
                select(t.flows)
                .where(t.flows.c.org_id == p.org_id, self._visible(p))
                .order_by(t.flows.c.created_at)
            ).all()
            return [self._flow_doc(conn, r) for r in rows]

    def update_flow(self, p: Principal, flow_id: str, **changes: Any) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for key, value in changes.items():
            if value is None:
                continue
            if key == "name":
                values["name"] = need_str(value, "flow name", max_len=256)
            elif key == "description":
                if not isinstance(value, str):
                    raise ValidationError("description must be a string")
                values["description"] = value
            elif key == "discoverable":
                if value not in DISCOVERABLE:
                    raise ValidationError(
                        f"discoverable must be 'public' or 'private', got {value!r}"
                    )
                values["discoverable"] = value
            elif key == "tags":
                values["tags"] = self._tags(value)
            elif key == "metadata":
                if not isinstance(value, Mapping):
                    raise ValidationError("metadata must be an object")
                values["metadata"] = json_value(dict(value), "metadata")
            else:
                raise ValidationError(f"unknown flow field {key!r}")
        try:
            with self.ctx.store.write() as conn:
                row = self._flow_row(conn, p, flow_id)
                if "name" in values and values["name"] != row.name:
                    clash = conn.execute(
                        select(t.flows.c.id).where(
                            t.flows.c.org_id == p.org_id, t.flows.c.name == values["name"]
                        )
                    ).first()
                    if clash is not None:
                        raise ConflictError(
                            f"a flow named {values['name']!r} already exists in this organization"
                        )
                if values:
                    conn.execute(
                        update(t.flows)
                        .where(t.flows.c.id == row.id)
                        .values(**values, updated_at=now_iso())
                    )
                    self.ctx.audit(
                        conn, p.org_id, p.user_id, "flow.update", row.id, {"fields": sorted(values)}
                    )
                    if values.keys() & {"name", "discoverable"}:
                        self.ctx.state_changed(conn, p.org_id, Touched(flows={row.id}))
                doc = self._flow_doc(conn, self._flow_row(conn, p, flow_id))
        except IntegrityError:
            raise ConflictError(
                "a flow with that name already exists in this organization"
            ) from None
        self.ctx.invalidate()
        return doc

    def delete_flow(self, p: Principal, flow_id: str) -> dict[str, Any]:
        with self.ctx.store.write() as conn:
            row = self._flow_row(conn, p, flow_id)
            scoped = touched_links(
                conn,
                conn.execute(
                    select(t.link_flows.c.link_id).where(t.link_flows.c.flow_id == row.id)
                ).scalars(),
            )
            conn.execute(delete(t.flow_members).where(t.flow_members.c.flow_id == row.id))
            conn.execute(delete(t.flow_revocations).where(t.flow_revocations.c.flow_id == row.id))
            drop_flow_scopes(conn, row.id)
            conn.execute(delete(t.flows).where(t.flows.c.id == row.id))
            self.ctx.audit(conn, p.org_id, p.user_id, "flow.delete", row.id, {"name": row.name})
            self.ctx.state_changed(conn, p.org_id, Touched(flows={row.id}, links=scoped))
        self.ctx.invalidate()
        return {"_id": row.id, "name": row.name, "deleted": True}

    def add_identity_to_flow(self, p: Principal, flow_id: str, aztp_id: str) -> dict[str, Any]:
        with self.ctx.store.write() as conn:
            row = self._flow_row(conn, p, flow_id)
            ident = self.ctx.identities.row(conn, p, aztp_id)
            exists = conn.execute(
                select(t.flow_members).where(
                    t.flow_members.c.flow_id == row.id, t.flow_members.c.aztp_id == ident.aztp_id
                )
            ).first()
            if exists is None:
                now = now_iso()
                conn.execute(
                    insert(t.flow_members).values(
                        flow_id=row.id, aztp_id=ident.aztp_id, added_at=now, updated_at=now
                    )
                )
                self.ctx.audit(
                    conn,
                    p.org_id,
                    p.user_id,
                    "flow.add_identity",
                    ident.aztp_id,
                    {"flowId": row.id},
                )
                self.ctx.state_changed(conn, p.org_id, Touched(members={(row.id, ident.aztp_id)}))
            doc = self._flow_doc(conn, row)
        self.ctx.invalidate()
        return doc

    def remove_identity_from_flow(self, p: Principal, flow_id: str, aztp_id: str) -> dict[str, Any]:
        aztp = str(need_aztp_id(aztp_id))
        with self.ctx.store.write() as conn:
            row = self._flow_row(conn, p, flow_id)
            n = conn.execute(
                delete(t.flow_members).where(
                    t.flow_members.c.flow_id == row.id, t.flow_members.c.aztp_id == aztp
                )
            ).rowcount
            if n:
                self.ctx.audit(
                    conn, p.org_id, p.user_id, "flow.remove_identity", aztp, {"flowId": row.id}
                )
                self.ctx.state_changed(conn, p.org_id, Touched(members={(row.id, aztp)}))
            doc = self._flow_doc(conn, row)
        self.ctx.invalidate()
        return doc

    def revoke_flow_identity(
        self, p: Principal, aztp_id: str, flow_id: str, reason: str | None = None
    ) -> dict[str, Any]:
        """Invalid in that flow only. Survives remove + re-add; undone by reinstate."""
        aztp = str(need_aztp_id(aztp_id))
        reason = opt_text(reason, "reason")
        issued = utcnow()
        with self.ctx.store.write() as conn:
            row = self._flow_row(conn, p, flow_id)
            self.ctx.identities.row(conn, p, aztp)
            member = conn.execute(
                select(t.flow_members).where(
                    t.flow_members.c.flow_id == row.id, t.flow_members.c.aztp_id == aztp
                )
            ).first()
            if member is None:
                raise NotFoundError(
                    f"{aztp} is not a member of flow {flow_id}; add it before revoking it there"
                )
            if conn.execute(
                select(t.flow_revocations).where(
                    t.flow_revocations.c.flow_id == row.id, t.flow_revocations.c.aztp_id == aztp
                )
            ).first():
                raise AlreadyRevokedError("Identity already revoked for this flow")
            conn.execute(
                insert(t.flow_revocations).values(
                    flow_id=row.id, aztp_id=aztp, reason=reason, revoked_at=iso(issued)
                )
            )
            conn.execute(
                update(t.flow_members)
                .where(t.flow_members.c.flow_id == row.id, t.flow_members.c.aztp_id == aztp)
                .values(updated_at=iso(issued))
            )
            self.ctx.audit(
                conn,
                p.org_id,
                p.user_id,
                "flow.revoke_identity",
                aztp,
                {"flowId": row.id, "reason": reason},
            )
            self.ctx.state_changed(conn, p.org_id, Touched(members={(row.id, aztp)}))
        self.ctx.invalidate()
        return {
            "valid": True,
            "issuedAt": int(issued.timestamp() * 1000),
            "reason": reason,
            "aztpId": aztp,
            "identityFlowId": row.id,
        }

    def reinstate_flow_identity(self, p: Principal, aztp_id: str, flow_id: str) -> dict[str, Any]:
        aztp = str(need_aztp_id(aztp_id))
        with self.ctx.store.write() as conn:
            row = self._flow_row(conn, p, flow_id)
            n = conn.execute(
                delete(t.flow_revocations).where(
                    t.flow_revocations.c.flow_id == row.id, t.flow_revocations.c.aztp_id == aztp
                )
            ).rowcount
            if not n:
                raise NotFoundError(f"{aztp} is not revoked in flow {flow_id}")
            self.ctx.audit(
                conn, p.org_id, p.user_id, "flow.reinstate_identity", aztp, {"flowId": row.id}
            )
            self.ctx.state_changed(conn, p.org_id, Touched(members={(row.id, aztp)}))
            doc = self._flow_doc(conn, row)
        self.ctx.invalidate()
        return doc

    def flow_health(self, p: Principal, flow_id: str) -> dict[str, Any]:
        """Share of members valid in the flow: healthy >= 90 %, warning >= 70 %, else critical."""
        flow = self.get_flow(p, flow_id)
        snap = self.ctx.decisions.state(p.org_id)
        report = []
        for member in flow["identities"]:
            v = verify_in_snapshot(snap, member["aztpId"], flow_id)
            report.append(
                {"aztpId": member["aztpId"], "valid": v.valid, "reason": IDENTITY_CODES[v.reason]}
            )
        total = len(report)
        valid = sum(1 for r in report if r["valid"])
        score = 0.0 if total == 0 else round(valid / total * 100, 1)  # an empty flow is not healthy
        status = "healthy" if score >= 90 else "warning" if score >= 70 else "critical"
        return {
            "flowId": flow_id,
            "name": flow["name"],
            "status": status,
            "securityScore": score,
            "total": total,
            "valid": valid,
            "identities": report,
            "issues": [
                f"Identity issue: {r['aztpId']} ({r['reason']})" for r in report if not r["valid"]
            ],
        }
