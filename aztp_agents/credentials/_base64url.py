"""Unpadded base64url (RFC 7515 section 2), the encoding of JWS segments and JWK coordinates."""

from __future__ import annotations

import base64
import binascii
import re

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def encode(data: bytes) -> str:
    """``data`` as base64url without ``=`` padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode(segment: str) -> bytes:
    """Strict base64url without padding; raise ``ValueError`` on anything else.

    Strict because a lenient decoder would accept several spellings of one token.
    """
    if _ALPHABET.fullmatch(segment) is None or len(segment) % 4 == 1:
        raise ValueError("invalid base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except binascii.Error as exc:
        raise ValueError("invalid base64url") from exc


def encode_coordinate(n: int) -> str:
    """A P-256 curve coordinate as a JWK ``x``/``y`` value (32 big-endian bytes)."""
    return encode(n.to_bytes(32, "big"))
