"""The change log: what each write changed in an organization's decision state, in order.

The one owner of the ``state_changes`` and ``change_heads`` tables. A write that changes
decision state calls :func:`append` inside its own transaction, so the log and the state can
never disagree: both commit or neither does. Readers (the embedded decision cache, the
server's change feed, remote followers through it) remember a *position* per organization and
ask for what came after it (:func:`since`) — O(change), never a reload of the state.

Positions are per organization (``seq`` 1, 2, 3, ... with no gaps): appends lock the
organization's ``change_heads`` row, so two connections (PostgreSQL) cannot interleave one
organization's positions, and a reader that saw position N has seen every write before it.

A position names a write only within one history of the store: a store restored from a
backup and written again has other entries at the same positions. Each entry's **mark**
(:func:`mark`, a digest of its position, revision and time) tells them apart, so a follower
that resumes from a position says which entry it saw there (:func:`mark_at`).

Compaction (:func:`compact`, run by :func:`append` every :data:`COMPACT_EVERY` positions)
deletes rows older than the retention (:data:`RETENTION`) and records how far it
went (``compacted_through``); :func:`since` then answers "compacted" to a reader that was
behind it, which must load the whole state again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, text, update

from .._util import now_iso
from ..decisions.changes import StateChange, decode, encode
from . import schema as t

__all__ = [
    "CHANNEL",
    "COMPACT_EVERY",
    "RETENTION",
    "LogEntry",
    "Since",
    "append",
    "compact",
    "heads",
    "mark",
    "mark_at",
    "since",
    "tail_quick",
]


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One write's records for one organization."""

    seq: int
    revision: int
    changes: tuple[StateChange, ...]
    #: The entry's :func:`mark` ("" where the reader did not read it).
    mark: str = ""


@dataclass(frozen=True, slots=True)
class Since:
    """What a reader at a position must apply: ``entries`` in order; or ``compacted`` (the
    rows it needs are gone: load the whole state, at :attr:`head`, instead). ``head``: the
    organization's position when read (below the reader's: the log was replaced)."""

    entries: tuple[LogEntry, ...]
    head: int
    compacted: bool = False


#: Retention: the log keeps at least this many of an organization's latest positions. A
#: reader further behind (a follower offline through that many writes to one organization)
#: loads the whole state instead — correct, only slower. At ~200 bytes a row, 10,000 rows
#: are ~2 MB per organization at most.
RETENTION = 10_000
#: Compaction runs inside every this-many-th append of an organization (one indexed delete
#: of up to this many rows), so the log needs no background job.
COMPACT_EVERY = 500
#: PostgreSQL: the channel every append notifies (``NOTIFY``), with ``"<org id>:<position>"``
#: as its payload. Only a wake-up for listeners (the server's change feed): the log is the
#: truth, so a missed notification costs latency, never correctness.
CHANNEL = "aztp_changes"


def append(
    conn: Connection,
    org_id: str,
    revision: int,
    changes: Sequence[StateChange],
    *,
    lock: bool,
    keep: int = RETENTION,
) -> int:
    """Append one write's ``changes`` at the organization's next position (inside the write
    transaction ``conn``) and return that position. ``lock``: lock the head row first
    (PostgreSQL; SQLite writers already hold the database's one write lock). ``keep``: the
    retention (see :data:`RETENTION`)."""
    stmt = select(t.change_heads.c.seq).where(t.change_heads.c.org_id == org_id)
    if lock:
        stmt = stmt.with_for_update()
    head = conn.execute(stmt).scalar_one_or_none()
    if head is None:
        seq = 1
        conn.execute(
            insert(t.change_heads).values(
                org_id=org_id, seq=seq, revision=revision, compacted_through=0
            )
        )
    else:
        seq = int(head) + 1
        conn.execute(
            update(t.change_heads)
            .where(t.change_heads.c.org_id == org_id)
            .values(seq=seq, revision=revision)
        )
    conn.execute(
        insert(t.state_changes).values(
            org_id=org_id,
            seq=seq,
            revision=revision,
            records=json.dumps([encode(c) for c in changes], separators=(",", ":")),
            ts=now_iso(),
        )
    )
    if seq % min(COMPACT_EVERY, max(keep, 1)) == 0 and seq > keep:
        compact(conn, org_id, seq - keep)
    if conn.dialect.name == "postgresql":
        # Delivered when (and only if) the write commits; nothing secret in the payload.
        conn.execute(text("SELECT pg_notify(:channel, :payload)"), _notice(org_id, seq))
    return seq


def _notice(org_id: str, seq: int) -> dict[str, str]:
    return {"channel": CHANNEL, "payload": f"{org_id}:{seq}"}


def heads(conn: Connection, org_ids: Iterable[str]) -> dict[str, int]:
    """The current position of each of ``org_ids`` (0 for one with no change yet)."""
    wanted = list(org_ids)
    found = {
        r.org_id: int(r.seq)
        for r in conn.execute(
            select(t.change_heads.c.org_id, t.change_heads.c.seq).where(
                t.change_heads.c.org_id.in_(wanted)
            )
        )
    }
    return {org_id: found.get(org_id, 0) for org_id in wanted}


def since(conn: Connection, org_id: str, position: int, *, limit: int | None = None) -> Since:
    """The organization's entries after ``position`` (at most ``limit``, oldest first).
    Raises :class:`~aztp_agents.decisions.changes.UnknownChange` for a record this version
    cannot read (the caller reloads the whole state)."""
    row = conn.execute(
        select(t.change_heads.c.seq, t.change_heads.c.compacted_through).where(
            t.change_heads.c.org_id == org_id
        )
    ).first()
    if row is None:
        return Since((), 0)
    head, compacted_through = int(row.seq), int(row.compacted_through)
    if position < compacted_through:
        return Since((), head, compacted=True)
    if position >= head:
        return Since((), head)
    c = t.state_changes.c
    stmt = (
        select(c.seq, c.revision, c.records, c.ts)
        .where(c.org_id == org_id, c.seq > position)
        .order_by(c.seq)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    entries = tuple(_entry(r.seq, r.revision, r.records, r.ts) for r in conn.execute(stmt))
    return Since(entries, head)


def mark(seq: int, revision: int, ts: str) -> str:
    """The mark of the entry at ``seq``: 16 hex digits naming it within this history of the
    store (two histories' entries at one position differ at least in time)."""
    return hashlib.blake2b(f"{seq}|{revision}|{ts}".encode(), digest_size=8).hexdigest()


def mark_at(conn: Connection, org_id: str, seq: int) -> str | None:
    """The :func:`mark` of the organization's entry at ``seq``; ``""`` at position 0 (no
    write yet: the same in every history); None when there is no entry there (compacted,
    or past the head)."""
    if seq == 0:
        return ""
    c = t.state_changes.c
    row = conn.execute(select(c.revision, c.ts).where(c.org_id == org_id, c.seq == seq)).first()
    return None if row is None else mark(seq, int(row.revision), str(row.ts))


#: Reads one statement's rows (:meth:`aztp_agents.store.Store.quick_rows`), or None.
QuickRows = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]] | None]


def tail_quick(rows: QuickRows, org_id: str, position: int) -> tuple[int, Since] | None:
    """The store's revision and :func:`since` for ``position``, in one raw SQLite statement
    (one snapshot; the decision path's catch-up costs one read, not a SQLAlchemy round);
    ``None`` where ``rows`` cannot read (use :func:`since`)."""
    found = rows(_TAIL, (org_id, org_id, position))
    if found is None:
        return None
    revision, head, compacted_through = 0, 0, 0
    entries: list[LogEntry] = []
    for part, a, b, records in found:
        if part == 0:
            revision = int(a)
        elif part == 1:
            head, compacted_through = int(a), int(b)
        else:
            entries.append(_entry(a, b, records))
    if position < compacted_through:
        return revision, Since((), head, compacted=True)
    entries.sort(key=lambda e: e.seq)
    return revision, Since(tuple(entries), head)


def _entry(seq: Any, revision: Any, records: str, ts: str | None = None) -> LogEntry:
    """A stored row as a :class:`LogEntry` (its records decoded; its mark when ``ts``)."""
    changes = tuple(decode(d) for d in json.loads(records))
    if ts is None:
        return LogEntry(int(seq), int(revision), changes)
    return LogEntry(int(seq), int(revision), changes, mark(int(seq), int(revision), str(ts)))


_TAIL = (
    "SELECT 0, value, NULL, NULL FROM meta WHERE key='revision'"
    " UNION ALL SELECT 1, seq, compacted_through, NULL FROM change_heads WHERE org_id=?"
    " UNION ALL SELECT 2, seq, revision, records FROM state_changes WHERE org_id=? AND seq>?"
)


def compact(conn: Connection, org_id: str, keep_after: int) -> int:
    """Delete the organization's entries at positions up to ``keep_after`` and record it;
    returns how many rows went. Readers behind ``keep_after`` will load the whole state."""
    gone = conn.execute(
        delete(t.state_changes).where(
            t.state_changes.c.org_id == org_id, t.state_changes.c.seq <= keep_after
        )
    ).rowcount
    conn.execute(
        update(t.change_heads)
        .where(
            t.change_heads.c.org_id == org_id,
            t.change_heads.c.compacted_through < keep_after,
        )
        .values(compacted_through=keep_after)
    )
    return int(gone or 0)


def oldest_kept(conn: Connection, org_id: str) -> int | None:
    """The oldest position still in the log for the organization (None: no rows)."""
    value = conn.execute(
        select(func.min(t.state_changes.c.seq)).where(t.state_changes.c.org_id == org_id)
    ).scalar_one_or_none()
    return None if value is None else int(value)
