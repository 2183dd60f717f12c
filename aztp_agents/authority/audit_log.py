"""The organization's audit log: reading entries, verifying the chain, and signing and checking
checkpoints of its head (:mod:`aztp_agents.audit_checkpoints`)."""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, or_, select

from .._util import now_iso
from ..audit import BATCH_ACTION, GENESIS, AuditEntry, ChainReport, verify_chain
from ..audit_checkpoints import (
    KEY_LABEL,
    check_checkpoint,
    key_id,
    load_public_key,
    public_key_pem,
    sign_checkpoint,
    signing_key,
)
from ..errors import AuditChainError, StoreError, ValidationError
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

    def _chain(self, conn: Connection, org_id: str) -> tuple[list[Any], ChainReport]:
        rows = conn.execute(
            select(t.audit).where(t.audit.c.org_id == org_id).order_by(t.audit.c.seq)
        ).all()
        head = conn.execute(
            select(t.audit_heads.c.seq, t.audit_heads.c.hash).where(
                t.audit_heads.c.org_id == org_id
            )
        ).first()
        return rows, verify_chain(rows, (int(head.seq), head.hash) if head else (0, GENESIS))

    def verify_audit(
        self,
        p: Principal,
        *,
        checkpoint: Mapping[str, Any] | str | None = None,
        public_key: str | None = None,
    ) -> ChainReport:
        """Check the chain; with ``checkpoint`` (a signed checkpoint, as a document or JSON
        text) also that it still holds the checkpointed history (not truncated, rewritten or
        forked). The checkpoint's signature is checked against ``public_key`` (PEM) if given,
        else against the organization's checkpoint key (derived from the master key)."""
        if checkpoint is not None:
            # The trusted key first: a verifier that cannot tell which key to trust has no answer.
            trusted = (
                self._public_key_from_pem(public_key)
                if public_key is not None
                else self._key(p).public_key()
            )
        self.ctx.store.flush_audit()
        with self.ctx.store.read() as conn:
            rows, report = self._chain(conn, p.org_id)
        if checkpoint is None or not report.ok:
            return report
        body, problem = check_checkpoint(
            checkpoint, trusted, org_id=p.org_id, hashes=[r.hash for r in rows]
        )
        cp = body.model_dump(exclude={"v", "org_id", "org"}) if body is not None else {}
        if problem is not None:
            return ChainReport(False, report.entries, problem, body.seq if body else None, cp)
        return dataclasses.replace(report, checkpoint=cp)

    def audit_checkpoint(self, p: Principal) -> dict[str, Any]:
        """A signed checkpoint of the chain's head now (refused if the chain is broken: a
        checkpoint must never vouch for a history that was already tampered with)."""
        key = self._key(p)
        self.ctx.store.flush_audit()
        with self.ctx.store.read() as conn:
            rows, report = self._chain(conn, p.org_id)
        if not report.ok:
            raise AuditChainError(
                f"the audit chain is broken ({report.problem}); no checkpoint signed"
            )
        seq, head = (rows[-1].seq, rows[-1].hash) if rows else (0, GENESIS)
        return sign_checkpoint(
            key, org_id=p.org_id, org=p.org_name, seq=int(seq), head=head, ts=now_iso()
        ).to_doc()

    def audit_checkpoint_key(self, p: Principal) -> dict[str, str]:
        """The organization's checkpoint public key (PEM) and its key id, for verifiers that
        should not trust this database or host."""
        public = self._key(p).public_key()
        return {"kid": key_id(public), "public_key": public_key_pem(public)}

    def _key(self, p: Principal) -> Ed25519PrivateKey:
        wrapper = self.ctx.store.key_wrapper
        if wrapper is None:
            # Without a master key the signing key would have to sit in the database in clear,
            # where whoever rewrites the log could also replace it.
            raise StoreError(
                "audit checkpoints need a master key (set AZTP_MASTER_KEY for a server or a "
                "shared PostgreSQL store)"
            )
        return signing_key(wrapper.derive(KEY_LABEL + p.org_id))

    @staticmethod
    def _public_key_from_pem(pem: str) -> Any:
        try:
            return load_public_key(pem)
        except (ValueError, TypeError):
            raise ValidationError(
                "public_key is not an Ed25519 public key in PEM (as 'aztp-agents audit "
                "checkpoint --public-key' writes it)"
            ) from None
