"""Change detection: the one place that tells readers whether the store may have changed.

Every reader of decision state (the authority's decision cache, the server's change feed and
API-key cache) asks here, through a :class:`ChangeCursor` of its own, so no reader consumes
another's "changed" signal.

Two sources, cheapest first:

* SQLite's WAL-index transaction counter (offset 8 of the ``-shm`` file, documented in
  SQLite's WAL file format): every commit by any connection in any process moves it; read
  from shared memory without a system call (about 0.2 us). :attr:`StoreChanges.token_reader`
  reads it without a Python frame, for the decision fast path.
* Where that is unavailable (not SQLite, or the self-test at open failed): ``PRAGMA
  data_version`` on a connection of the cursor's own (about 2-5 us), or, for databases
  without it, "maybe" every time (the caller then compares the revision).

A cursor also bounds how long its state may be trusted without confirming the store's files
(:mod:`.files`): :attr:`ChangeCursor.confirmed_until` (monotonic seconds) is at most
:attr:`StoreFiles.CONFIRM_INTERVAL_S <.files.StoreFiles.CONFIRM_INTERVAL_S>` after the last
confirmation; past it :meth:`ChangeCursor.current_now` (and the decision fast path) says "not
current", and :meth:`ChangeCursor.confirm` checks the files first, raising
:class:`~aztp_agents.errors.StoreError` when they are gone, replaced, unreadable or split.

A cursor tracks the state *revision* it last confirmed. A per-organization change log (each
write appends what changed, with a per-organization position) plugs in at
:meth:`ChangeCursor.confirm`: instead of re-reading one revision and reloading, a cursor will
apply the records after its position and notify its listeners with them.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import mmap
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import Store

__all__ = ["ChangeCursor", "StoreChanges"]

log = logging.getLogger(__name__)

_U32 = struct.Struct("=I")


class StoreChanges:
    """The change sources of one store (one per :class:`Store`)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._shm = (
            _change_counter(Path(store.path).resolve())
            if store.is_sqlite and store.path is not None
            else None
        )
        #: ``token_reader()[0]`` is :meth:`token` without a Python call (for the decision fast
        #: path); ``None`` where there is no shared counter, and once the store is closed.
        self.token_reader: Callable[[], tuple[int]] | None = (
            None if self._shm is None else functools.partial(_U32.unpack_from, self._shm, 8)
        )
        self._default: ChangeCursor | None = None
        self._cursors: list[ChangeCursor] = []

    def token(self) -> int | None:
        """A number that changes whenever any connection, in any process, commits to the
        store; ``None`` when unavailable."""
        read = self.token_reader
        return None if read is None else read()[0]

    def cursor(self) -> ChangeCursor:
        """A new reader's view (its own "changed since I asked" state)."""
        cursor = ChangeCursor(self)
        self._cursors.append(cursor)
        return cursor

    def maybe_changed(self) -> bool:
        """Could anything have been committed since the last call? (the store's own cursor)"""
        if self._default is None:
            self._default = self.cursor()
        return self._default.data_changed()

    def close(self) -> None:
        """The shared mapping itself stays (see :func:`_change_counter`); readers stop using it."""
        self._shm = None
        self.token_reader = None
        for cursor in self._cursors:
            cursor.close()


class ChangeCursor:
    """One reader's view: the revision it confirmed and whether the store moved since.

    The decision fast path reads :attr:`confirmed_token` and :attr:`stale` directly: the state
    at :attr:`revision` is current when the store's token still equals ``confirmed_token``
    and nothing here marked it stale. :meth:`confirm` (blocking) makes it current again.
    """

    #: Without the shared counter: how often the watcher thread (started by
    #: :meth:`current_now`) polls, the bound on how late the no-I/O path sees another
    #: process's write.
    WATCH_INTERVAL_S = 0.002

    def __init__(self, changes: StoreChanges) -> None:
        self.changes = changes
        #: The store's :attr:`StoreChanges.token_reader`, held here so the decision fast path
        #: reaches it in one attribute read (``None`` once closed).
        self.token_reader: Callable[[], tuple[int]] | None = changes.token_reader
        #: The revision last confirmed (-1: none yet).
        self.revision = -1
        #: The store's token at which :attr:`revision` was confirmed.
        self.confirmed_token: int | None = None
        #: Set by a write in this process (and by the watcher): confirm before trusting.
        self.stale = True
        #: ``time.monotonic()`` until which the store's files count as confirmed (0: never
        #: confirmed; infinity: nothing to confirm, e.g. PostgreSQL).
        self.confirmed_until = 0.0
        #: Called with the new revision when :meth:`confirm` finds it moved, before the new
        #: token counts as confirmed (readers drop what they built on the old revision).
        self.listeners: list[Callable[[int], None]] = []
        self._conn: sqlite3.Connection | None = None
        self._conn_lock = threading.Lock()
        self._data_version: int | None = None
        self._last_token: int | None = None
        self._watcher: threading.Thread | None = None
        self._closed = False
        changes.store.audit_commit_listeners.append(self._audit_committed)

    # --- blocking -----------------------------------------------------------------------

    def confirm(self) -> int:
        """Make :attr:`revision` current and return it; reads the revision only when
        something was committed since it was last confirmed (or this process wrote). Raises
        :class:`~aztp_agents.errors.StoreError` when the store's files cannot be confirmed."""
        self.confirm_files()
        token = self.changes.token()
        if token is None:
            if self.data_changed() or self.stale:
                self.stale = False
                self.read_revision()
        elif token != self.confirmed_token or self.stale:
            self.stale = False
            self.read_revision()
            # Only now: a thread that reads the token meanwhile confirms too, never skips.
            self.confirmed_token = token
        return self.revision

    def confirm_files(self) -> None:
        """Confirm the store's files when :attr:`confirmed_until` has passed (see
        :mod:`.files`); raises :class:`~aztp_agents.errors.StoreError` when they cannot be."""
        now = time.monotonic()
        if now >= self.confirmed_until:
            files = self.changes.store.files
            if files is None:
                self.confirmed_until = math.inf
            else:
                files.confirm()
                self.confirmed_until = now + files.CONFIRM_INTERVAL_S

    def read_revision(self) -> None:
        rev = self.changes.store.revision()
        if rev != self.revision:
            for listener in self.listeners:
                listener(rev)
            self.revision = rev

    def data_changed(self) -> bool:
        """Could anyone have committed since this cursor last asked? ``PRAGMA data_version``
        on the cursor's own connection (SQLite files), else always ``True``."""
        store = self.changes.store
        if not store.is_sqlite or store.path is None or self._closed:
            return True
        with self._conn_lock:
            if self._conn is None:
                self._conn = sqlite3.connect(
                    str(store.path), check_same_thread=False, isolation_level=None
                )
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
            changed, self._data_version = version != self._data_version, version
        return changed

    def committed(self) -> bool:
        """Was anything committed since the last call? (the token if there is one)"""
        token = self.changes.token()
        if token is None:
            return self.data_changed()
        moved, self._last_token = token != self._last_token, token
        return moved

    # --- no I/O -------------------------------------------------------------------------

    def current_now(self) -> bool:
        """Whether :attr:`revision` is current, without I/O (False: :meth:`confirm` first)."""
        if time.monotonic() >= self.confirmed_until:
            return False
        read = self.token_reader
        if read is None:
            if self._watcher is None:
                self._start_watcher()
        elif read()[0] != self.confirmed_token:
            return False
        return not self.stale

    def _audit_committed(self, token: int, revision: int) -> None:
        """The audit writer committed; at ``token`` the revision was ``revision``. An audit
        commit moves the token but never the revision: if ours is that revision, the token
        needs no re-check, and decisions keep their state instead of re-reading the revision
        after every audit batch."""
        if revision == self.revision and not self.stale:
            self.confirmed_token = token

    def _start_watcher(self) -> None:
        with self._conn_lock:
            if self._watcher is not None:
                return
            self._watcher = threading.Thread(
                target=self._watch, name="aztp-store-watcher", daemon=True
            )
            self._watcher.start()

    def _watch(self) -> None:
        while not self._closed:
            try:
                if self.data_changed():
                    self.stale = True
            except Exception:  # store closed or failing: make every cached read miss
                self.stale = True
                log.debug("store watcher check failed", exc_info=True)
            time.sleep(self.WATCH_INTERVAL_S)

    def close(self) -> None:
        self._closed = True
        self.stale = True
        self.token_reader = None
        with self._conn_lock:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None


_COUNTERS: dict[Path, tuple[Any, mmap.mmap, int] | None] = {}
_COUNTERS_LOCK = threading.Lock()


def _change_counter(path: Path) -> mmap.mmap | None:
    """The mapped WAL-index header of ``path``: one per file per process, remapped only when
    the ``-shm`` file was replaced (after every connection to the store had closed).

    Its file descriptor is not closed while the file is live: closing any descriptor of a
    file drops every POSIX lock the process holds on it — SQLite's own locks on the ``-shm``
    file included — and another process could then rebuild the index under us. Self-tested
    once per file: a commit must move the counter, else None (callers use
    ``PRAGMA data_version``)."""
    shm_path = f"{path}-shm"
    with _COUNTERS_LOCK:
        try:
            inode = os.stat(shm_path).st_ino
        except OSError:
            return None
        if path in _COUNTERS:
            entry = _COUNTERS[path]
            if entry is None:
                return None
            if entry[2] == inode:
                return entry[1]
            entry[1].close()  # the old file is gone (unlinked): nothing of ours is locked on it
            entry[0].close()
        _COUNTERS[path] = None
        try:
            handle = open(shm_path, "rb")  # noqa: SIM115 - kept open on purpose
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            if _U32.unpack_from(mapped, 0)[0] != 3007000:  # WAL-index format version
                raise ValueError("unexpected WAL-index format")
            before = _U32.unpack_from(mapped, 8)[0]
            _probe_commit(path)
            if _U32.unpack_from(mapped, 8)[0] == before:
                raise ValueError("the counter did not move on a commit")
        except (OSError, ValueError, sqlite3.Error) as exc:
            log.info("store change counter unavailable (%s); using PRAGMA data_version", exc)
            return None
        _COUNTERS[path] = (handle, mapped, os.fstat(handle.fileno()).st_ino)
        return mapped


def _probe_commit(path: Path) -> None:
    """One harmless commit, to see the counter move."""
    probe = sqlite3.connect(str(path), isolation_level=None)
    try:
        probe.execute("PRAGMA busy_timeout=30000")
        probe.execute("BEGIN IMMEDIATE")
        probe.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('counter_probe', abs(random()))"
        )
        probe.execute("COMMIT")
    finally:
        probe.close()
