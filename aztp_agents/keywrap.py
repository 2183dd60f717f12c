"""Secrets at rest: CA private keys are stored encrypted (AES-256-GCM) under a master key.

The master key lives outside the database: a ``master.key`` file beside an embedded store
(created 0600 on first use), or ``AZTP_MASTER_KEY`` (base64 of 32 bytes) for a server or a
shared PostgreSQL store. A copy of the database alone does not give away a CA key.
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

__all__ = ["MASTER_KEY_ENV", "KeyWrapper"]

MASTER_KEY_ENV = "AZTP_MASTER_KEY"
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
        value = os.environ.get(MASTER_KEY_ENV)
        if not value:
            return None
        try:
            return cls(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            raise StoreError(f"{MASTER_KEY_ENV} is not valid base64 of 32 bytes") from None

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
