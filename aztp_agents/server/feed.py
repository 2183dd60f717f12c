"""Following the store: the change feed, the decision-state document, the API-key cache.

One background thread (:class:`StoreWatcher`) polls the store's state **revision** every few
milliseconds (bumped by every write that changes decision state, in this process or any other
sharing the store) and pushes it to change-feed subscribers. The API-key cache
(:class:`AuthCache`) follows the store's shared change counter instead (see there).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
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
    """Polls the store's revision in a daemon thread."""

    def __init__(self, store: Store, *, interval: float = 0.005) -> None:
        self.store = store
        self.interval = interval if store.is_sqlite else max(interval, 0.02)
        self.revision = -1
        self._last_poll = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        #: Per open change-feed stream: the last revision it was sent (for its lag).
        self._sent: dict[int, int] = {}

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._poll()  # a first value before anyone reads it
            self._thread = threading.Thread(
                target=self._run, name="aztp-store-watcher", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=2)
        self._thread = None

    @property
    def alive(self) -> bool:
        """Polled recently: its revision can be trusted."""
        return self._thread is not None and time.monotonic() - self._last_poll < 0.25

    # --- polling -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._poll()
            except Exception:  # store briefly unavailable: keep trying, say so once a second
                log.warning("store watcher: cannot read the store", exc_info=True)
                self._stop.wait(1.0)

    def _poll(self) -> None:
        rev = self.store.revision()
        self._last_poll = time.monotonic()
        if rev != self.revision:
            self.revision = rev
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
        follower = id(event)
        try:
            last = self._sent[follower] = await self.current_revision()
            yield _sse("revision", last)
            sent = time.monotonic()
            while True:
                timeout = max(0.0, HEARTBEAT - (time.monotonic() - sent))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout)
                event.clear()
                rev = await self.current_revision()
                if rev != last:
                    last = self._sent[follower] = rev
                    yield _sse("revision", rev)
                    sent = time.monotonic()
                elif time.monotonic() - sent >= HEARTBEAT:
                    yield _sse("heartbeat", rev)
                    sent = time.monotonic()
        finally:
            self._subscribers.discard(sub)
            self._sent.pop(follower, None)

    def followers(self) -> list[int]:
        """Each open change-feed stream's lag: revisions the store moved past the last one it
        was sent (0: current). A revision is sent when its stream is next scheduled."""
        revision = self.revision
        return [max(0, revision - sent) for sent in list(self._sent.values())]


def _sse(event: str, revision: int) -> bytes:
    return f'event: {event}\ndata: {{"revision": {revision}}}\n\n'.encode()


class AuthCache:
    """API key -> principal, valid only while the API-key table has not changed since.

    An entry is valid only while nothing was committed since it was checked (SQLite's shared
    change counter), so a revoked key is refused by the very next request; without the counter
    (PostgreSQL) nothing is cached. Unknown keys are never cached, so a key made after start works at
    once. Keys are held only as SHA-256 digests.
    """

    def __init__(
        self, authority: Authority, watcher: StoreWatcher, *, max_entries: int = 10_000
    ) -> None:
        self.authority = authority
        self.watcher = watcher
        self.max_entries = max_entries
        self._entries: dict[bytes, tuple[Principal, int]] = {}

    @staticmethod
    def _digest(api_key: str) -> bytes:
        return hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).digest()

    def _generation(self) -> int | None:
        """What a cached answer is valid for: the store's shared change counter (a SQLite
        file: any commit, here or in another process, moves it, so a revoked key is refused
        by the very next request). None (no caching) without one: on a database shared by
        replicas nothing in this process learns of another replica's revocation before the
        next request, so every request checks its key in the database (one indexed read)."""
        return self.authority.store.change_token()

    def cached(self, api_key: str) -> Principal | None:
        generation = self._generation()
        if generation is None:
            return None
        hit = self._entries.get(self._digest(api_key))
        if hit is None or hit[1] != generation:
            return None
        return hit[0]

    def authenticate(self, api_key: str) -> Principal:
        """Check the key against the store (blocking: call from a worker thread)."""
        generation = self._generation()  # read before the check: a later commit invalidates
        principal = self.authority.authenticate(api_key)
        if generation is not None:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[self._digest(api_key)] = (principal, generation)
        return principal


def state_document(snap: Snapshot, user_id: str | None = None) -> dict[str, Any]:
    """``GET /v1/state``: the organization's decision state as JSON, without the flows the
    user may not see (other users' private flows)."""

    def shown(flow_id: str) -> bool:
        return user_id is None or snap.flow_visible(flow_id, user_id)

    return {
        "revision": snap.revision,
        "organization": snap.organization,
        "identities": dict(snap.identities),
        "flows": {f: n for f, n in snap.flows.items() if shown(f)},
        "members": {f: sorted(m) for f, m in snap.members.items() if shown(f)},
        "flowRevoked": {f: sorted(m) for f, m in snap.flow_revoked.items() if shown(f)},
        "links": sorted([s, t] for s, t in snap.links),
        "flowLinks": {
            f: sorted([s, t] for s, t in pairs) for f, pairs in snap.flow_links.items() if shown(f)
        },
        "policies": {
            aztp: [s.model_dump(mode="json", by_alias=True, exclude_defaults=True) for s in stmts]
            for aztp, stmts in snap.policies.items()
        },
    }
