"""Persistence for the authority: one interface over SQLite (default) and PostgreSQL.

The store owns the engine, the schema and its migrations, write transactions that bump the
state *revision*, and the audit log's append path (synchronous for operations,
group-committed for decisions). Change detection is :mod:`.changes`.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError, SQLAlchemyError

from .._util import epoch_iso, now_iso
from ..audit import BATCH_ACTION, GENESIS, QueuedRecord, canonical_json, encode_batch, entry_hash
from ..errors import StoreError
from ..keywrap import CHECK_CONTEXT, KeyWrapper
from ..private_files import private_folder
from . import change_log, migrations, schema
from .changes import StoreChanges
from .files import StoreFiles
from .migrations.legacy import LEGACY_HEAD
from .org_signals import OrgSignals, open_signals, signals_supported
from .spool import Spool, recover

__all__ = ["SCHEMA_VERSION", "Store"]

log = logging.getLogger(__name__)

#: ``Connection.info`` key of a write transaction's after-commit callbacks (:meth:`Store.after_commit`).
_AFTER_COMMIT = "aztp_after_commit"
_SIGNALED = "aztp_signaled"

#: The last hand-migrated schema version (``meta.schema_version``); later schema changes are
#: Alembic revisions (see :mod:`.migrations`, which owns the rule of who migrates what).
SCHEMA_VERSION = LEGACY_HEAD


class Store:
    """A database holding any number of organizations' state."""

    def __init__(self, url: str, *, path: Path | None = None) -> None:
        self.url = url
        self.path = path
        #: Seals CA private keys at rest (None: no master key configured for a non-file store).
        self.key_wrapper: KeyWrapper | None = (
            KeyWrapper.for_file(path.parent / "master.key")
            if path is not None
            else KeyWrapper.from_env()
        )
        self.is_sqlite = url.startswith("sqlite")
        #: The change log's retention (positions kept per organization; see
        #: :data:`.change_log.RETENTION`).
        self.change_log_keep = change_log.RETENTION
        if self.key_wrapper is None:
            raise StoreError(
                f"the store at {self.describe()} needs a master key to seal its CA keys: set "
                "AZTP_MASTER_KEY (base64 of 32 random bytes, e.g. from "
                "'python -c \"import base64,os;print(base64.b64encode(os.urandom(32)).decode())\"')"
                " or AZTP_MASTER_KEY_FILE, the same for every process on this database"
            )
        #: Per-organization change signals in shared memory (a SQLite file only; see
        #: :mod:`.org_signals`). Opened before the first connection: a process holding the
        #: database without them would make every writer wait for it (see :mod:`.files`).
        self.signals: OrgSignals | None = None
        if self.is_sqlite and path is not None and signals_supported():
            try:
                self.signals = open_signals(path)
            except OSError as exc:
                # Never go on without them: this process's writes would not move the signals
                # other processes trust, and they would keep deciding on a stale state.
                raise StoreError(
                    f"cannot open the store's change signals file {path}-orgs: "
                    f"{exc.strerror or exc}; it must be readable and writable by every "
                    "process that opens the store"
                ) from None
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
            raise StoreError(
                f"cannot open the store at {self.describe()}: {exc.__class__.__name__}: {exc.args[0] if exc.args else ''}"
            ) from None
        # Change checks use a pool of plain sqlite3 connections, one borrowed per check: PRAGMA
        # data_version is per connection ("did anyone else commit since *this* connection last
        # asked?"), so a connection that saw nothing new can tell any thread nothing was missed,
        # no thread consumes another's "changed", and no lock is held across a call that
        # releases the GIL. Threads come and go (frameworks' executors); connections stay.
        self._pool: queue.SimpleQueue[list[Any]] = queue.SimpleQueue()
        self._checkers: list[sqlite3.Connection] = []
        self._checkers_lock = threading.Lock()
        self._closed = False
        #: Per thread: the write transaction in progress (see :meth:`write`).
        self._in_write = threading.local()
        if self.is_sqlite and path is not None:
            slot = self._borrow()  # stays open (pooled): the WAL index lives as long as we do
            if slot is not None:
                self._pool.put(slot)
        #: The SQLite files as this process opened them (None: not a SQLite file). A process
        #: joining a store split by a deleted WAL index is refused here (see :mod:`.files`).
        self.files: StoreFiles | None = None
        if self.is_sqlite and path is not None:
            try:
                self.files = StoreFiles(
                    path, None if self.signals is None else self.signals.identity
                )
                self.files.check_shared_index()
            except BaseException:
                self._release_connections()
                if self.files is not None:
                    self.files.close()
                if self.signals is not None:
                    self.signals.close()
                raise
        #: Called by the audit writer after each of its commits with ``(change token,
        #: revision)`` (see :class:`~.changes.ChangeCursor`).
        self.audit_commit_listeners: list[Callable[[int, int], None]] = []
        #: Change detection, for every reader (see :mod:`.changes`).
        self.changes = StoreChanges(self)
        if self.files is not None:
            # Decisions a killed process spooled but never committed (see .spool).
            recover(self)
        self._audit_writer = _AuditWriter(self)
        atexit.register(self.close)

    # --- opening ---------------------------------------------------------------------

    @classmethod
    def open_sqlite(cls, path: Path) -> Store:
        path = Path(path)
        private_folder(path.parent)  # it holds the master key beside the database
        if not path.exists():
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        return cls(f"sqlite+pysqlite:///{path}", path=path)

    @classmethod
    def open_url(cls, url: str) -> Store:
        return cls(cls.normalize_url(url))

    @staticmethod
    def normalize_url(url: str) -> str:
        """``url`` with the driver we ship (psycopg 3) for the PostgreSQL forms people type."""
        if url.startswith("postgres://"):
            return "postgresql+psycopg://" + url[len("postgres://") :]
        if url.startswith("postgresql://"):
            return "postgresql+psycopg://" + url[len("postgresql://") :]
        return url

    def seal(self, secret: str, *, context: str) -> str:
        """``secret`` as it is stored: encrypted under the master key when there is one."""
        if self.key_wrapper is None:
            log.warning("no master key (set AZTP_MASTER_KEY): a CA key is stored unencrypted")
            return secret
        return self.key_wrapper.wrap(secret, context=context)

    def unseal(self, stored: str, *, context: str) -> str:
        if self.key_wrapper is None:
            if not stored.startswith("-----BEGIN"):
                raise StoreError(
                    "a stored CA key is encrypted but no master key is configured (AZTP_MASTER_KEY)"
                )
            return stored
        return self.key_wrapper.unwrap(stored, context=context)

    def describe(self) -> str:
        return str(self.path) if self.path else self.describe_url(self.url)

    @staticmethod
    def describe_url(url: str) -> str:
        """A database URL as it may be shown: host and database, never a password."""
        return url.split("@")[-1]

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
        """Check the schema at open, and bring a SQLite store to the head revision (a database
        URL is only checked: see :mod:`.migrations` for the rule). One transaction, after
        the master key is checked: a refused open writes nothing."""
        with self.engine.connect() as conn:
            conn.execution_options(aztp_write=True)
            with conn.begin():
                migrations.lock(conn)
                state = migrations.state_of(conn)
                migrations.refuse_unusable(
                    state, self.describe(), url=None if self.is_sqlite else self.url
                )
                self._check_master_key(conn)
                if not state.up_to_date:
                    log.info("migrating store %s from %s", self.describe(), state.describe())
                    migrations.upgrade(conn)
                self._seal_master_key_check(conn)

    def _check_master_key(self, conn: Connection) -> None:
        """Refuse a master key other than the one this store's check value was sealed with,
        before anything is written (the caller's transaction is rolled back)."""
        if self.key_wrapper is None or not inspect(conn).has_table("store_settings"):
            return  # no check value yet (sealed after the migration)
        check = conn.execute(
            select(schema.store_settings.c.value).where(
                schema.store_settings.c.key == "master_key_check"
            )
        ).scalar_one_or_none()
        if check is not None and not self.key_wrapper.matches(check):
            raise StoreError(
                f"the master key does not match the store at {self.describe()}: it was sealed "
                "with another key (check AZTP_MASTER_KEY / AZTP_MASTER_KEY_FILE, or the "
                "store's master.key); nothing was written"
            )

    def _seal_master_key_check(self, conn: Connection) -> None:
        if self.key_wrapper is None:
            return
        exists = conn.execute(
            select(schema.store_settings.c.key).where(
                schema.store_settings.c.key == "master_key_check"
            )
        ).first()
        if exists is None:
            conn.execute(
                insert(schema.store_settings).values(
                    key="master_key_check",
                    value=self.key_wrapper.wrap(CHECK_CONTEXT, context=CHECK_CONTEXT),
                )
            )

    # --- transactions ----------------------------------------------------------------

    @contextmanager
    def write(self, *, bump: bool = True) -> Iterator[Connection]:
        """One write transaction; ``bump`` increments the state revision inside it.

        Inside another write of this thread, it joins that one (one commit for several
        operations: enrolling a crew, say); its writes then commit or roll back with it, and
        :meth:`read` in this thread sees them.

        On a SQLite file, the write commits only when the files are still this process's and
        every process holding the store open shares its WAL index (checked while holding the
        write lock), and it fails if the WAL index was swapped during the commit: an
        acknowledged write is in the one log every enforcement point reads (see
        :mod:`.files`)."""
        joined: Connection | None = getattr(self._in_write, "conn", None)
        if joined is not None:
            self._in_write.bump = self._in_write.bump or bump
            callbacks: list[Callable[[], None]] = joined.info[_AFTER_COMMIT]
            kept = len(callbacks)
            try:
                with joined.begin_nested():  # a savepoint: this part rolls back on its own
                    yield joined
            except BaseException:
                del callbacks[kept:]  # what it would have applied never commits
                raise
            return
        files = self.files
        committed: list[Callable[[], None]] = []
        signaled: list[tuple[int, ...]] = []
        try:
            with self.engine.connect() as conn:
                conn.execution_options(aztp_write=True)
                conn.info[_AFTER_COMMIT] = committed
                conn.info[_SIGNALED] = signaled
                try:
                    with conn.begin():
                        if files is not None:
                            files.confirm()
                            files.check_shared_index()
                        self._in_write.conn, self._in_write.bump = conn, bump
                        try:
                            yield conn
                        finally:
                            self._in_write.conn = None
                        if self._in_write.bump:
                            conn.execute(
                                update(schema.meta)
                                .where(schema.meta.c.key == "revision")
                                .values(value=schema.meta.c.value + 1)
                            )
                finally:
                    conn.info.pop(_AFTER_COMMIT, None)
                    conn.info.pop(_SIGNALED, None)
                    self._end_signals(signaled)
        except OperationalError as exc:
            raise StoreError(f"store write failed at {self.describe()}: {exc.orig}") from None
        except DatabaseError as exc:
            if isinstance(exc, IntegrityError):
                raise  # a constraint: the caller's to answer (e.g. "already exists")
            raise StoreError(f"store write failed at {self.describe()}: {exc.orig}") from None
        if files is not None:
            try:
                files.confirm()
            except StoreError as exc:
                raise StoreError(
                    f"a write at {self.describe()} may not be seen by other processes: {exc}"
                ) from None
        for callback in committed:
            try:
                callback()
            except Exception:  # the write stands; a reader catches up from the log instead
                log.exception("an after-commit callback failed")

    def signal_change(self, conn: Connection, org_id: str, subjects: Iterable[str] = ()) -> None:
        """The write transaction ``conn`` (of :meth:`write`) changes the organization's
        decision state, about ``subjects`` (the identities and flows its records involve):
        mark its change signal as being written until the transaction ends, and the subjects
        as touched (see :mod:`.org_signals`). Call after the transaction's first write (it
        must hold the database's write lock)."""
        signals = self.signals
        if signals is None:
            return
        held: list[tuple[int, ...]] = conn.info[_SIGNALED]
        offset = signals.offset(org_id)
        if not any(offset in offsets for offsets in held):
            held.append(signals.begin([org_id]))
        signals.touch(org_id, subjects)  # after the signal is odd: see the module

    def _end_signals(self, signaled: list[tuple[int, ...]]) -> None:
        signals = self.signals
        while signals is not None and signaled:
            signals.end(signaled.pop())

    @staticmethod
    def after_commit(conn: Connection, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the write transaction ``conn`` (of :meth:`write`) committed;
        never if it rolls back."""
        conn.info[_AFTER_COMMIT].append(callback)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """One read transaction (inside a write of this thread: that write's, which sees its
        own uncommitted changes)."""
        joined: Connection | None = getattr(self._in_write, "conn", None)
        if joined is not None:
            yield joined
            return
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except OperationalError as exc:
            raise StoreError(f"store read failed at {self.describe()}: {exc.orig}") from None

    def revision(self, conn: Connection | None = None) -> int:
        """The state revision (in ``conn``'s transaction, or now). Without ``conn`` on a
        SQLite file: one raw statement on a pooled connection (~2 us; every enforcement
        point reads it after any commit), the SQLAlchemy statement built only otherwise."""
        if conn is not None:
            return int(conn.execute(_REVISION_STMT).scalar_one())
        rows = self.quick_rows("SELECT value FROM meta WHERE key='revision'")
        if rows is not None:
            return int(rows[0][0])
        with self.read() as c:
            return int(c.execute(_REVISION_STMT).scalar_one())

    def maybe_changed(self) -> bool:
        """Could another connection or process have committed since last asked? (see
        :meth:`StoreChanges.maybe_changed`)"""
        return self.changes.maybe_changed()

    def change_token(self) -> int | None:
        """See :meth:`StoreChanges.token`."""
        return self.changes.token()

    @property
    def change_token_reader(self) -> Callable[[], tuple[int]] | None:
        """See :attr:`StoreChanges.token_reader`."""
        return self.changes.token_reader

    def quick_rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]] | None:
        """Rows of one read-only statement on a pooled raw SQLite connection (one implicit
        read transaction); ``None`` where there is none (not a SQLite file, or closed): the
        caller reads through SQLAlchemy instead. For the few reads on the decision path."""
        slot = self._borrow()
        if slot is None:
            return None
        try:
            return slot[0].execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"store read failed at {self.describe()}: {exc}") from None
        finally:
            self._pool.put(slot)

    def _borrow(self) -> list[Any] | None:
        """A ``[connection, last data_version]`` slot from the pool (a new one if all are busy)."""
        if not self.is_sqlite or self.path is None or self._closed:
            return None
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            with self._checkers_lock:
                self._checkers.append(conn)
            return [conn, None]  # None: the first check of a new connection reports "changed"

    # --- audit -----------------------------------------------------------------------

    def append_audit(
        self, conn: Connection, org_id: str, records: Sequence[Mapping[str, Any]]
    ) -> int:
        """Append ``records`` (``action``, ``actor``, ``subject``, ``data``, optional ``ts`` as
        ISO text or epoch seconds) to the organization's chain inside the caller's write
        transaction. Returns the last sequence number."""
        if not self.is_sqlite:
            # One chain per organization across every connection and replica: appends to it
            # take turns on a transaction-scoped lock, taken before the head is read (a row
            # lock on the head would not cover a chain that has no head row yet). SQLite needs
            # none: its write transaction already holds the database's one write lock.
            conn.execute(
                text("SELECT pg_advisory_xact_lock(:ns, hashtext(:org))"),
                {"ns": _AUDIT_LOCK_NAMESPACE, "org": org_id},
            )
        head = conn.execute(
            select(schema.audit_heads.c.seq, schema.audit_heads.c.hash).where(
                schema.audit_heads.c.org_id == org_id
            )
        ).first()
        rows, seq, prev = _chain_rows(
            org_id, (int(head[0]), str(head[1])) if head else None, records
        )
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
                    update(schema.audit_heads)
                    .where(schema.audit_heads.c.org_id == org_id)
                    .values(seq=seq, hash=prev)
                )
        return seq

    def submit_audit(self, org_id: str, record: QueuedRecord) -> None:
        """Queue a high-volume audit record ``(epoch_ts, action, actor, subject, data_json)``
        (tool-call decisions, verifications); a background writer group-commits queued records
        as one ``audit.batch`` chain entry per organization."""
        self._audit_writer.submit(org_id, record)

    def audit_queue(self) -> Callable[[tuple[str, QueuedRecord]], None]:
        """``put((org_id, record))``: :meth:`submit_audit` without a Python frame, for hot
        paths (the writer thread is started now)."""
        return self._audit_writer.started_queue()

    def audit_writer_stats(self) -> AuditWriterStats:
        """Counters of the background audit writer (for benchmarks and monitoring)."""
        return self._audit_writer.stats

    def audit_backlog(self) -> int:
        """Audit records queued for the background writer, not yet taken by it (a gauge for
        monitoring: read without a lock)."""
        return self._audit_writer.backlog()

    def flush_audit(self, timeout: float = 10.0) -> None:
        """Wait until every queued audit record is committed."""
        self._audit_writer.flush(timeout)

    def close(self) -> None:
        try:
            self._audit_writer.close()
        finally:
            self._release_connections()
            self.changes.close()
            if self.files is not None:  # last: its descriptor may close only after SQLite's
                self.files.close()
            if self.signals is not None:
                self.signals.close()
            atexit.unregister(self.close)

    def _release_connections(self) -> None:
        self._closed = True
        with self._checkers_lock:
            checkers, self._checkers = self._checkers, []
        for conn in checkers:
            conn.close()
        self.engine.dispose()


def _chain_rows(
    org_id: str, head: tuple[int, str] | None, records: Sequence[Mapping[str, Any]]
) -> tuple[list[tuple[Any, ...]], int, str]:
    """The audit rows for ``records`` following the chain's ``head`` (seq, hash)."""
    seq, prev = head if head is not None else (0, GENESIS)
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
    return rows, seq, prev


_REVISION_STMT = select(schema.meta.c.value).where(schema.meta.c.key == "revision")
#: The first key of the per-organization audit append lock on PostgreSQL (the second is the
#: organization's hash); any constant that no other lock of ours uses.
_AUDIT_LOCK_NAMESPACE = 0x41554454  # "AUDT"

_INSERT_AUDIT = "INSERT INTO audit (org_id, seq, ts, actor, action, subject, data, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?)"


class _UnconfirmedCommit(Exception):
    """A batch committed, but the store's files changed meanwhile (not to be retried)."""


@dataclass(frozen=True)
class AuditWriterStats:
    """What the background audit writer has done so far: records and batches committed, and
    the CPU time its thread spent on them (encoding, hashing, SQLite)."""

    records: int = 0
    batches: int = 0
    cpu_seconds: float = 0.0

    def add(self, records: int, cpu_seconds: float) -> AuditWriterStats:
        return AuditWriterStats(
            self.records + records, self.batches + 1, self.cpu_seconds + cpu_seconds
        )


@dataclass
class _Window:
    """One window's batches (text per organization), and the spool offset after them (None:
    not spooled)."""

    payloads: dict[str, str]
    records: int
    spool_end: int | None = None


class _AuditWriter:
    """Background group commit of decision audit records (one transaction per batch).

    A record is queued in well under a microsecond on the decision path; the writer drains
    the queue, spools what it holds (see :mod:`.spool`) and commits it in one transaction; a
    window it cannot commit yet (another process holds the write lock) stays pending and is
    committed, in order, with a later one. ``flush()`` returns once every record queued before
    it is committed. A record still queued when the process is killed is lost (at most the
    window gathering); a normal exit flushes.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: queue.SimpleQueue[tuple[str, QueuedRecord] | threading.Event | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._wake = threading.Event()
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self.stats = AuditWriterStats()
        #: This process's spool file (see :mod:`.spool`), created with the first window.
        self._spool: Spool | None = None
        #: Offset keys of removed spools, dropped in the next commit.
        self._stale_keys: list[str] = []
        #: Commit attempts that failed in a row.
        self._failures = 0

    def backlog(self) -> int:
        return self._queue.qsize()

    def submit(self, org_id: str, record: QueuedRecord) -> None:
        if self._thread is None:
            self._start()
        self._queue.put((org_id, record))

    def started_queue(self) -> Callable[[tuple[str, QueuedRecord]], None]:
        if self._thread is None:
            self._start()
        return self._queue.put

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="aztp-audit-writer", daemon=True
                )
                self._thread.start()

    #: How long the writer lets records gather after the first one arrives: one commit per
    #: window, not per decision (a commit costs far more CPU than a decision). Each window is
    #: spooled to disk before its commit is tried (see :mod:`.spool`), so a process killed
    #: outright loses at most the window still gathering, even while the commit waits.
    LINGER_S = 0.2
    #: How long one commit attempt waits for another process's write lock: short, so the
    #: writer goes back to gathering and spooling; it retries every window.
    BUSY_MS = 50
    #: How long the last attempt at close waits (what it cannot commit stays spooled).
    CLOSE_BUSY_MS = 5000
    #: A fully committed spool larger than this is removed and a new one started.
    SPOOL_ROTATE_BYTES = 1 << 20

    def _run(self) -> None:
        pending: list[_Window] = []  # spooled, not yet committed, oldest first
        waiters: list[threading.Event] = []  # flushes waiting for pending to commit
        while True:
            try:
                first = self._queue.get(timeout=self.LINGER_S if pending else None)
            except queue.Empty:
                batch = []
            else:
                batch = [first]
                if isinstance(first, tuple):
                    self._wake.wait(self.LINGER_S)  # a flush() cuts the wait short
                    self._wake.clear()
            while len(batch) < 5000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = any(b is None for b in batch)
            waiters += [b for b in batch if isinstance(b, threading.Event)]
            records = [b for b in batch if isinstance(b, tuple)]
            started = time.thread_time()
            if records:
                pending.append(self._prepare(records))
            committed = self._commit(pending, final=stopping) if pending else 0
            if committed:
                self.stats = self.stats.add(committed, time.thread_time() - started)
            if not pending or stopping:
                for w in waiters:
                    w.set()
                waiters.clear()
            if stopping:
                self._finish(pending)
                return

    def _prepare(self, records: list[tuple[str, QueuedRecord]]) -> _Window:
        """Encode one window's records per organization and spool them."""
        by_org: dict[str, list[QueuedRecord]] = {}
        for org_id, rec in records:
            by_org.setdefault(org_id, []).append(rec)
        payloads = {org_id: encode_batch(recs) for org_id, recs in by_org.items()}
        window = _Window(payloads, len(records))
        if self._store.is_sqlite and self._store.path is not None:
            try:
                if self._spool is None:
                    self._spool = Spool(self._store.path)
                window.spool_end = self._spool.append(payloads)
            except OSError as exc:  # still committed as before; only the kill bound is lost
                log.error("could not spool %d audit records: %s", len(records), exc)
        return window

    def _commit(self, pending: list[_Window], *, final: bool) -> int:
        """Commit the pending windows in order, in one transaction; returns how many records
        were committed (0: all stay pending, to be retried)."""
        records = sum(w.records for w in pending)
        try:
            if self._store.is_sqlite and self._store.path is not None:
                self._write_sqlite(pending, final=final)
            else:
                with self._store.write(bump=False) as conn:
                    for w in pending:
                        for org_id, payload in w.payloads.items():
                            self._store.append_audit(
                                conn, org_id, [{"action": BATCH_ACTION, "data_json": payload}]
                            )
        except _UnconfirmedCommit as exc:  # committed, but maybe not where others read
            log.error("%d audit records may be lost: %s", records, exc)
        except StoreError as exc:  # the store's files cannot be confirmed: never write
            log.error("could not write %d audit records: %s", records, exc)
        except Exception as exc:  # locked (or gone): spooled; retried next window
            self._failures += 1
            if self._failures == 1 or self._failures % 100 == 0:
                log.warning(
                    "%d audit records wait for the store (%d attempts; they are spooled): %s",
                    records,
                    self._failures,
                    exc,
                )
            if not (self._store.is_sqlite and self._store.path is not None) and (
                self._failures >= 5
            ):  # nothing spooled off SQLite: give up as before, loudly
                log.error("could not write %d audit records: %s", records, exc)
                pending.clear()
                self._failures = 0
            return 0
        else:
            self._failures = 0
            pending.clear()
            self._maybe_rotate()
            return records
        # Not written here and not to be retried: left in the spool (its offset was not
        # advanced), so the next process to open the store after ours replays it.
        pending.clear()
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        return 0

    def _maybe_rotate(self) -> None:
        spool = self._spool
        if spool is not None and spool.end >= self.SPOOL_ROTATE_BYTES:
            spool.remove()  # all committed; its offset key is dropped with the next commit
            self._stale_keys.append(spool.key)
            self._spool = None

    def _finish(self, pending: list[_Window]) -> None:
        spool, self._spool = self._spool, None
        if spool is None:
            return
        if pending:  # left for the next process that opens the store
            log.error(
                "%d audit records could not be committed before exit; they stay in %s",
                sum(w.records for w in pending),
                spool.path,
            )
            spool.close()
            return
        spool.remove()
        if self._conn is not None:
            try:
                self._conn.execute("DELETE FROM meta WHERE key=?", (spool.key,))
            except Exception:  # only housekeeping: the next open drops stale keys
                log.debug("could not drop the audit spool offset", exc_info=True)

    def _write_sqlite(self, pending: Sequence[_Window], *, final: bool = False) -> None:
        """The pending windows in one transaction on the writer's own plain sqlite3
        connection, with the spool offset they reach (exactly once: see :mod:`.spool`).

        ``synchronous=NORMAL`` here (WAL): a committed batch survives the process being
        killed; only a power loss can take the last batches. State changes keep FULL."""
        if self._conn is None:
            self._conn = sqlite3.connect(
                str(self._store.path), isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA synchronous=NORMAL")
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout={self.CLOSE_BUSY_MS if final else self.BUSY_MS}")
        files = self._store.files
        conn.execute("BEGIN IMMEDIATE")
        try:
            if files is not None:
                # A process whose WAL index was orphaned must not write: its frames would
                # overwrite other processes' commits (see .files).
                files.confirm()
            for window in pending:
                for org_id, payload in window.payloads.items():
                    head = conn.execute(
                        "SELECT seq, hash FROM audit_heads WHERE org_id=?", (org_id,)
                    ).fetchone()
                    rows, seq, prev = _chain_rows(
                        org_id,
                        (int(head[0]), str(head[1])) if head else None,
                        [{"action": BATCH_ACTION, "data_json": payload}],
                    )
                    conn.executemany(_INSERT_AUDIT, rows)
                    conn.execute(
                        "INSERT INTO audit_heads (org_id, seq, hash) VALUES (?,?,?) "
                        "ON CONFLICT(org_id) DO UPDATE SET seq=excluded.seq, hash=excluded.hash",
                        (org_id, seq, prev),
                    )
            ends = [w.spool_end for w in pending if w.spool_end is not None]
            if ends and self._spool is not None:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (self._spool.key, max(ends)),
                )
            for key in self._stale_keys:
                conn.execute("DELETE FROM meta WHERE key=?", (key,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._stale_keys.clear()
        if files is not None:
            try:
                files.confirm()
            except StoreError as exc:
                raise _UnconfirmedCommit(str(exc)) from None
        if self._store.audit_commit_listeners:
            self._publish_commit(conn)

    def _publish_commit(self, conn: sqlite3.Connection) -> None:
        """Tell listeners the revision as of the change token right after our commit.

        The token is read first, the revision after (a read that sees that state or a later
        one). Revisions only grow, so if the revision read equals a listener's, the state at
        that token had that revision too; and if the token has moved on since, the listener
        sees a different token and checks for itself."""
        token = self._store.change_token()
        if token is None:
            return
        try:
            revision = int(
                conn.execute("SELECT value FROM meta WHERE key='revision'").fetchone()[0]
            )
        except Exception:  # nothing published: readers re-check on their own
            log.debug("could not read the revision after an audit commit", exc_info=True)
            return
        for listener in self._store.audit_commit_listeners:
            try:
                listener(token, revision)
            except Exception:
                log.exception("audit commit listener %r failed", listener)

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
        if self._conn is not None:
            self._conn.close()
            self._conn = None
