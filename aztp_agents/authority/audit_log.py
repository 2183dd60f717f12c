"""The organization's audit log: reading entries and verifying the chain."""

from __future__ import annotations

import fnmatch
from typing import Any

from sqlalchemy import or_, select

from ..audit import BATCH_ACTION, AuditEntry, ChainReport, verify_chain
from ..store import schema as t
from ._context import (
    Component,
    Principal,
)

__all__ = ["AuditLog"]

#: Rows read per step when ``audit_entries`` pages backwards for the newest matches.
_PAGE_ROWS = 500


def _glob_to_like(glob: str) -> str | None:
    """A SQL ``LIKE`` pattern (escape ``\\``) that every action matching ``glob`` matches, or
    ``None`` when the glob has a character class SQL cannot narrow (the filter then runs in
    Python only). ``LIKE`` is case-insensitive in SQLite: it narrows, ``fnmatchcase`` decides."""
    if "[" in glob:
        return None
    out = []
    for ch in glob:
        if ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        elif ch in "%_\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


class AuditLog(Component):
    """Reading and verifying the audit chain."""

    def audit_entries(
        self, p: Principal, *, limit: int | None = None, action: str | None = None
    ) -> list[AuditEntry]:
        """The organization's audit entries, oldest first; ``action`` is a glob like
        ``decision.*``; ``limit`` keeps the newest ``limit`` entries that match it."""
        self.ctx.store.flush_audit()
        stmt = select(t.audit).where(t.audit.c.org_id == p.org_id)
        like = _glob_to_like(action) if action else None
        if like is not None:
            # A batch row holds records of many actions; only its expansion can tell.
            stmt = stmt.where(
                or_(t.audit.c.action == BATCH_ACTION, t.audit.c.action.like(like, escape="\\"))
            )

        def matching(row: Any) -> list[AuditEntry]:
            return [
                e
                for e in AuditEntry.from_row(row)
                if not action or fnmatch.fnmatchcase(e.action, action)
            ]

        with self.ctx.store.read() as conn:
            if not limit:
                return [e for r in conn.execute(stmt.order_by(t.audit.c.seq)) for e in matching(r)]
            # The limit counts matching entries, not rows: a batch row expands into many
            # records, most of which may not match. Page backwards, newest rows first, until
            # ``limit`` entries matched, so a small tail never reads the whole log.
            newest_first: list[list[AuditEntry]] = []
            found = 0
            before: int | None = None
            while found < limit:
                page = stmt if before is None else stmt.where(t.audit.c.seq < before)
                rows = conn.execute(page.order_by(t.audit.c.seq.desc()).limit(_PAGE_ROWS)).all()
                for row in rows:
                    entries = matching(row)
                    newest_first.append(entries)
                    found += len(entries)
                    if found >= limit:
                        break
                if len(rows) < _PAGE_ROWS:
                    break
                before = rows[-1].seq
        entries = [e for group in reversed(newest_first) for e in group]
        return entries[-limit:]

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
