"""Secrets at rest: CA private keys are stored encrypted (AES-256-GCM) under a master key.

The master key lives outside the database: a ``master.key`` file beside an embedded store
(created 0600 on first use), or, for a server or a shared PostgreSQL store,
``AZTP_MASTER_KEY`` (base64 of 32 bytes) or a file named by ``AZTP_MASTER_KEY_FILE`` (0600,
not a symlink). A copy of the database alone does not give away a CA key.

Each store keeps a *check value* sealed under its master key (:data:`CHECK_CONTEXT`): a
process given another key is refused when it opens the store, before it writes anything.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import StoreError

__all__ = ["CHECK_CONTEXT", "MASTER_KEY_ENV", "MASTER_KEY_FILE_ENV", "KeyWrapper"]

MASTER_KEY_ENV = "AZTP_MASTER_KEY"
MASTER_KEY_FILE_ENV = "AZTP_MASTER_KEY_FILE"
#: The context of the store's sealed check value (see the module's note).
CHECK_CONTEXT = "aztp-master-key-check"
_PREFIX = "aesgcm:v1:"


class KeyWrapper:
    """Encrypts and decrypts secrets bound to a context string (e.g. the trust domain)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise StoreError(
                "the master key must be 32 bytes (base64 of 32 random bytes in AZTP_MASTER_KEY)"
            )
        self._aead = AESGCM(key)
        self._key = key

    @classmethod
    def from_env(cls) -> KeyWrapper | None:
        """``AZTP_MASTER_KEY``, else the file ``AZTP_MASTER_KEY_FILE`` names, else None."""
        value = os.environ.get(MASTER_KEY_ENV)
        if not value:
            file = os.environ.get(MASTER_KEY_FILE_ENV)
            return cls.from_key_file(Path(file)) if file else None
        try:
            return cls(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            raise StoreError(f"{MASTER_KEY_ENV} is not valid base64 of 32 bytes") from None

    @classmethod
    def from_key_file(cls, path: Path) -> KeyWrapper:
        """The key in an operator's file: read without following a symlink, and refused when
        anyone but its owner may read it (``chmod 600``)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise StoreError(
                f"cannot read the master key file {path}: {exc.strerror or type(exc).__name__}"
                + (" (it must not be a symlink)" if os.path.islink(path) else "")
            ) from None
        try:
            if os.fstat(fd).st_mode & 0o077:
                raise StoreError(
                    f"the master key file {path} may be read by others: chmod 600 {path}"
                )
            raw = os.read(fd, 4096)
        finally:
            os.close(fd)
        try:
            return cls(base64.b64decode(raw.strip(), validate=True))
        except (binascii.Error, ValueError):
            raise StoreError(f"the master key file {path} is not base64 of 32 bytes") from None

    @classmethod
    def for_file(cls, path: Path) -> KeyWrapper:
        """The key in ``path``, made (0600, atomically, race-free across processes) if missing."""
        env = cls.from_env()
        if env is not None:
            return env
        if not path.exists():
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            try:
                os.write(fd, base64.b64encode(secrets.token_bytes(32)) + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)  # fails if another process made it first: then use theirs
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        try:
            return cls(base64.b64decode(path.read_bytes().strip(), validate=True))
        except (binascii.Error, ValueError, OSError) as exc:
            raise StoreError(f"cannot read the master key {path}: {type(exc).__name__}") from None

    def derive(self, label: str) -> bytes:
        """32 bytes derived from the master key for ``label`` (HKDF-SHA256): a key that is
        never stored, so nothing in the database can replace it (the audit checkpoint key)."""
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label.encode()).derive(
            self._key
        )

    def matches(self, check: str) -> bool:
        """Whether ``check`` (the store's sealed check value) was sealed with this key."""
        try:
            return self.unwrap(check, context=CHECK_CONTEXT) == CHECK_CONTEXT
        except (StoreError, ValueError, binascii.Error):
            return False

    def wrap(self, secret: str, *, context: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, secret.encode(), context.encode())
        return _PREFIX + base64.b64encode(nonce + sealed).decode()

    def unwrap(self, stored: str, *, context: str) -> str:
        if not stored.startswith(_PREFIX):
            return stored  # written before encryption at rest (plain PEM)
        raw = base64.b64decode(stored[len(_PREFIX) :])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except InvalidTag:
            raise StoreError(
                "a stored CA key cannot be decrypted: the master key is not the one it was "
                f"sealed with (check {MASTER_KEY_ENV} or the store's master.key)"
            ) from None
