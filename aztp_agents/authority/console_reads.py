"""Reads the operator console needs that the API does not offer: an identity's credentials
(serials and expiry, never key material), a page of identities found by name, the
organization's audit entries after a
position (the live decisions view follows the chain with it), and whether the API key a
console session was opened with is still valid.

Every read is scoped exactly as the API's: the principal's organization, and the identity
looked up through :meth:`Identities.row`, which refuses identities of other organizations.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from ..audit import AuditEntry
from ..store import schema as t
from . import Authority, Principal
from .tenants import _hash_key

__all__ = [
    "api_key_active",
    "api_key_digest",
    "audit_after",
    "audit_head",
    "credentials_of",
    "find_identities",
]

#: Rows read per call of :func:`audit_after` (a burst is read over several polls).
_MAX_ROWS = 500


def credentials_of(authority: Authority, p: Principal, aztp_id: str) -> list[dict[str, Any]]:
    """The credentials issued to ``aztp_id`` (newest first): serial, kind, generation, issue
    time and expiry. NotFoundError if the identity is not the organization's."""
    with authority.store.read() as conn:
        row = authority.identities.row(conn, p, aztp_id)
        rows = conn.execute(
            select(t.credentials)
            .where(t.credentials.c.org_id == p.org_id, t.credentials.c.aztp_id == row.aztp_id)
            .order_by(t.credentials.c.issued_at.desc())
            .limit(50)
        ).all()
    return [
        {
            "serial": r.serial,
            "kind": r.kind,
            "generation": r.generation,
            "issuedAt": r.issued_at,
            "notAfter": r.not_after,
        }
        for r in rows
    ]


def audit_head(authority: Authority, p: Principal) -> int:
    """The sequence number of the organization's newest audit row (0: none yet)."""
    with authority.store.read() as conn:
        seq = conn.execute(
            select(t.audit.c.seq)
            .where(t.audit.c.org_id == p.org_id)
            .order_by(t.audit.c.seq.desc())
            .limit(1)
        ).scalar()
    return int(seq or 0)


def audit_after(
    authority: Authority, p: Principal, after: int, action: str | None = None
) -> tuple[list[AuditEntry], int]:
    """The organization's audit entries in rows after sequence ``after`` (oldest first; a
    batch row expands into its records), only those of ``action`` if given, and the sequence
    to continue after. Records still queued in this process are not flushed: the writer
    commits them on its own, and a live view must not wait for it."""
    with authority.store.read() as conn:
        rows = conn.execute(
            select(t.audit)
            .where(t.audit.c.org_id == p.org_id, t.audit.c.seq > after)
            .order_by(t.audit.c.seq)
            .limit(_MAX_ROWS)
        ).all()
    entries = [
        e for r in rows for e in AuditEntry.from_row(r) if action is None or e.action == action
    ]
    return entries, (rows[-1].seq if rows else after)


def api_key_digest(api_key: str) -> str:
    """The digest the store keeps of an API key (a console session keeps it, not the key,
    to notice the key's revocation)."""
    return _hash_key(api_key)


def api_key_active(authority: Authority, digest: str) -> bool:
    """Whether the API key with this digest still exists and is not revoked or rotated."""
    with authority.store.read() as conn:
        row = conn.execute(
            select(t.api_keys.c.revoked_at).where(t.api_keys.c.key_hash == digest)
        ).first()
    return row is not None and row.revoked_at is None


def find_identities(
    authority: Authority, p: Principal, contains: str = "", limit: int = 200
) -> tuple[list[dict[str, Any]], int]:
    """Up to ``limit`` of the organization's identities whose name contains ``contains``
    (by name), as ``list_identities`` gives them, and how many match in all: a page of an
    organization that may hold a million identities."""
    where = [t.identities.c.org_id == p.org_id]
    if contains:
        escaped = contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(t.identities.c.name.like(f"%{escaped}%", escape="\\"))
    with authority.store.read() as conn:
        total = conn.execute(select(func.count()).select_from(t.identities).where(*where)).scalar()
        rows = conn.execute(
            select(t.identities).where(*where).order_by(t.identities.c.name).limit(limit)
        ).all()
    return [authority.identities.doc(r) for r in rows], int(total or 0)
