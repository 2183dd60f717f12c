"""The hash-chained audit log (pure parts: entry hashing and chain verification).

Each organization has its own chain. Entry ``n`` carries ``prev_hash`` = hash of entry
``n-1`` (64 zeros for the first) and ``hash`` = SHA-256 over a canonical JSON encoding of
its own fields and ``prev_hash``. Editing, dropping or reordering any entry breaks the chain;
the store also keeps the chain's head (last seq and hash) so a dropped tail is detected.

Entries never contain secrets: callers pass identifiers and reasons, never keys or tokens.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from ._util import epoch_iso

GENESIS = "0" * 64

__all__ = ["BATCH_ACTION", "GENESIS", "AuditEntry", "ChainReport", "QueuedRecord", "canonical_json", "decode_batch", "encode_batch", "entry_hash", "verify_chain"]


class AuditEntry(BaseModel):
    """One audit log entry as returned by the API (``data`` decoded)."""

    model_config = ConfigDict(frozen=True)

    org_id: str
    seq: int
    ts: str
    actor: str | None = None
    action: str
    subject: str | None = None
    data: dict[str, Any] = {}
    prev_hash: str
    hash: str
    #: Position inside a group-committed batch (None for entries written on their own).
    index: int | None = None

    @classmethod
    def from_row(cls, row: Any) -> list[AuditEntry]:
        """The entries a stored row holds: itself, or one per record of a batch."""
        if row.action != BATCH_ACTION:
            return [cls(org_id=row.org_id, seq=row.seq, ts=row.ts, actor=row.actor, action=row.action,
                        subject=row.subject, data=json.loads(row.data), prev_hash=row.prev_hash, hash=row.hash)]
        return [
            cls(org_id=row.org_id, seq=row.seq, ts=epoch_iso(ts), actor=actor, action=action,
                subject=subject, data=data, prev_hash=row.prev_hash, hash=row.hash, index=i)
            for i, (ts, action, actor, subject, data) in enumerate(decode_batch(row.data))
        ]


#: Action of the rows that hold a group-committed batch of high-volume records (tool-call
#: decisions, verifications). A batch is one chain entry: one hash over all its records.
#: Readers expand it into one entry per record, with the record's own action.
BATCH_ACTION = "audit.batch"

#: A queued record: (epoch seconds, action, actor, subject, canonical JSON of its data).
QueuedRecord = tuple[float, str, "str | None", "str | None", str]


def encode_batch(records: Sequence[QueuedRecord]) -> str:
    """The stored text of a batch. Repeated strings (actions, actors, subjects, data) are
    interned, so a record costs a few dictionary look-ups; :func:`decode_batch` reverses it."""
    index: dict[str | None, int] = {}
    rows = []
    for ts, *values in records:
        ids = []
        for value in values:
            i = index.get(value)
            if i is None:
                i = index[value] = len(index)
            ids.append(i)
        rows.append((round(ts, 3), *ids))
    return json.dumps({"strings": list(index), "rows": rows}, separators=(",", ":"))


def decode_batch(text: str) -> list[tuple[float, str, str | None, str | None, dict[str, Any]]]:
    batch = json.loads(text)
    s = batch["strings"]
    return [(ts, s[a], s[u], s[b], json.loads(s[d])) for ts, a, u, b, d in batch["rows"]]


def canonical_json(data: Mapping[str, Any]) -> str:
    """The stored (and hashed) form of an entry's ``data``."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_hash(org_id: str, seq: int, ts: str, actor: str | None, action: str, subject: str | None,
               data_json: str, prev_hash: str) -> str:
    """SHA-256 over the entry's fields as stored (``None`` and ``""`` hash differently)."""
    fields = (org_id, str(seq), ts, "\x00" if actor is None else actor, action,
              "\x00" if subject is None else subject, data_json, prev_hash)
    return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainReport:
    ok: bool
    entries: int
    problem: str | None = None
    seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "problem": self.problem, "seq": self.seq}


def verify_chain(rows: Iterable[Any], head: tuple[int, str] | None = None) -> ChainReport:
    """Check one organization's stored rows (in ``seq`` order) against the chain.

    ``rows`` have the stored columns (``org_id, seq, ts, actor, action, subject, data``
    (canonical JSON text), ``prev_hash, hash``); ``head`` is the recorded (seq, hash).
    """
    prev = GENESIS
    expected_seq = 1
    count = 0
    for e in rows:
        count += 1
        if e.seq != expected_seq:
            return ChainReport(False, count, f"entry {e.seq} found where {expected_seq} was expected (dropped or reordered)", e.seq)
        if e.prev_hash != prev:
            return ChainReport(False, count, f"entry {e.seq} does not follow entry {e.seq - 1} (dropped, reordered or edited)", e.seq)
        if entry_hash(e.org_id, e.seq, e.ts, e.actor, e.action, e.subject, e.data, e.prev_hash) != e.hash:
            return ChainReport(False, count, f"entry {e.seq} was edited (its hash does not match its content)", e.seq)
        prev = e.hash
        expected_seq += 1
    if head is not None:
        head_seq, head_hash = head
        if head_seq != count or head_hash != prev:
            return ChainReport(False, count, f"the chain ends at entry {count} but its head records entry {head_seq} (entries dropped from the end)", head_seq)
    return ChainReport(True, count)
