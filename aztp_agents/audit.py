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
from itertools import chain
from typing import Any

from pydantic import BaseModel, ConfigDict

from ._util import epoch_iso

GENESIS = "0" * 64

__all__ = [
    "BATCH_ACTION",
    "GENESIS",
    "AuditEntry",
    "CallContext",
    "ChainReport",
    "FieldData",
    "FieldParts",
    "QueuedRecord",
    "canonical_json",
    "decode_batch",
    "encode_batch",
    "entry_hash",
    "register_layout",
    "verify_chain",
]


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
    #: Why the stored row could not be read (its ``data`` is then empty): it was changed
    #: outside aztp-agents. ``None`` for every readable entry.
    problem: str | None = None

    def to_doc(self) -> dict[str, Any]:
        """The entry as the API sends it: ``problem`` only on an entry that has one."""
        return self.model_dump(mode="json", exclude=None if self.problem else {"problem"})

    @classmethod
    def from_row(cls, row: Any) -> list[AuditEntry]:
        """The entries a stored row holds: itself, or one per record of a batch; a row that
        cannot be decoded is one entry that says so (a reader of the log sees everything else
        and where it is damaged, as ``verify_chain`` reports it)."""
        try:
            return cls._decode(row)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            return [
                cls(
                    org_id=row.org_id,
                    seq=row.seq,
                    ts=str(row.ts),
                    actor=row.actor,
                    action=row.action,
                    subject=row.subject,
                    prev_hash=row.prev_hash,
                    hash=row.hash,
                    problem=(
                        f"entry {row.seq} cannot be read ({type(exc).__name__}): it was changed "
                        "outside aztp-agents; run 'aztp-agents audit verify'"
                    ),
                )
            ]

    @classmethod
    def _decode(cls, row: Any) -> list[AuditEntry]:
        if row.action != BATCH_ACTION:
            return [
                cls(
                    org_id=row.org_id,
                    seq=row.seq,
                    ts=row.ts,
                    actor=row.actor,
                    action=row.action,
                    subject=row.subject,
                    data=json.loads(row.data),
                    prev_hash=row.prev_hash,
                    hash=row.hash,
                )
            ]
        return [
            cls(
                org_id=row.org_id,
                seq=row.seq,
                ts=epoch_iso(ts),
                actor=actor,
                action=action,
                subject=subject,
                data=data,
                prev_hash=row.prev_hash,
                hash=row.hash,
                index=i,
            )
            for i, (ts, action, actor, subject, data) in enumerate(decode_batch(row.data))
        ]


#: Action of the rows that hold a group-committed batch of high-volume records (tool-call
#: decisions, verifications). A batch is one chain entry: one hash over all its records.
#: Readers expand it into one entry per record, with the record's own action.
BATCH_ACTION = "audit.batch"

#: Record data given as a flat tuple of plain values (str, int, float, bool, None) instead of
#: JSON text: the fields named by the action's layout (:func:`register_layout`), in order,
#: then the call's context as alternating keys and values. Nothing is encoded on the caller's
#: path, and a flat tuple of plain values is not tracked by Python's garbage collector, so
#: records waiting in the queue add nothing to collections.
FieldData = tuple[Any, ...]


class FieldParts(tuple):  # type: ignore[type-arg]
    """:data:`FieldData` in parts (tuples), joined when the batch is encoded. A part that is
    the same object in many records (a memoized decision's fields, a :class:`CallContext`'s
    flat form) is then encoded once per batch instead of once per record."""

    __slots__ = ()


#: A queued record: (epoch seconds, action, actor, subject, canonical JSON of its data, or
#: :data:`FieldData`, or :class:`FieldParts`).
QueuedRecord = tuple[float, str, "str | None", "str | None", "str | FieldData | FieldParts"]

_LAYOUTS: dict[str, tuple[str, ...]] = {}
_PLAIN = frozenset({str, int, float, bool, type(None)})


def flatten_context(context: Mapping[str, Any]) -> FieldData:
    """A call context as the tail of :data:`FieldData`: alternating keys and values, keys as
    text, plain values as they are and anything else as ``str(value)``."""
    if _PLAIN.issuperset(map(type, context.values())) and all(type(k) is str for k in context):
        return tuple(chain.from_iterable(context.items()))
    return tuple(
        chain.from_iterable(
            (str(k), v if type(v) in _PLAIN else str(v)) for k, v in context.items()
        )
    )


class CallContext(dict):  # type: ignore[type-arg]
    """A call's audit context that does not change: frozen, and flattened for the audit
    record once, when it is made, instead of on every decision.

    Enforcement points whose context is the same for many calls (a crew, task, agent and
    tool) make one and pass it to every decision. It is a ``dict`` (read-only), so policy
    conditions and JSON encoders take it as they are."""

    __slots__ = ("flat",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flat: FieldData = flatten_context(self)

    def _read_only(self, *_a: Any, **_k: Any) -> None:
        raise TypeError("a CallContext is read-only; make a new one")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _read_only  # type: ignore[assignment]

    def __reduce__(self) -> Any:
        return (CallContext, (dict(self),))


def register_layout(action: str, fields: Sequence[str]) -> None:
    """Name the leading fields of :data:`FieldData` records of ``action``."""
    _LAYOUTS[action] = tuple(fields)


def encode_batch(records: Sequence[QueuedRecord]) -> str:
    """The stored text of a batch, undone by :func:`decode_batch`.

    Every value is stored once per batch (``values``) and referred to by position, and so is
    every distinct list of field positions (``fields``), so a record costs a few dictionary
    look-ups and repeated decisions cost almost no space. A row is ``[ts, action, actor,
    subject, data]``: ``data`` >= 0 is the position of a JSON text in ``values``; ``data`` < 0
    is entry ``-data - 1`` of ``fields``, the values of a :data:`FieldData` record, named by
    the batch's ``layouts``."""
    index: dict[Any, int] = {}
    values: list[Any] = []
    layouts: dict[str, list[str]] = {}

    def ref(value: Any) -> int:
        key = value if type(value) is str else (type(value), value)  # True and 1 stay apart
        i = index.get(key)
        if i is None:
            if type(value) not in _PLAIN:  # never let one odd value sink the batch
                value = str(value)
            i = index[key] = len(values)
            values.append(value)
        return i

    get = index.get
    fields: list[list[int]] = []
    #: id(tuple) -> its entry in ``fields`` (as the negative row code). Every tuple is kept alive
    #: by ``records`` while this runs, so an id stands for one tuple: a tuple that many records
    #: share (a memoized decision's fields, a CallContext) is read once.
    known: dict[Any, int] = {}
    #: the same for FieldParts, by the ids of their parts
    joined: dict[tuple[int, ...], int] = {}

    read: dict[int, list[int]] = {}  # id(tuple) -> the positions of its values

    def positions(values: tuple[Any, ...]) -> list[int]:
        out = read.get(id(values))
        if out is None:
            out = read[id(values)] = []
            for v in values:  # ref() inlined: this loop runs for every field of every new tuple
                i = get(v if type(v) is str else (type(v), v))
                out.append(ref(v) if i is None else i)
        return out

    def code(data: tuple[Any, ...]) -> int:
        if type(data) is FieldParts:
            key: Any = tuple(map(id, data))
            c = joined.get(key)
            if c is None:
                fields.append(
                    [i for part in data for i in positions(part)]
                )  # a new list: never shared
                c = joined[key] = -len(fields)
            return c
        c = known.get(id(data))
        if c is None:
            fields.append(positions(data))
            c = known[id(data)] = -len(fields)
        return c

    rows = []
    for ts, action, actor, subject, data in records:
        if type(data) is str:
            d = ref(data)
        else:
            d = code(data)
            if action not in layouts:
                layouts[action] = list(_LAYOUTS.get(action, ()))
        rows.append((round(ts, 3), ref(action), ref(actor), ref(subject), d))
    return json.dumps(
        {"v": 3, "values": values, "layouts": layouts, "fields": fields, "rows": rows},
        separators=(",", ":"),
    )


def _field_data(layout: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    n = len(layout)
    data = dict(zip(layout, values[:n], strict=False))
    extra = values[n:]
    if extra:
        data["context"] = {str(k): v for k, v in zip(extra[::2], extra[1::2], strict=False)}
    return data


def decode_batch(text: str) -> list[tuple[float, str, str | None, str | None, dict[str, Any]]]:
    """The records of a batch written by :func:`encode_batch`."""
    batch = json.loads(text)
    v, layouts, fields = batch["values"], batch["layouts"], batch["fields"]
    out = []
    for ts, a, u, b, d in batch["rows"]:
        action = v[a]
        data = (
            json.loads(v[d])
            if d >= 0
            else _field_data(layouts.get(action, ()), [v[i] for i in fields[-d - 1]])
        )
        out.append((ts, action, v[u], v[b], data))
    return out


def canonical_json(data: Mapping[str, Any]) -> str:
    """The stored (and hashed) form of an entry's ``data``."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_hash(
    org_id: str,
    seq: int,
    ts: str,
    actor: str | None,
    action: str,
    subject: str | None,
    data_json: str,
    prev_hash: str,
) -> str:
    """SHA-256 over the entry's fields as stored (``None`` and ``""`` hash differently)."""
    fields = (
        org_id,
        str(seq),
        ts,
        "\x00" if actor is None else actor,
        action,
        "\x00" if subject is None else subject,
        data_json,
        prev_hash,
    )
    return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainReport:
    ok: bool
    entries: int
    problem: str | None = None
    seq: int | None = None
    #: The checkpoint the chain was checked against (``seq``, ``hash``, ``ts``, ``kid``), if any.
    checkpoint: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"ok": self.ok, "entries": self.entries, "problem": self.problem, "seq": self.seq}
        if self.checkpoint is not None:
            out["checkpoint"] = dict(self.checkpoint)
        return out


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
            return ChainReport(
                False,
                count,
                f"entry {e.seq} found where {expected_seq} was expected (dropped or reordered)",
                e.seq,
            )
        if e.prev_hash != prev:
            return ChainReport(
                False,
                count,
                f"entry {e.seq} does not follow entry {e.seq - 1} (dropped, reordered or edited)",
                e.seq,
            )
        if (
            entry_hash(e.org_id, e.seq, e.ts, e.actor, e.action, e.subject, e.data, e.prev_hash)
            != e.hash
        ):
            return ChainReport(
                False,
                count,
                f"entry {e.seq} was edited (its hash does not match its content)",
                e.seq,
            )
        prev = e.hash
        expected_seq += 1
    if head is not None:
        head_seq, head_hash = head
        if head_seq != count or head_hash != prev:
            return ChainReport(
                False,
                count,
                f"the chain ends at entry {count} but its head records entry {head_seq} (entries dropped from the end)",
                head_seq,
            )
    return ChainReport(True, count)
