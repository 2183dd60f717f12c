"""Following the store: the change feed, the decision-state document, the API-key cache.

One background thread (:class:`StoreWatcher`) polls the store every few milliseconds:

* the state **revision** (bumped by every write that changes decision state, in this process
  or any other sharing the store) — pushed to change-feed subscribers;
* for SQLite, ``PRAGMA data_version`` on a connection of its own — it moves on *every* commit
  (including API-key creation and revocation, which do not bump the revision) and is what
  invalidates the API-key cache.

The watcher never calls ``store.maybe_changed()``: that check is stateful and belongs to the
authority's snapshot cache; a second caller would steal its change signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from ..authority import Authority, Principal
from ..decisions import Snapshot
from ..store import Store

__all__ = ["AuthCache", "StoreWatcher", "state_document"]

log = logging.getLogger(__name__)

#: The change feed sends a heartbeat at least this often (seconds).
HEARTBEAT = 1.0


class StoreWatcher:
    """Polls the store's revision (and SQLite's commit counter) in a daemon thread."""

    def __init__(self, store: Store, *, interval: float = 0.005) -> None:
        self.store = store
        self.interval = interval if store.is_sqlite else max(interval, 0.02)
        self.revision = -1
        #: Increments whenever any commit is seen (SQLite) — the API-key cache's generation.
        self.commits = 0
        self._last_poll = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._dv_conn: sqlite3.Connection | None = None
        self._data_version: int | None = None

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            if self.store.is_sqlite and self.store.path is not None and self._dv_conn is None:
                self._dv_conn = sqlite3.connect(str(self.store.path), check_same_thread=False, isolation_level=None)
            self._poll()  # a first value before anyone reads it
            self._thread = threading.Thread(target=self._run, name="aztp-store-watcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=2)
        self._thread = None
        if self._dv_conn is not None:
            with contextlib.suppress(Exception):
                self._dv_conn.close()
            self._dv_conn = None

    @property
    def alive(self) -> bool:
        """Polled recently: its revision and commit counter can be trusted."""
        return self._thread is not None and time.monotonic() - self._last_poll < 0.25

    @property
    def tracks_commits(self) -> bool:
        return self._dv_conn is not None and self.alive

    # --- polling -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._poll()
            except Exception:  # store briefly unavailable: keep trying, say so once a second
                log.warning("store watcher: cannot read the store", exc_info=True)
                self._stop.wait(1.0)

    def _poll(self) -> None:
        if self._dv_conn is not None:
            dv = self._dv_conn.execute("PRAGMA data_version").fetchone()[0]
            if dv != self._data_version:
                self._data_version = dv
                self.commits += 1
        rev = self.store.revision()
        self._last_poll = time.monotonic()
        if rev != self.revision:
            self.revision = rev
            if self._dv_conn is None:
                self.commits += 1
            self._notify()

    def _notify(self) -> None:
        for loop, event in list(self._subscribers):
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed; its subscriber is gone
                self._subscribers.discard((loop, event))

    # --- change feed ---------------------------------------------------------------

    async def current_revision(self) -> int:
        if self.alive:
            return self.revision
        import anyio.to_thread

        return int(await anyio.to_thread.run_sync(self.store.revision))

    async def events(self) -> AsyncIterator[bytes]:
        """Server-sent events: ``revision`` at once and on every change, ``heartbeat``
        (with the current revision) when nothing else was sent for :data:`HEARTBEAT` s."""
        self.start()
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        sub = (loop, event)
        self._subscribers.add(sub)
        try:
            last = await self.current_revision()
            yield _sse("revision", last)
            sent = time.monotonic()
            while True:
                timeout = max(0.0, HEARTBEAT - (time.monotonic() - sent))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout)
                event.clear()
                rev = await self.current_revision()
                if rev != last:
                    last = rev
                    yield _sse("revision", rev)
                    sent = time.monotonic()
                elif time.monotonic() - sent >= HEARTBEAT:
                    yield _sse("heartbeat", rev)
                    sent = time.monotonic()
        finally:
            self._subscribers.discard(sub)


def _sse(event: str, revision: int) -> bytes:
    return f'event: {event}\ndata: {{"revision": {revision}}}\n\n'.encode()


class AuthCache:
    """API key -> principal, valid only while no commit has happened since the lookup.

    Used only when the watcher tracks every commit (SQLite); a revoked key is refused within
    one poll interval (5 ms) of the revocation's commit. Unknown keys are never cached, so a
    key made after start works at once. Keys are held only as SHA-256 digests.
    """

    def __init__(self, authority: Authority, watcher: StoreWatcher, *, max_entries: int = 10_000) -> None:
        self.authority = authority
        self.watcher = watcher
        self.max_entries = max_entries
        self._entries: dict[bytes, tuple[Principal, int]] = {}

    @staticmethod
    def _digest(api_key: str) -> bytes:
        return hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).digest()

    def cached(self, api_key: str) -> Principal | None:
        if not self.watcher.tracks_commits:
            return None
        hit = self._entries.get(self._digest(api_key))
        if hit is None or hit[1] != self.watcher.commits:
            return None
        return hit[0]

    def authenticate(self, api_key: str) -> Principal:
        """Check the key against the store (blocking: call from a worker thread)."""
        generation = self.watcher.commits
        tracked = self.watcher.tracks_commits
        principal = self.authority.authenticate(api_key)
        if tracked:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[self._digest(api_key)] = (principal, generation)
        return principal


def state_document(snap: Snapshot) -> dict[str, Any]:
    """``GET /v1/state``: the organization's decision state as JSON."""
    return {
        "revision": snap.revision,
        "organization": snap.organization,
        "identities": dict(snap.identities),
        "flows": dict(snap.flows),
        "members": {f: sorted(m) for f, m in snap.members.items()},
        "flowRevoked": {f: sorted(m) for f, m in snap.flow_revoked.items()},
        "links": sorted([s, t] for s, t in snap.links),
        "policies": {
            aztp: [s.model_dump(mode="json", by_alias=True, exclude_defaults=True) for s in stmts]
            for aztp, stmts in snap.policies.items()
        },
    }
