"""Signed checkpoints of an organization's audit chain (pure: signing and checking).

The hash chain alone proves that the stored entries agree with each other; anyone who can
write to the database can still delete the last entries and move the head back, or edit an
entry and recompute every hash after it. A checkpoint anchors the chain *outside* the
database, as Certificate Transparency's signed tree heads do: it names the chain's head
(``seq`` and ``hash``) and is signed (Ed25519) with the organization's checkpoint key. Kept
in a file or another system, it later proves that the chain still holds, at ``seq``, the
very entry it held then: a truncated chain is too short, and a rewritten, recomputed or
forked history has another hash at ``seq`` (every hash covers all the entries before it).

The checkpoint key is derived from the master key (HKDF, one key per organization), so it is
never in the database: a copy of the database cannot sign a checkpoint, and an edit of the
database cannot replace the key that verifies one. The public key can be exported
(``aztp-agents audit checkpoint --public-key``) so that a verifier need not trust the
database or the host at all.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .audit import canonical_json

__all__ = [
    "CHECKPOINT_VERSION",
    "KEY_LABEL",
    "Checkpoint",
    "SignedCheckpoint",
    "check_checkpoint",
    "key_id",
    "load_public_key",
    "public_key_pem",
    "sign_checkpoint",
    "signing_key",
]

CHECKPOINT_VERSION = 1
#: The HKDF ``info`` of an organization's checkpoint key (versioned: a new derivation gets a
#: new label, and its checkpoints a new ``kid``).
KEY_LABEL = "aztp-agents audit checkpoint v1:"


class Checkpoint(BaseModel):
    """What is signed: one organization's chain head at one time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: int = CHECKPOINT_VERSION
    org_id: str
    org: str = ""
    seq: int = Field(ge=0)
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    ts: str
    kid: str


class SignedCheckpoint(BaseModel):
    """A checkpoint as exported: the signed body, its signature (base64url) and the signer's
    public key (PEM, informational: a verifier checks against a key it trusts)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    checkpoint: Checkpoint
    signature: str
    public_key: str

    def to_doc(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def signing_key(seed: bytes) -> Ed25519PrivateKey:
    """The checkpoint key of a 32-byte seed (derived from the master key by the caller)."""
    return Ed25519PrivateKey.from_private_bytes(seed)


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: Ed25519PublicKey) -> str:
    """A short, stable name of a checkpoint public key (SHA-256 of its raw bytes, 32 hex)."""
    return hashlib.sha256(_raw(public)).hexdigest()[:32]


def public_key_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_key(pem: str) -> Ed25519PublicKey:
    """A checkpoint public key from PEM; ``ValueError`` if it is not an Ed25519 public key."""
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def _signed_bytes(body: Checkpoint) -> bytes:
    return canonical_json(body.model_dump(mode="json")).encode()


def sign_checkpoint(
    key: Ed25519PrivateKey, *, org_id: str, org: str, seq: int, head: str, ts: str
) -> SignedCheckpoint:
    public = key.public_key()
    body = Checkpoint(org_id=org_id, org=org, seq=seq, hash=head, ts=ts, kid=key_id(public))
    signature = base64.urlsafe_b64encode(key.sign(_signed_bytes(body))).decode().rstrip("=")
    return SignedCheckpoint(checkpoint=body, signature=signature, public_key=public_key_pem(public))


def check_checkpoint(
    doc: Mapping[str, Any] | str,
    trusted: Ed25519PublicKey,
    *,
    org_id: str,
    hashes: Sequence[str],
) -> tuple[Checkpoint | None, str | None]:
    """Check a checkpoint against a key the verifier trusts and an intact chain.

    ``hashes`` are the chain's entry hashes in order (``hashes[n - 1]`` is entry ``n``), read
    from a chain that :func:`~aztp_agents.audit.verify_chain` found intact. Returns the
    checkpoint (None if it cannot be read) and the problem (None: the chain still holds the
    checkpointed history). The public key inside the document is never trusted."""
    try:
        signed = SignedCheckpoint.model_validate(json.loads(doc) if isinstance(doc, str) else doc)
    except (ValidationError, ValueError, TypeError) as exc:
        return (
            None,
            f"the checkpoint cannot be read ({type(exc).__name__}): it is not a checkpoint file",
        )
    body = signed.checkpoint
    if body.kid != key_id(trusted):
        return body, (
            f"the checkpoint was signed by another key (kid {body.kid}, expected "
            f"{key_id(trusted)}): forged, or of another store"
        )
    try:
        sig = base64.urlsafe_b64decode(signed.signature + "=" * (-len(signed.signature) % 4))
        trusted.verify(sig, _signed_bytes(body))
    except (InvalidSignature, ValueError):
        return (
            body,
            "the checkpoint's signature does not verify: the checkpoint was edited or forged",
        )
    if body.v != CHECKPOINT_VERSION:
        return (
            body,
            f"checkpoint version {body.v} is not understood (expected {CHECKPOINT_VERSION})",
        )
    if body.org_id != org_id:
        return body, f"the checkpoint is of organization {body.org_id}, not {org_id}"
    if len(hashes) < body.seq:
        return body, (
            f"the chain ends at entry {len(hashes)} but the checkpoint of {body.ts} records "
            f"entry {body.seq} (entries dropped from the end)"
        )
    at = hashes[body.seq - 1] if body.seq else "0" * 64
    if at != body.hash:
        return body, (
            f"entry {body.seq} is not the one checkpointed at {body.ts}: the history up to "
            "it was rewritten (edited and recomputed, or replaced)"
        )
    return body, None
