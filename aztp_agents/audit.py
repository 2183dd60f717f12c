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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

GENESIS = "0" * 64

__all__ = ["GENESIS", "AuditEntry", "ChainReport", "entry_hash", "verify_chain"]


class AuditEntry(BaseModel):
    """One audit log entry as stored and as returned by the API."""

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


def entry_hash(
    *,
    org_id: str,
    seq: int,
    ts: str,
    actor: str | None,
    action: str,
    subject: str | None,
    data: Mapping[str, Any],
    prev_hash: str,
) -> str:
    body = json.dumps(
        [org_id, seq, ts, actor, action, subject, data, prev_hash],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainReport:
    ok: bool
    entries: int
    problem: str | None = None
    seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "problem": self.problem, "seq": self.seq}


def verify_chain(
    entries: Iterable[AuditEntry], head: tuple[int, str] | None = None
) -> ChainReport:
    """Check one organization's entries (in ``seq`` order as stored) against the chain."""
    prev = GENESIS
    expected_seq = 1
    count = 0
    last_hash = GENESIS
    for e in entries:
        count += 1
        if e.seq != expected_seq:
            return ChainReport(False, count, f"entry {e.seq} found where {expected_seq} was expected (dropped or reordered)", e.seq)
        if e.prev_hash != prev:
            return ChainReport(False, count, f"entry {e.seq} does not follow entry {e.seq - 1} (dropped, reordered or edited)", e.seq)
        recomputed = entry_hash(
            org_id=e.org_id, seq=e.seq, ts=e.ts, actor=e.actor, action=e.action,
            subject=e.subject, data=e.data, prev_hash=e.prev_hash,
        )
        if recomputed != e.hash:
            return ChainReport(False, count, f"entry {e.seq} was edited (its hash does not match its content)", e.seq)
        prev = e.hash
        last_hash = e.hash
        expected_seq += 1
    if head is not None:
        head_seq, head_hash = head
        if head_seq != count or head_hash != last_hash:
            return ChainReport(False, count, f"the chain ends at entry {count} but its head records entry {head_seq} (entries dropped from the end)", head_seq)
    return ChainReport(True, count)
