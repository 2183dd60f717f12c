"""JWT-SVIDs: minting (compact ES256 JWS) and validation against a trust bundle.

Minting uses PyJWT. Validation decodes the compact form itself (strict base64url, header
checked before anything else) and verifies the ES256 signature with ``cryptography`` directly:
that keeps validation close to the cost of a single ECDSA verify (``bench/credentials.py``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from aztp_agents.errors import CredentialError, InvalidIdError, SvidValidationError
from aztp_agents.ids import SpiffeId, parse_spiffe_id

from . import _base64url
from ._time import as_utc
from .bundle import TrustBundle, select_bundle

__all__ = ["MAX_JWT_LENGTH", "JwtSvid", "encode_jwt_svid", "validate_jwt_svid"]

#: Tokens longer than this are rejected before any parsing.
MAX_JWT_LENGTH = 16 * 1024

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_HEADER_FIELDS = frozenset({"alg", "kid", "typ"})
_TYPES = frozenset({"JWT", "JOSE"})
_MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z


@dataclass(frozen=True)
class JwtSvid:
    """A validated JWT-SVID."""

    spiffe_id: str
    audience: list[str]
    expiry: dt.datetime
    issued_at: dt.datetime | None
    token: str


# --- minting -----------------------------------------------------------------------------


def encode_jwt_svid(
    spiffe_id: SpiffeId,
    audience: str | list[str],
    *,
    key: ec.EllipticCurvePrivateKey,
    kid: str,
    ttl: int,
) -> str:
    """A compact ES256 JWS: header ``alg, kid, typ``; claims ``sub, aud, exp, iat``.

    The caller (the CA) has checked that it may sign for ``spiffe_id``.
    """
    auds = [audience] if isinstance(audience, str) else list(audience)
    if not auds or not all(isinstance(a, str) and a for a in auds):
        raise CredentialError("audience must be a non-empty string or list of strings")
    if ttl <= 0:
        raise CredentialError("ttl must be positive")
    iat = int(time.time())
    token = jwt.encode(
        {"sub": str(spiffe_id), "aud": auds, "exp": iat + ttl, "iat": iat},
        key,
        algorithm="ES256",
        headers={"kid": kid, "typ": "JWT"},
    )
    # PyJWT decides the header; make sure it is exactly the SPIFFE one.
    header = jwt.get_unverified_header(token)
    if header != {"alg": "ES256", "kid": kid, "typ": "JWT"}:
        raise CredentialError(f"unexpected JWT header produced: {sorted(header)}")
    return token


# --- validation --------------------------------------------------------------------------


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _json_segment(segment: str) -> object:
    """Decode one base64url JSON segment (``NaN``/``Infinity`` are not JSON: rejected)."""
    return json.loads(_base64url.decode(segment), parse_constant=_reject_constant)


def _is_time(v: object) -> bool:
    """A NumericDate we can represent: a finite, non-negative number up to year 9999."""
    return (
        isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
        and 0 <= v <= _MAX_TIME
    )


def _header_kid(h64: str) -> str:
    """Check the header (exactly ``alg=ES256``, ``kid``, optional ``typ``); return the kid."""
    try:
        header = _json_segment(h64)
    except ValueError as exc:  # includes JSONDecodeError and UnicodeDecodeError
        raise SvidValidationError("token header is not base64url JSON", reason="malformed") from exc
    if not isinstance(header, dict):
        raise SvidValidationError("token header is not a JSON object", reason="bad_header")
    alg = header.get("alg")
    if alg != "ES256":
        raise SvidValidationError(
            f"algorithm {alg!r} is not allowed (ES256 only)", reason="bad_alg"
        )
    if not header.keys() <= _HEADER_FIELDS:
        raise SvidValidationError(
            f"unexpected header fields {sorted(header.keys() - _HEADER_FIELDS)}",
            reason="bad_header",
        )
    typ = header.get("typ")
    if typ is not None and typ not in _TYPES:
        raise SvidValidationError(f"typ {typ!r} is not JWT or JOSE", reason="bad_header")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise SvidValidationError("token header has no kid", reason="bad_header")
    return kid


def _unverified_claims(p64: str) -> tuple[dict[str, Any], SpiffeId]:
    """The claims and their subject, read before the signature only to choose the bundle."""
    try:
        claims = _json_segment(p64)
    except ValueError as exc:
        raise SvidValidationError(
            "token payload is not base64url JSON", reason="malformed"
        ) from exc
    if not isinstance(claims, dict):
        raise SvidValidationError("token payload is not a JSON object", reason="malformed")
    try:
        subject = parse_spiffe_id(claims.get("sub"))  # type: ignore[arg-type]
    except InvalidIdError as exc:
        raise SvidValidationError("sub is missing or not a SPIFFE ID", reason="malformed") from exc
    if not subject.path:
        raise SvidValidationError("sub must be a SPIFFE ID with a path", reason="malformed")
    return claims, subject


def _verify_signature(key: ec.EllipticCurvePublicKey, h64: str, p64: str, s64: str) -> None:
    try:
        raw_sig = _base64url.decode(s64)
    except ValueError as exc:
        raise SvidValidationError("token signature is not base64url", reason="malformed") from exc
    if len(raw_sig) != 64:
        raise SvidValidationError("ES256 signature must be 64 bytes", reason="bad_signature")
    der_sig = utils.encode_dss_signature(
        int.from_bytes(raw_sig[:32], "big"), int.from_bytes(raw_sig[32:], "big")
    )
    try:
        key.verify(der_sig, f"{h64}.{p64}".encode("ascii"), _ECDSA_SHA256)
    except InvalidSignature as exc:
        raise SvidValidationError(
            "token signature does not verify", reason="bad_signature"
        ) from exc


def _checked_claims(
    claims: dict[str, Any], audience: str, leeway: int, now: dt.datetime | None
) -> tuple[float, float | None, list[str]]:
    """Check the verified claims; return ``(exp, iat, audiences)``."""
    exp = claims.get("exp")
    if not _is_time(exp):
        raise SvidValidationError("exp is missing or not a NumericDate", reason="malformed")
    iat = claims.get("iat")
    if iat is not None and not _is_time(iat):
        raise SvidValidationError("iat is not a NumericDate", reason="malformed")
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else aud
    if not isinstance(auds, list) or not auds or not all(isinstance(a, str) for a in auds):
        raise SvidValidationError(
            "aud is missing or not a string or list of strings", reason="malformed"
        )
    t = time.time() if now is None else as_utc(now).timestamp()
    if t >= exp + leeway:
        raise SvidValidationError("token has expired", reason="expired")
    nbf = claims.get("nbf")
    if nbf is not None and not _is_time(nbf):
        raise SvidValidationError("nbf is not a NumericDate", reason="malformed")
    if nbf is not None and t < nbf - leeway:
        raise SvidValidationError("token is not valid yet (nbf)", reason="not_yet_valid")
    if audience not in auds:
        raise SvidValidationError("token is not for this audience", reason="wrong_audience")
    return exp, iat, auds


def validate_jwt_svid(
    token: str,
    bundle: TrustBundle | Mapping[str, TrustBundle],
    audience: str,
    *,
    leeway: int = 0,
    now: dt.datetime | None = None,
) -> JwtSvid:
    """Validate a JWT-SVID for ``audience`` against a bundle (or a trust domain -> bundle map).

    The header must be exactly ``alg=ES256``, ``kid`` and optionally ``typ`` (``JWT`` or
    ``JOSE``); ``sub`` must be a SPIFFE ID of the bundle's trust domain; ``aud`` must contain
    ``audience``; ``exp`` must be in the future (``nbf``, if present, in the past).
    """
    if not isinstance(token, str) or not token or len(token) > MAX_JWT_LENGTH:
        raise SvidValidationError("token is empty, too long or not a string", reason="malformed")
    parts = token.split(".")
    if len(parts) != 3:
        raise SvidValidationError("token is not a compact JWS (three segments)", reason="malformed")
    h64, p64, s64 = parts
    kid = _header_kid(h64)  # nothing else is looked at before alg and kid are acceptable
    claims, subject = _unverified_claims(p64)
    trust_domain = subject.trust_domain.name
    key = select_bundle(bundle, trust_domain).jwt_key(kid)
    if key is None:
        raise SvidValidationError(
            f"no JWT authority with kid {kid!r} in {trust_domain}", reason="unknown_kid"
        )
    _verify_signature(key, h64, p64, s64)
    exp, iat, auds = _checked_claims(claims, audience, leeway, now)
    utc = dt.timezone.utc
    return JwtSvid(
        spiffe_id=str(subject),
        audience=list(auds),
        expiry=dt.datetime.fromtimestamp(exp, utc),
        issued_at=None if iat is None else dt.datetime.fromtimestamp(iat, utc),
        token=token,
    )
