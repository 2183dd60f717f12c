"""The store's files: are they still the ones this process opened, and does every process
with the store open share one WAL index?

Why this exists. A SQLite store in WAL mode keeps two side files next to ``aztp.db``: the
write-ahead log (``-wal``) and the WAL index (``-shm``), a shared-memory file every process
maps to agree on which log frames are committed, where the next write goes and who is
reading. SQLite assumes nobody touches these files. If the ``-shm`` file is deleted while a
process has the store open, that process keeps using its (now unlinked) copy, and the next
process to open the store creates a new, empty index and rebuilds it from the log. From
then on the two processes live in different worlds: each appends frames where *its* index
says the log ends, so one overwrites the other's committed frames (an acknowledged
revocation is lost, or the database reads as malformed), and the change counter the
decision fast path watches (:mod:`.changes`) never moves for the other side's writes (a
revoked agent keeps being allowed). The same holds, worse, when the database file itself is
deleted, replaced, overwritten or made unreadable under a running process.

Nothing inside SQLite notices; this module does, with two checks:

* :meth:`StoreFiles.confirm` ("are my files still mine?"): the database file at the path is
  the inode this process opened, still readable and writable, with a SQLite header in WAL
  mode; and the ``-shm`` file at the path is the inode this process's SQLite maps. It costs
  a few system calls (no file is opened: closing any descriptor of the database would drop
  SQLite's POSIX locks). A file that was deleted, replaced or overwritten never comes back
  for this process: the failure is latched until the store is reopened. Unreadability
  (permissions) is re-checked every time and clears when it clears.
* :meth:`StoreFiles.check_shared_index` ("does everyone see my writes?"): every other
  process that holds the database open (a SQLite lock on the database file) also holds the
  ``-shm`` file this process uses. Read from ``/proc/locks`` (Linux); elsewhere only the
  first check runs.

Who runs them (see ``docs/security.md``, "A broken store"):

* every state write (:meth:`Store.write <aztp_agents.store.Store.write>`) runs both inside
  its transaction before committing, and :meth:`~StoreFiles.confirm` again after the commit
  (a swap during the commit makes the write fail: it may not be visible to everyone). So an
  acknowledged write is in the one log every live process reads, and every enforcement
  point on the store sees it; when that cannot be shown, the write fails.
* the audit writer runs :meth:`~StoreFiles.confirm` around each batch (a process whose index
  was orphaned must not write: its frames would overwrite other processes' commits);
* opening a store runs :meth:`~StoreFiles.check_shared_index` (a process joining a split
  store would write into one of the two worlds);
* the decision path re-confirms at least every :attr:`StoreFiles.CONFIRM_INTERVAL_S`
  (:class:`~.changes.ChangeCursor`): past that, the no-I/O path stops answering and the
  blocking path confirms first; a failed confirmation denies with ``authority_unavailable``.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import sys
import threading
import time
from pathlib import Path

from ..errors import StoreError
from .org_signals import PRESENCE_BYTE

try:
    import fcntl
except ImportError:  # not POSIX: only the identity checks run
    fcntl = None  # type: ignore[assignment]

__all__ = ["StoreFiles"]

log = logging.getLogger(__name__)

_SQLITE_MAGIC = b"SQLite format 3\x00"
#: SQLite's lock bytes on the database file (``os_unix.c``): a connection in WAL mode holds a
#: read lock on the SHARED range for as long as it is open.
_SHARED_FIRST = 0x40000000 + 2
_SHARED_SIZE = 510
#: The WAL index's "dead man switch" byte (``os_unix.c``, ``UNIX_SHM_DMS``): every process
#: that maps the ``-shm`` file holds a read lock on it while it does.
_SHM_DMS = 128

# One read-only descriptor per database file per process, shared by its open stores and closed
# with the last of them: closing any descriptor of a file drops every POSIX lock the process
# holds on it (SQLite's included), harmless only once no store here uses the file.
_HEADER_FDS: dict[tuple[int, int], list[int]] = {}  # identity -> [fd, users]
# The open stores of this process, per database file.
_OPEN: dict[tuple[int, int], set[StoreFiles]] = {}
_OPEN_LOCK = threading.Lock()


def _header_fd(path: Path, identity: tuple[int, int]) -> int:
    """A descriptor of the database file (one more user); the caller holds ``_OPEN_LOCK``."""
    entry = _HEADER_FDS.get(identity)
    if entry is None:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != identity:  # replaced between stat and open
            os.close(fd)  # not the file SQLite has open: no lock of ours on it
            raise StoreError(f"the store at {path} was replaced while it was being opened")
        entry = _HEADER_FDS[identity] = [fd, 0]
    entry[1] += 1
    return entry[0]


def _release_header_fd(identity: tuple[int, int]) -> None:
    entry = _HEADER_FDS.get(identity)
    if entry is not None:
        entry[1] -= 1
        if entry[1] <= 0:
            del _HEADER_FDS[identity]
            os.close(entry[0])


class StoreFiles:
    """The identity of one SQLite store's files, as this process opened them."""

    #: The bound on how long a decision may rely on an unconfirmed store: the decision path
    #: re-confirms the files when this long has passed since the last confirmation.
    CONFIRM_INTERVAL_S = 0.25
    #: How long :meth:`check_shared_index` lets a process that is just opening or closing
    #: the store (briefly holding the database lock without the index) settle.
    SETTLE_S = 0.5

    def __init__(self, path: Path, orgs_id: tuple[int, int] | None = None) -> None:
        self.path = path
        self.shm_path = Path(f"{path}-shm")
        #: The per-organization signals file this process maps (see :mod:`.org_signals`),
        #: confirmed like the WAL index; None: this process has none.
        self.orgs_path = Path(f"{path}-orgs")
        self.orgs_id = orgs_id
        st = os.stat(path)
        self.db_id = (st.st_dev, st.st_ino)
        try:
            shm = os.stat(self.shm_path)
        except FileNotFoundError:
            raise StoreError(
                f"the store at {path} has no WAL index (-shm) after opening; "
                "is it on a file system that supports shared memory?"
            ) from None
        self.shm_id = (shm.st_dev, shm.st_ino)
        #: A cause that never clears for this process (a file deleted, replaced, overwritten).
        self.broken: str | None = None
        self._reported: str | None = None
        self._lock = threading.Lock()
        self._closed = False
        # SQLite maps one WAL index per database file per process, for as long as any
        # connection to it is open: a store opened while another one of this process is still
        # open uses *that* store's index, whatever file is at the path now.
        with _OPEN_LOCK:
            for other in _OPEN.get(self.db_id, ()):
                if other.shm_id != self.shm_id:
                    raise StoreError(
                        f"the store at {path} is still open in this process on a WAL index "
                        "(-shm) that was deleted or replaced; restart this process"
                    )
            self._fd = _header_fd(path, self.db_id)
            _OPEN.setdefault(self.db_id, set()).add(self)

    def close(self) -> None:
        """This store no longer uses the files (call once its connections are closed)."""
        with _OPEN_LOCK:
            if self._closed:
                return
            self._closed = True
            users = _OPEN.get(self.db_id, set())
            users.discard(self)
            if not users:
                _OPEN.pop(self.db_id, None)
            _release_header_fd(self.db_id)

    # --- are my files still mine? ---------------------------------------------------------

    def confirm(self) -> None:
        """Raise :class:`StoreError` (with the cause) unless the files are still the ones this
        process opened and the database is readable, writable and looks like our database."""
        problem = self.broken or self._problem()
        if problem is None:
            if self._reported is not None:
                log.warning("store %s is usable again", self.path)
                self._reported = None
            return
        if problem != self._reported:  # log each new cause once, not once per decision
            self._reported = problem
            log.error("store %s cannot be confirmed: %s", self.path, problem)
        raise StoreError(f"the store at {self.path} cannot be confirmed: {problem}")

    def _problem(self) -> str | None:
        latched = self._latched_problem()
        if latched is not None:
            with self._lock:
                self.broken = self.broken or latched
            return self.broken
        try:
            # Never open() the database here (closing it would drop SQLite's locks).
            usable = os.access(self.path, os.R_OK | os.W_OK, effective_ids=_EFFECTIVE_IDS)
        except OSError as exc:
            return f"the database file cannot be examined ({exc.strerror})"
        if not usable:
            return "the database file is not readable and writable by this process"
        return None

    def _latched_problem(self) -> str | None:
        if self._closed:
            return "the store was closed"
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return "the database file was deleted"
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                return None  # the folder's permissions: reported as unreadable, not latched
            return f"the database file cannot be examined ({exc.strerror})"
        if (st.st_dev, st.st_ino) != self.db_id:
            return "the database file was replaced by another file"
        try:
            header = os.pread(self._fd, 100, 0)
        except OSError as exc:
            return f"the database file cannot be read ({exc.strerror})"
        if header[:16] != _SQLITE_MAGIC or header[18:20] != b"\x02\x02":
            return "the database file was overwritten (no SQLite WAL-mode header)"
        try:
            shm = os.stat(self.shm_path)
        except FileNotFoundError:
            return (
                "the WAL index (-shm) was deleted while the store was open "
                "(writes would be lost; restart this process)"
            )
        except OSError as exc:
            return f"the WAL index (-shm) cannot be examined ({exc.strerror})"
        if (shm.st_dev, shm.st_ino) != self.shm_id:
            return (
                "the WAL index (-shm) was replaced while the store was open "
                "(writes would be lost; restart this process)"
            )
        if self.orgs_id is not None:
            try:
                orgs = os.stat(self.orgs_path)
            except OSError:
                orgs = None
            if orgs is None or (orgs.st_dev, orgs.st_ino) != self.orgs_id:
                return (
                    "the change signals file (-orgs) was deleted or replaced while the store "
                    "was open (other processes' writes would go unseen; restart this process)"
                )
        return None

    # --- does everyone see my writes? -----------------------------------------------------

    def check_shared_index(self) -> None:
        """Raise :class:`StoreError` when another process holds the database open on a WAL
        index other than this process's: a write here would not be seen there, and writes
        there would overwrite it. A process seen only briefly (opening or closing the store)
        is given :attr:`SETTLE_S` to settle."""
        deadline = time.monotonic() + self.SETTLE_S
        while True:
            strays = self._processes_off_index()
            if not strays:
                return
            if time.monotonic() >= deadline:
                pids = ", ".join(str(p) for p in sorted(strays))
                raise StoreError(
                    f"the store at {self.path} is open in process(es) {pids} on a WAL index "
                    "(-shm) or change signals file (-orgs) that was deleted or replaced, or by "
                    "an older version without one: a write here would be lost or never seen "
                    "there. Stop those processes (their enforcement points deny every call "
                    "meanwhile), then retry"
                )
            time.sleep(0.02)

    def _processes_off_index(self) -> set[int]:
        """Processes (other than this one) holding the database's SHARED lock but not the
        ``-shm`` file's DMS lock; empty where ``/proc/locks`` cannot tell (not Linux, or this
        process's own lock on the database is not listed there)."""
        if not _others_hold(self._fd, _SHARED_FIRST, _SHARED_SIZE):
            return set()  # nobody else has the database open: nobody to miss our writes
        db_pids: set[int] = set()
        shm_pids: set[int] = set()
        try:
            with open("/proc/locks", encoding="ascii", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return set()
        db_key, shm_key = _lock_key(self.db_id), _lock_key(self.shm_id)
        orgs_key = None if self.orgs_id is None else _lock_key(self.orgs_id)
        orgs_pids: set[int] = set()
        for line in lines:
            parts = line.split()
            if len(parts) < 8 or parts[1] == "->" or parts[1] != "POSIX":
                continue
            where = parts[5]
            if where == db_key:
                if int(parts[6]) <= _SHARED_FIRST <= _lock_end(parts[7]):
                    db_pids.add(int(parts[4]))
            elif where == shm_key and int(parts[6]) <= _SHM_DMS <= _lock_end(parts[7]):
                shm_pids.add(int(parts[4]))
            elif where == orgs_key and int(parts[6]) <= PRESENCE_BYTE <= _lock_end(parts[7]):
                orgs_pids.add(int(parts[4]))
        me = os.getpid()
        if me not in db_pids:  # the listing does not describe our files: cannot tell
            return set()
        off = db_pids - shm_pids
        if orgs_key is not None:
            off |= db_pids - orgs_pids  # it would not see our writes' change signals
        return off - {me}


_EFFECTIVE_IDS = os.access in os.supports_effective_ids

# struct flock on Linux (short type, short whence, off_t start, off_t len, pid_t pid; native
# alignment), for F_GETLK: "does another process hold a lock on these bytes?"
_FLOCK = struct.Struct("@hhqqi4x")


def _others_hold(fd: int, start: int, length: int) -> bool:
    """Whether another process holds a lock on ``start .. start+length`` of ``fd``'s file (a
    question only: F_GETLK takes no lock). True where the question cannot be asked (then the
    caller looks closer)."""
    if fcntl is None or not sys.platform.startswith("linux"):
        return True
    try:
        answer = fcntl.fcntl(
            fd, fcntl.F_GETLK, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, start, length, 0)
        )
    except OSError:
        return True
    return _FLOCK.unpack(answer)[0] != fcntl.F_UNLCK


def _lock_key(identity: tuple[int, int]) -> str:
    """How ``/proc/locks`` names a file: ``MAJOR:MINOR:INODE`` (device numbers in hex)."""
    dev, ino = identity
    return f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"


def _lock_end(text: str) -> int:
    return 1 << 63 if text == "EOF" else int(text)
