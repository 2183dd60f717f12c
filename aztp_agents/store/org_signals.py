"""Per-organization change signals: has anything of *this* organization been written?

Why this exists. SQLite's WAL-index counter (see :mod:`.changes`) moves on every commit to
the store, by any organization and by the audit writer. An enforcement point that saw it move
used to read the store (the revision, then its organization's log tail: two reads of ~20 µs
each right after another connection committed) before its next decision, although most
commits are another tenant's. This module gives each organization a counter in shared memory
that moves only when a write that changes *its* decision state runs, so a decision after
another tenant's write costs a memory read instead of a store read.

The file. ``<database>-orgs`` beside the database: :data:`SLOTS` 64-bit counters (32 KiB),
mapped by every process that opens the store. An organization's counter is slot
``blake2b(org_id) % SLOTS``; organizations sharing a slot only cost each other a read.

The protocol (a sequence lock whose writers may die):

* A write transaction that appends an organization's change-log entry calls :meth:`begin`
  for its slot while it holds the database's write lock: it takes the slot's lock (an
  ``fcntl`` byte-range lock, so a writer killed by the kernel releases it, plus a
  process-wide thread lock, since POSIX locks do not exclude threads of one process) and
  makes the counter **odd** (``+1`` from even; ``+2`` from odd, the mark of a writer that died
  mid-write). After the transaction ends, committed or not, :meth:`end` makes it **even**
  again and releases the lock. Every increment happens under the slot's lock, so none is lost.
* A reader remembers an even value read *before* the store read that made its state current.
  Later, the state is still current for everything committed so far when the counter still
  shows that same even value: an even value means no write to the slot was between
  :meth:`begin` and :meth:`end` when it was read (so every write begun before was committed
  and in the read), and any write begun after has moved the counter since. An odd value
  (a write in flight, or a writer that died) is never trusted: the reader reads the store.

A writer that dies between its commit and :meth:`end` leaves the counter odd: readers of that
slot then read the store on every change (correct, only slower) until the slot's next write
makes it even again.

Subjects: which identities and flows a write touched. An organization's signal moves on every
write to it, but most writes touch identities and flows a given decision does not involve (a
decision reads only its agent's, its tool's and its flow's parts of the state: see
``aztp_agents.decisions.changes.involved``). So the file also holds a **clock** (one counter
for the whole store) and :data:`SUBJECT_SLOTS` subject slots, ``blake2b(org, subject)``:

* A write, once it holds its organization's slot (odd), ticks the clock and stores the new
  value in the slot of every subject its records involve (:meth:`touch`). Writers hold the
  database's write lock meanwhile, so clock values only grow and a slot only ever increases.
* A reader reads the clock *before* the even signal it remembers. Later, when the signal has
  moved, a subject whose slot is still at most that clock value was not touched by any write
  to the organization since: such a write ticked the clock after making the signal odd, so
  had it begun before the clock read, the signal read after it would have been odd (or the
  write ended, and was in the store read that followed). Subjects sharing a slot only cost
  each other a read. No write is trusted that could be missing: a slot above the clock, for
  whatever reason, means "read the store".

The file never holds a secret (0600 anyway, opened without following symlinks). Its
identity is confirmed with the database's (see :mod:`.files`): a process whose ``-orgs``
file was deleted or replaced stops answering from memory, and no write commits while a
process that has the database open is not on the same file.
"""

from __future__ import annotations

import functools
import hashlib
import mmap
import os
import struct
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no signals (readers read the store)
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "PRESENCE_BYTE",
    "SLOTS",
    "SUBJECT_SLOTS",
    "OrgSignals",
    "open_signals",
    "signals_supported",
]

#: Organization counters in the file (a power of two; 32 KiB of 64-bit counters).
SLOTS = 4096
#: The byte (past the counters) on which every process holding the file keeps a shared lock,
#: so a writer can tell from ``/proc/locks`` that every process on the database also shares
#: this file (see :meth:`.files.StoreFiles.check_shared_index`). It names the file's layout:
#: a process of an earlier layout (one without subject slots, on byte +1) counts as not
#: sharing it, so neither commits a write the other would not see.
PRESENCE_BYTE = SLOTS * 8 + 2
#: The store's clock (see "Subjects" above), in a page of its own.
_CLOCK = 40 * 1024
#: Subject slots (a power of two; 512 KiB of 64-bit clock values), from 64 KiB on.
SUBJECT_SLOTS = 65536
_SUBJECTS = 64 * 1024
_SIZE = _SUBJECTS + SUBJECT_SLOTS * 8
_U64 = struct.Struct("=Q")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def signals_supported() -> bool:
    """Whether this platform has the POSIX file locks the signals need (else no process on it
    uses them, and enforcement points read the store's revision instead)."""
    return fcntl is not None


def open_signals(database: Path) -> OrgSignals:
    """The store's signals, one :class:`OrgSignals` per file per process (shared by every
    :class:`~aztp_agents.store.Store` of the database here, counted): two descriptors of one
    file in a process would drop each other's locks when one closes."""
    path = Path(f"{database}-orgs")
    with _OPEN_LOCK:
        try:
            st = os.stat(path)
            key: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            key = None
        signals = _OPEN.get(key) if key is not None else None
        if signals is None or signals.closed:
            signals = OrgSignals(database)
            _OPEN[signals.identity] = signals
        signals.users += 1
        return signals


_OPEN: dict[tuple[int, int], OrgSignals] = {}
_OPEN_LOCK = threading.Lock()


class OrgSignals:
    """The mapped ``-orgs`` file of one store, in this process (see :func:`open_signals`)."""

    def __init__(self, database: Path) -> None:
        if fcntl is None:
            raise OSError("no POSIX file locks on this platform")
        self.path = Path(f"{database}-orgs")
        # Never closed while the store is open: closing any descriptor of the file would drop
        # every POSIX lock this process holds on it (the presence lock, a slot's lock).
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(self._fd).st_size < _SIZE:
                os.ftruncate(self._fd, _SIZE)  # zeros; a no-op race with another opener
            fcntl.lockf(self._fd, fcntl.LOCK_SH, 1, PRESENCE_BYTE)
            self._map = mmap.mmap(self._fd, _SIZE)
        except BaseException:
            os.close(self._fd)
            raise
        st = os.fstat(self._fd)
        #: ``(st_dev, st_ino)`` of the file this process maps.
        self.identity = (st.st_dev, st.st_ino)
        self._slots: dict[str, int] = {}
        #: POSIX locks do not exclude threads of one process: this does, from begin to end
        #: (reentrant: one transaction may begin several organizations' slots).
        self._writing = threading.RLock()
        self.closed = False
        #: The open stores using it (see :func:`open_signals`).
        self.users = 0

    # --- reading (no I/O) -----------------------------------------------------------------

    def offset(self, org_id: str) -> int:
        """The byte offset of the organization's counter."""
        off = self._slots.get(org_id)
        if off is None:
            digest = hashlib.blake2b(org_id.encode(), digest_size=8).digest()
            off = self._slots[org_id] = (int.from_bytes(digest, "little") % SLOTS) * 8
        return off

    def subject_offset(self, org_id: str, subject: str) -> int:
        """The byte offset of the subject's slot (an identity's aztp id, a flow's id)."""
        digest = hashlib.blake2b(f"{org_id}\0{subject}".encode(), digest_size=8).digest()
        return _SUBJECTS + (int.from_bytes(digest, "little") % SUBJECT_SLOTS) * 8

    def subject_reader(self, org_id: str, subject: str) -> Callable[[], tuple[int]]:
        """``subject_reader(...)()[0]``: the clock value of the last write that touched the
        subject (or another sharing its slot), read without a Python frame."""
        return functools.partial(_U64.unpack_from, self._map, self.subject_offset(org_id, subject))

    def clock_reader(self) -> Callable[[], tuple[int]]:
        """``clock_reader()[0]``: the store's clock (read it *before* an organization's
        signal, to remember with it), without a Python frame."""
        return functools.partial(_U64.unpack_from, self._map, _CLOCK)

    def reader(self, org_id: str) -> Callable[[], tuple[int]]:
        """``reader()[0]`` is the organization's raw counter (odd: do not trust), read without
        a Python frame (for the decision fast path, which compares it with an even value)."""
        return functools.partial(_U64.unpack_from, self._map, self.offset(org_id))

    def read(self, org_id: str) -> int | None:
        """The organization's counter when no write to its slot is in flight (even), else
        None (never trust it: read the store). None once closed."""
        if self.closed:
            return None
        value: int = _U64.unpack_from(self._map, self.offset(org_id))[0]
        return None if value & 1 else value

    # --- writing (inside a write transaction) ---------------------------------------------

    def begin(self, org_ids: Iterable[str]) -> tuple[int, ...]:
        """Mark the organizations' slots as being written (odd); returns the slots held, to
        give to :meth:`end` whatever happens. Call while holding the database's write lock."""
        offsets = tuple(sorted({self.offset(o) for o in org_ids}))
        if not offsets:
            return offsets
        self._writing.acquire()
        locked: list[int] = []
        try:
            for off in offsets:
                fcntl.lockf(self._fd, fcntl.LOCK_EX, 8, off)
                locked.append(off)
                value = _U64.unpack_from(self._map, off)[0]
                _U64.pack_into(self._map, off, value + (2 if value & 1 else 1))
        except BaseException:
            self._release(locked)
            raise
        return offsets

    def touch(self, org_id: str, subjects: Iterable[str]) -> None:
        """The write that holds the organization's slot (after :meth:`begin`, before
        :meth:`end`) touches ``subjects``: tick the clock and store it in their slots. Call
        while holding the database's write lock (writers take turns on the clock)."""
        offsets = {self.subject_offset(org_id, s) for s in subjects}
        if not offsets:
            return
        tick: int = _U64.unpack_from(self._map, _CLOCK)[0] + 1
        _U64.pack_into(self._map, _CLOCK, tick)
        for off in offsets:
            _U64.pack_into(self._map, off, tick)

    def end(self, offsets: tuple[int, ...]) -> None:
        """The transaction that :meth:`begin` marked ended (committed or not): even again."""
        if not offsets:
            return
        try:
            for off in offsets:
                value = _U64.unpack_from(self._map, off)[0]
                _U64.pack_into(self._map, off, value + (1 if value & 1 else 2))
        finally:
            self._release(list(offsets))

    def _release(self, offsets: list[int]) -> None:
        try:
            for off in offsets:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, 8, off)
        finally:
            self._writing.release()

    def close(self) -> None:
        """One store using it closed; the last one unmaps it and closes the descriptor (its
        connections are gone by then, so no write of ours holds a slot)."""
        with _OPEN_LOCK:
            self.users -= 1
            if self.users > 0 or self.closed:
                return
            self.closed = True
            _OPEN.pop(self.identity, None)
        self._map.close()
        os.close(self._fd)
