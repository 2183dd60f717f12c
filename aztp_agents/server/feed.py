"""Following the store: the change feed's wake-ups and streams, the API-key cache.

One background thread (:class:`StoreWatcher`) polls the store's state **revision** every few
milliseconds (bumped by every write that changes decision state, in this process or any other
sharing the store) and wakes the change-feed streams, which then read their organization's
change log (:mod:`.change_feed`: what each stream sends). The API-key cache
(:class:`AuthCache`) follows the store's shared change counter instead (see there).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import threading
import time
from collections.abc import AsyncIterator

from ..authority import Authority, Principal
from ..store import Store, change_log
from .change_feed import FeedCursor, sse

__all__ = ["AuthCache", "StoreWatcher"]

log = logging.getLogger(__name__)

#: The change feed sends a heartbeat at least this often (seconds).
HEARTBEAT = 1.0
#: PostgreSQL, while the watcher LISTENs: it still polls this often (seconds), the safety
#: net for a missed notification (``AZTP_FEED_SAFETY_POLL`` overrides it).
SAFETY_POLL = 1.0


class StoreWatcher:
    """Polls the store's revision in a daemon thread; on PostgreSQL it also LISTENs for the
    change log's notifications (:data:`~aztp_agents.store.change_log.CHANNEL`) on a
    dedicated connection and wakes the streams at once, polling only every
    :data:`SAFETY_POLL` s while it listens (a missed notification costs that much latency,
    never a missed change: the streams read the log). The listener reconnects by itself when
    the database restarts; while it is down the watcher polls at ``interval``."""

    def __init__(self, store: Store, *, interval: float = 0.005) -> None:
        self.store = store
        self.interval = interval if store.is_sqlite else max(interval, 0.02)
        self.safety_interval = float(os.environ.get("AZTP_FEED_SAFETY_POLL", SAFETY_POLL))
        self.revision = -1
        self._last_poll = 0.0
        #: The listener's connection is up (PostgreSQL): a change wakes the watcher at once.
        self.listening = False
        #: Notifications received (for tests and metrics).
        self.notifications = 0
        self._listener: threading.Thread | None = None
        self._poll_lock = threading.Lock()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        #: Per open change-feed stream (numbered from 1 in the order they opened): the last
        #: revision it was sent (for its lag).
        self._sent: dict[int, int] = {}
        self._streams = itertools.count(1)

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
            if not self.store.is_sqlite and self.store.url.startswith("postgresql"):
                self._listener = threading.Thread(
                    target=self._listen, name="aztp-store-listener", daemon=True
                )
                self._listener.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in (self._thread, self._listener):
            if thread is not None:
                thread.join(timeout=2)
        self._thread = self._listener = None

    @property
    def alive(self) -> bool:
        """Polled recently, or listening: its revision can be trusted."""
        if self._thread is None:
            return False
        return self.listening or time.monotonic() - self._last_poll < 0.25

    # --- polling -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            # the slow safety-net poll while listening; woken when the listener drops
            self._wake.wait(self.safety_interval if self.listening else self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._poll()
            except Exception:  # store briefly unavailable: keep trying, say so once a second
                log.warning("store watcher: cannot read the store", exc_info=True)
                self._stop.wait(1.0)

    def _poll(self) -> None:
        with self._poll_lock:  # the poller and the listener: the revision never goes back
            rev = self.store.revision()
            self._last_poll = time.monotonic()
            if rev != self.revision:
                self.revision = rev
                self._notify()

    def _listen(self) -> None:
        """LISTEN on a dedicated connection (PostgreSQL); reconnect with backoff."""
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(self.store.url).set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        delay = 0.1
        while not self._stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {change_log.CHANNEL}")
                    self.listening = True
                    delay = 0.1
                    self._poll()  # what was committed while nobody listened
                    checked = time.monotonic()
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.25, stop_after=1):
                            self.notifications += 1
                            self._poll()
                        if time.monotonic() - checked > 5.0:  # a silent, dead connection
                            conn.execute("SELECT 1")
                            checked = time.monotonic()
            except Exception as exc:
                if self._stop.is_set():
                    break
                log.warning("store watcher: listener reconnecting (%s)", type(exc).__name__)
            finally:
                if self.listening:
                    self.listening = False
                    self._wake.set()  # poll at the fast interval until it listens again
            self._stop.wait(delay)
            delay = min(delay * 2, 2.0)

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

    async def events(
        self,
        cursor: FeedCursor,
        after: int | None,
        mark: str | None = None,
        *,
        once: bool = False,
    ) -> AsyncIterator[bytes]:
        """Server-sent events for one follower (the protocol: :mod:`.change_feed`): a reset
        or the records after ``after`` (where the follower saw the entry ``mark``) at once,
        then the records of every write to its organization, a ``revision`` event whenever the store's revision moves, and a
        ``heartbeat`` when nothing else was sent for :data:`HEARTBEAT` s. ``once``: only what
        there is now (a follower's catch-up), then end."""
        import anyio.to_thread

        self.start()
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        sub = (loop, event)
        self._subscribers.add(sub)
        follower = next(self._streams)
        try:
            first = await anyio.to_thread.run_sync(cursor.open, after, mark)
            first += await anyio.to_thread.run_sync(cursor.poll)
            self._sent[follower] = cursor.revision
            for item in first:
                yield sse(item)
            if once:
                return
            sent = time.monotonic()
            while True:
                timeout = max(0.0, HEARTBEAT - (time.monotonic() - sent))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout)
                event.clear()
                rev = await self.current_revision()
                if rev != cursor.revision:
                    items = await anyio.to_thread.run_sync(cursor.poll)
                    self._sent[follower] = cursor.revision
                    for item in items:
                        yield sse(item)
                    if items:
                        sent = time.monotonic()
                if time.monotonic() - sent >= HEARTBEAT:
                    yield sse(cursor.tick("heartbeat"))
                    sent = time.monotonic()
        finally:
            self._subscribers.discard(sub)
            self._sent.pop(follower, None)

    def followers(self) -> dict[int, int]:
        """Each open change-feed stream's lag, by stream number: revisions the store moved
        past the last one it was sent (0: current). A revision is sent when its stream is
        next scheduled."""
        revision = self.revision
        return {n: max(0, revision - sent) for n, sent in list(self._sent.items())}


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
