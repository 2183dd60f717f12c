"""Files that hold secrets (private keys, the master key) and the folders that hold them.

One owner for how they are written, because the mistakes are easy and silent: a file created
with the default mode is world-readable for an instant before a ``chmod``; ``open(path, "w")``
follows a symlink an attacker planted at ``path`` and writes the key wherever it points; an
existing folder keeps whatever mode it had.

* :func:`write_file` writes to a fresh temporary file beside ``path`` (``O_CREAT | O_EXCL |
  O_NOFOLLOW``: never an existing file, never through a symlink), with its final mode from
  creation on, fsyncs it and renames it over ``path``. A rename replaces a symlink at ``path``
  itself; it never writes to the symlink's target.
* :func:`private_folder` makes a folder 0700, and tightens an existing one this user owns.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

__all__ = ["private_folder", "write_file"]

log = logging.getLogger(__name__)

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def write_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically; the file has ``mode`` from its creation on and
    nothing is ever written through a symlink (one at ``path`` is replaced, not followed)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)  # the umask may have narrowed a public file's mode
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def private_folder(path: Path) -> Path:
    """Make ``path`` (and missing parents) a folder only its owner can enter: created 0700; an
    existing folder this user owns is tightened to 0700. A folder owned by someone else, or a
    shared sticky folder such as ``/tmp``, is left alone with a warning (changing it is not
    ours to do; the files in it are still created 0600)."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if stat.S_IMODE(info.st_mode) & 0o077:
        if info.st_uid == os.geteuid() and not info.st_mode & stat.S_ISVTX:
            os.chmod(path, 0o700)
            log.info("tightened %s to mode 0700 (it holds private keys)", path)
        else:
            log.warning(
                "%s is readable by others (mode %o) and not ours to change: keep private keys "
                "in a folder only you can enter",
                path,
                stat.S_IMODE(info.st_mode),
            )
    return path
