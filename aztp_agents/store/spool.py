"""The audit writer's spool: decision batches on disk before they are committed.

The background audit writer (see :class:`~aztp_agents.store._AuditWriter`) gathers decision
records for one window, then commits them. While another process holds the SQLite write lock
that commit waits, and a process killed outright would lose everything it queued meanwhile.
So each window is first appended to a spool file of this process beside the store, with one
``write`` (no fsync: the page cache survives the process being killed; a power loss may take
what the OS had not written yet, as it may take the last ``synchronous=NORMAL`` commits).

* The file is ``<db>-audit-<pid>-<random>.spool``, created 0600, never through a symlink, and
  held with ``flock`` for its owner's life: a file whose lock can be taken has no owner left.
* A record is the big-endian lengths of ``org_id`` (2 bytes) and ``payload`` (4 bytes, the
  text from :func:`~aztp_agents.audit.encode_batch`), then both in UTF-8: no re-encoding on
  the writer thread. A record cut short by a kill is ignored: it was never acknowledged by a
  commit either.
* Exactly once: the transaction that commits a batch also sets ``meta`` key
  ``audit-spool:<pid>-<random>`` to the spool offset it covers; :func:`recover` replays only
  what lies after it, and records its own progress the same way before removing the file.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..audit import BATCH_ACTION

if TYPE_CHECKING:
    from . import Store

__all__ = ["KEY_PREFIX", "Spool", "read_spool", "recover"]

log = logging.getLogger(__name__)

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_LEN = struct.Struct(">HI")
#: Prefix of the ``meta`` keys holding each spool's committed offset.
KEY_PREFIX = "audit-spool:"


def _pattern(db: Path) -> str:
    return f"{db.name}-audit-*.spool"


def _key(db: Path, path: Path) -> str:
    """``audit-spool:<pid>-<random>`` for spool ``path`` of ``db`` (short: meta keys are)."""
    return KEY_PREFIX + path.name[len(db.name) + len("-audit-") : -len(".spool")]


def encode(payloads: Mapping[str, str]) -> bytes:
    out = bytearray()
    for org_id, payload in payloads.items():
        org, body = org_id.encode(), payload.encode()
        out += _LEN.pack(len(org), len(body)) + org + body
    return bytes(out)


def read_spool(data: bytes, offset: int = 0) -> Iterator[tuple[str, str]]:
    """The ``(org_id, payload)`` records of spool bytes ``data`` from ``offset`` on; a record
    cut short (its writer was killed mid-write) ends the file."""
    while offset + _LEN.size <= len(data):
        org_size, size = _LEN.unpack_from(data, offset)
        start = offset + _LEN.size
        end = start + org_size + size
        if end > len(data):
            return
        yield data[start : start + org_size].decode(), data[start + org_size : end].decode()
        offset = end


class Spool:
    """This process's spool file for one store (created on first use by the writer thread)."""

    def __init__(self, db: Path) -> None:
        self.path = db.with_name(f"{db.name}-audit-{os.getpid()}-{secrets.token_hex(6)}.spool")
        self.key = _key(db, self.path)
        fd = os.open(
            self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours until we exit
        except BaseException:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise
        self._fd: int | None = fd
        self._broken = False
        #: Bytes written so far (the offset after the last record).
        self.end = 0

    def append(self, payloads: Mapping[str, str]) -> int:
        """Append one window's batches; returns the offset after them."""
        if self._fd is None or self._broken:
            raise OSError(f"the audit spool {self.path} is not usable")
        data = encode(payloads)
        view = memoryview(data)
        try:
            while view:  # one write in practice; a short write continues where it stopped
                view = view[os.write(self._fd, view) :]
        except OSError:
            # Cut a partial record off, or later offsets would not match the file; if even
            # that fails, append no more (the file stays ours and locked: what it holds
            # before ``end`` is still what commits record).
            try:
                os.ftruncate(self._fd, self.end)
            except OSError:
                self._broken = True
            raise
        self.end += len(data)
        return self.end

    def remove(self) -> None:
        """Everything in it is committed: delete it (before unlocking it)."""
        self.path.unlink(missing_ok=True)
        self.close()

    def close(self) -> None:
        """Unlock it and leave it for :func:`recover` (something in it may be uncommitted)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def recover(store: Store) -> int:
    """Replay into the audit chain what dead processes spooled beside ``store`` but never
    committed; returns how many batches were replayed. A spool still locked by its owner is
    left alone; a spool that cannot be replayed now stays for the next opener."""
    db = store.path
    if db is None:
        return 0
    replayed = 0
    for path in sorted(db.parent.glob(_pattern(db))):
        try:
            replayed += _recover_one(store, db, path)
        except Exception as exc:
            log.error("could not recover audit records from %s (kept for later): %s", path, exc)
    _forget_stale_keys(store, db)
    if replayed:
        log.warning(
            "recovered %d audit batch(es) a killed process had not committed at %s",
            replayed,
            store.describe(),
        )
    return replayed


def _recover_one(store: Store, db: Path, path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except (FileNotFoundError, OSError):
        return 0  # removed meanwhile (its owner or another recoverer), or not a plain file
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # its owner is alive (or another process is recovering it)
        try:
            if os.stat(path, follow_symlinks=False).st_ino != os.fstat(fd).st_ino:
                return 0  # another recoverer finished and removed it while we waited
        except FileNotFoundError:
            return 0
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read()
        key = _key(db, path)
        count = 0
        with store.write(bump=False) as conn:
            row = conn.exec_driver_sql("SELECT value FROM meta WHERE key=?", (key,)).first()
            done = int(row[0]) if row else 0
            for org_id, payload in read_spool(data, done):
                store.append_audit(conn, org_id, [{"action": BATCH_ACTION, "data_json": payload}])
                count += 1
            conn.exec_driver_sql(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, len(data)),
            )
        # Committed with its offset: a kill before the unlink replays nothing twice.
        path.unlink(missing_ok=True)
        return count
    finally:
        os.close(fd)


def _forget_stale_keys(store: Store, db: Path) -> None:
    """Drop the offsets of spools that no longer exist (a spool exists before its key)."""
    try:
        with store.read() as conn:
            keys = [
                str(r[0])
                for r in conn.exec_driver_sql(
                    "SELECT key FROM meta WHERE key LIKE ?", (KEY_PREFIX + "%",)
                )
            ]
        stale = [
            k
            for k in keys
            if not (db.parent / f"{db.name}-audit-{k[len(KEY_PREFIX) :]}.spool").exists()
        ]
        if stale:
            with store.write(bump=False) as conn:
                for k in stale:
                    conn.exec_driver_sql("DELETE FROM meta WHERE key=?", (k,))
    except Exception as exc:  # only housekeeping: the keys are harmless
        log.debug("could not forget stale audit spool offsets: %s", exc)
