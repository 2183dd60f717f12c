"""Persistence for the authority: one interface over SQLite (default) and PostgreSQL.

The store owns the engine, the schema and its migrations, write transactions that bump the
state *revision*, the cheap cross-process change check used before each decision, and the
audit log's append path (synchronous for operations, group-committed for decisions).
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, insert, select, update
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from .._util import epoch_iso, now_iso
from ..audit import BATCH_ACTION, GENESIS, QueuedRecord, canonical_json, encode_batch, entry_hash
from ..errors import StoreError
from . import schema

__all__ = ["SCHEMA_VERSION", "Store"]

log = logging.getLogger(__name__)

#: Version of the schema this code writes. Stores at an older version are migrated on open;
#: a store at a newer version is refused (it was written by a newer aztp-agents).
SCHEMA_VERSION = 1


def _migrate_1(conn: Connection) -> None:
    schema.metadata.create_all(conn)


MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _migrate_1}


class Store:
    """A database holding any number of organizations' state."""

    def __init__(self, url: str, *, path: Path | None = None) -> None:
        self.url = url
        self.path = path
        self.is_sqlite = url.startswith("sqlite")
        try:
            if self.is_sqlite:
                self.engine: Engine = create_engine(
                    url, connect_args={"check_same_thread": False, "timeout": 30}
                )
                self._install_sqlite_hooks()
            else:
                self.engine = create_engine(url, pool_pre_ping=True)
            self.migrate()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the store at {self.describe()}: {exc.__class__.__name__}: {exc.args[0] if exc.args else ''}") from None
        # Change checks use one plain sqlite3 connection per thread: PRAGMA data_version is
        # per connection, so no thread can consume another's "changed" and no lock is held
        # across a call that releases the GIL.
        self._local = threading.local()
        self._checkers: list[sqlite3.Connection] = []
        self._checkers_lock = threading.Lock()
        self._closed = False
        self._audit_writer = _AuditWriter(self)
        atexit.register(self.close)

    # --- opening ---------------------------------------------------------------------

    @classmethod
    def open_sqlite(cls, path: Path) -> Store:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        return cls(f"sqlite+pysqlite:///{path}", path=path)

    @classmethod
    def open_url(cls, url: str) -> Store:
        if url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url[len("postgres://") :]
        elif url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        return cls(url)

    def describe(self) -> str:
        return str(self.path) if self.path else self.url.split("@")[-1]

    def _install_sqlite_hooks(self) -> None:
        @event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # an acknowledged write survives a crash
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(self.engine, "begin")
        def _on_begin(conn: Connection) -> None:
            mode = "IMMEDIATE" if conn.get_execution_options().get("aztp_write") else "DEFERRED"
            conn.exec_driver_sql(f"BEGIN {mode}")

    def migrate(self) -> None:
        with self.engine.connect() as conn:
            conn.execution_options(aztp_write=True)
            with conn.begin():
                schema.meta.create(conn, checkfirst=True)
                row = conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")).first()
                current = int(row[0]) if row else 0
                if current > SCHEMA_VERSION:
                    raise StoreError(
                        f"the store at {self.describe()} has schema version {current}, newer than "
                        f"this aztp-agents understands ({SCHEMA_VERSION}); upgrade aztp-agents"
                    )
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    log.info("migrating store %s to schema version %d", self.describe(), version)
                    MIGRATIONS[version](conn)
                if current == 0:
                    conn.execute(insert(schema.meta).values(key="schema_version", value=SCHEMA_VERSION))
                    conn.execute(insert(schema.meta).values(key="revision", value=0))
                elif current < SCHEMA_VERSION:
                    conn.execute(update(schema.meta).where(schema.meta.c.key == "schema_version").values(value=SCHEMA_VERSION))

    # --- transactions ----------------------------------------------------------------

    @contextmanager
    def write(self, *, bump: bool = True) -> Iterator[Connection]:
        """One write transaction; ``bump`` increments the state revision inside it."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(aztp_write=True)
                with conn.begin():
                    yield conn
                    if bump:
                        conn.execute(
                            update(schema.meta)
                            .where(schema.meta.c.key == "revision")
                            .values(value=schema.meta.c.value + 1)
                        )
        except OperationalError as exc:
            raise StoreError(f"store write failed at {self.describe()}: {exc.orig}") from None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except OperationalError as exc:
            raise StoreError(f"store read failed at {self.describe()}: {exc.orig}") from None

    def revision(self, conn: Connection | None = None) -> int:
        stmt = select(schema.meta.c.value).where(schema.meta.c.key == "revision")
        if conn is not None:
            return int(conn.execute(stmt).scalar_one())
        checker = self._checker()
        if checker is not None:
            return int(checker.execute("SELECT value FROM meta WHERE key='revision'").fetchone()[0])
        with self.read() as c:
            return int(c.execute(stmt).scalar_one())

    def maybe_changed(self) -> bool:
        """Cheap check: could another connection or process have committed since last asked?

        SQLite: ``PRAGMA data_version`` (a few microseconds, no disk read). Other databases:
        always ``True`` (the caller then compares the revision).
        """
        checker = self._checker()
        if checker is None:
            return True
        version = checker.execute("PRAGMA data_version").fetchone()[0]
        if version != self._local.version:
            self._local.version = version
            return True
        return False

    def _checker(self) -> sqlite3.Connection | None:
        conn = getattr(self._local, "conn", None)
        if conn is None and self.is_sqlite and self.path is not None and not self._closed:
            conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._local.conn, self._local.version = conn, None
            with self._checkers_lock:
                self._checkers.append(conn)
        return conn

    # --- audit -----------------------------------------------------------------------

    def append_audit(self, conn: Connection, org_id: str, records: Sequence[Mapping[str, Any]]) -> int:
        """Append ``records`` (``action``, ``actor``, ``subject``, ``data``, optional ``ts`` as
        ISO text or epoch seconds) to the organization's chain inside the caller's write
        transaction. Returns the last sequence number."""
        head_stmt = select(schema.audit_heads.c.seq, schema.audit_heads.c.hash).where(
            schema.audit_heads.c.org_id == org_id
        )
        if not self.is_sqlite:
            head_stmt = head_stmt.with_for_update()
        head = conn.execute(head_stmt).first()
        seq, prev = (int(head[0]), str(head[1])) if head else (0, GENESIS)
        rows = []
        for rec in records:
            seq += 1
            ts = rec.get("ts")
            ts = now_iso() if ts is None else epoch_iso(ts) if isinstance(ts, float) else ts
            actor, action, subject = rec.get("actor"), rec["action"], rec.get("subject")
            data = rec.get("data_json") or canonical_json(rec.get("data") or {})
            digest = entry_hash(org_id, seq, ts, actor, action, subject, data, prev)
            rows.append((org_id, seq, ts, actor, action, subject, data, prev, digest))
            prev = digest
        if rows:
            ph = "?" if self.is_sqlite else "%s"
            conn.exec_driver_sql(
                "INSERT INTO audit (org_id, seq, ts, actor, action, subject, data, prev_hash, hash) "
                f"VALUES ({', '.join([ph] * 9)})",
                rows,
            )
            if head is None:
                conn.execute(insert(schema.audit_heads).values(org_id=org_id, seq=seq, hash=prev))
            else:
                conn.execute(
                    update(schema.audit_heads).where(schema.audit_heads.c.org_id == org_id).values(seq=seq, hash=prev)
                )
        return seq

    def submit_audit(self, org_id: str, record: QueuedRecord) -> None:
        """Queue a high-volume audit record ``(epoch_ts, action, actor, subject, data_json)``
        (tool-call decisions, verifications); a background writer group-commits queued records
        as one ``audit.batch`` chain entry per organization."""
        self._audit_writer.submit(org_id, record)

    def flush_audit(self, timeout: float = 10.0) -> None:
        """Wait until every queued audit record is committed."""
        self._audit_writer.flush(timeout)

    def close(self) -> None:
        try:
            self._audit_writer.close()
        finally:
            self._closed = True
            with self._checkers_lock:
                checkers, self._checkers = self._checkers, []
            for conn in checkers:
                conn.close()
            self.engine.dispose()
            atexit.unregister(self.close)


class _AuditWriter:
    """Background group commit of decision audit records (one transaction per batch).

    A record is queued in well under a microsecond on the decision path; the writer drains
    the queue and commits what it holds in one transaction. ``flush()`` returns once every
    record queued before it is committed. A record still queued when the process is killed
    is lost (at most one batch); a normal exit flushes.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: queue.SimpleQueue[tuple[str, QueuedRecord] | threading.Event | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False

    def submit(self, org_id: str, record: QueuedRecord) -> None:
        if self._thread is None:
            self._start()
        self._queue.put((org_id, record))

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="aztp-audit-writer", daemon=True)
                self._thread.start()

    #: How long the writer lets records gather after the first one arrives. Waking once per
    #: record would cost the decision path a thread switch each time.
    LINGER_S = 0.05

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            if isinstance(batch[0], tuple):
                self._wake.wait(self.LINGER_S)  # a flush() cuts the wait short
                self._wake.clear()
            while len(batch) < 5000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            records = [b for b in batch if isinstance(b, tuple)]
            if records:
                self._write(records)
            for b in batch:
                if isinstance(b, threading.Event):
                    b.set()
            if any(b is None for b in batch):
                return

    def _write(self, records: list[tuple[str, QueuedRecord]]) -> None:
        by_org: dict[str, list[QueuedRecord]] = {}
        for org_id, rec in records:
            by_org.setdefault(org_id, []).append(rec)
        payloads = {org_id: encode_batch(recs) for org_id, recs in by_org.items()}
        for attempt in range(5):
            try:
                with self._store.write(bump=False) as conn:
                    for org_id, payload in payloads.items():
                        self._store.append_audit(conn, org_id, [{"action": BATCH_ACTION, "data_json": payload}])
                return
            except Exception:  # store locked or gone: retry, then report loudly
                if attempt == 4:
                    log.exception("could not write %d audit records", len(records))

    def flush(self, timeout: float) -> None:
        if self._thread is None or self._closed:
            return
        done = threading.Event()
        self._queue.put(done)
        self._wake.set()
        if not done.wait(timeout):
            raise StoreError(f"audit records not committed within {timeout} s")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._wake.set()
            self._thread.join(timeout=10)
