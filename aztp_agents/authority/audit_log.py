"""The organization's audit log: reading entries and verifying the chain."""

from __future__ import annotations

import fnmatch

from sqlalchemy import or_, select

from ..audit import BATCH_ACTION, AuditEntry, ChainReport, verify_chain
from ..store import schema as t
from ._context import (
    Component,
    Principal,
)

__all__ = ["AuditLog"]


class AuditLog(Component):
    """Reading and verifying the audit chain."""

    def audit_entries(
        self, p: Principal, *, limit: int | None = None, action: str | None = None
    ) -> list[AuditEntry]:
        """The organization's audit entries, oldest first; ``action`` is a glob like
        ``decision.*``; ``limit`` keeps the newest ones."""
        self.ctx.store.flush_audit()
        with self.ctx.store.read() as conn:
            stmt = select(t.audit).where(t.audit.c.org_id == p.org_id)
            if action:
                stmt = stmt.where(
                    or_(
                        t.audit.c.action == BATCH_ACTION,
                        t.audit.c.action.like(action.replace("*", "%")),
                    )
                )
            if limit:
                rows = list(
                    reversed(conn.execute(stmt.order_by(t.audit.c.seq.desc()).limit(limit)).all())
                )
            else:
                rows = conn.execute(stmt.order_by(t.audit.c.seq)).all()
        entries = [
            e
            for r in rows
            for e in AuditEntry.from_row(r)
            if not action or fnmatch.fnmatchcase(e.action, action)
        ]
        return entries[-limit:] if limit else entries

    def verify_audit(self, p: Principal) -> ChainReport:
        self.ctx.store.flush_audit()
        with self.ctx.store.read() as conn:
            rows = conn.execute(
                select(t.audit).where(t.audit.c.org_id == p.org_id).order_by(t.audit.c.seq)
            ).all()
            head = conn.execute(
                select(t.audit_heads.c.seq, t.audit_heads.c.hash).where(
                    t.audit_heads.c.org_id == p.org_id
                )
            ).first()
        return verify_chain(rows, (int(head.seq), head.hash) if head else (0, "0" * 64))
