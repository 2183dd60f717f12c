"""SPIFFE trust bundles: one trust domain's X.509 authorities and JWT keys, and their JWKS form.

:class:`TrustBundle` is what a verifier needs for one trust domain; :meth:`TrustBundle.to_jwks`
and :meth:`TrustBundle.from_jwks` convert to and from the SPIFFE bundle document (``x509-svid``
entries with ``x5c``, ``jwt-svid`` entries with ``kid``, ``spiffe_sequence``,
``spiffe_refresh_hint``). :func:`select_bundle` picks the bundle an SVID must chain to.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import Store

from aztp_agents.errors import CredentialError, SvidValidationError

from . import _base64url
from ._subject import trust_domain_name
from .keys import CURVE, kid_for_public_key, require_p256_public, spki_der

if TYPE_CHECKING:  # pragma: no cover - typing only (ca.py imports this module)
    from .ca import CertificateAuthority

__all__ = ["TrustBundle", "select_bundle"]

logger = logging.getLogger(__name__)

USE_X509 = "x509-svid"
USE_JWT = "jwt-svid"


def _check_counter(value: object, name: str) -> int:
    """A non-negative ``int`` (``bool`` excluded) or :class:`CredentialError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CredentialError(f"{name} must be a non-negative integer")
    return value


class TrustBundle:
    """One trust domain's X.509 authorities and JWT keys (``kid -> public key``)."""

    def __init__(
        self,
        trust_domain: str,
        x509_authorities: Sequence[x509.Certificate] = (),
        jwt_authorities: Mapping[str, ec.EllipticCurvePublicKey] | None = None,
        *,
        sequence: int = 1,
        refresh_hint: int = 300,
    ) -> None:
        self._trust_domain = trust_domain_name(trust_domain)
        self._x509 = list(x509_authorities)
        self._jwt = dict(jwt_authorities or {})
        for kid, key in self._jwt.items():
            if not isinstance(kid, str) or not kid:
                raise CredentialError("a JWT authority needs a non-empty kid")
            require_p256_public(key, f"JWT authority {kid}")
        self.sequence = _check_counter(sequence, "sequence")
        self.refresh_hint = _check_counter(refresh_hint, "refresh_hint")
        self._store: Store | None = None

    @classmethod
    def from_authorities(
        cls,
        trust_domain: str,
        cas: Sequence[CertificateAuthority | x509.Certificate],
        sequence: int = 1,
        refresh_hint: int = 300,
    ) -> TrustBundle:
        """Each CA is both an X.509 authority and a JWT key (kid from its public key)."""
        certs: list[x509.Certificate] = []
        keys: dict[str, ec.EllipticCurvePublicKey] = {}
        for ca in cas:
            if isinstance(ca, x509.Certificate):
                cert = ca
            else:
                if ca.trust_domain != trust_domain:
                    raise CredentialError(
                        f"CA of {ca.trust_domain} cannot go into a bundle of {trust_domain}"
                    )
                cert = ca.certificate
            public = require_p256_public(cert.public_key(), "CA certificate key")
            certs.append(cert)
            keys[kid_for_public_key(public)] = public
        return cls(trust_domain, certs, keys, sequence=sequence, refresh_hint=refresh_hint)

    @property
    def trust_domain(self) -> str:
        return self._trust_domain

    @property
    def x509_authorities(self) -> list[x509.Certificate]:
        return list(self._x509)

    @property
    def jwt_authorities(self) -> dict[str, ec.EllipticCurvePublicKey]:
        return dict(self._jwt)

    def jwt_key(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        """The JWT key with this ``kid``, or ``None``."""
        return self._jwt.get(kid)

    @property
    def x509_store(self) -> Store:
        """A ``cryptography`` verification store of the X.509 authorities (cached)."""
        if self._store is None:
            if not self._x509:
                raise SvidValidationError(
                    f"the bundle of {self._trust_domain} has no X.509 authorities",
                    reason="untrusted_chain",
                )
            self._store = Store(self._x509)
        return self._store

    def to_jwks(self) -> dict[str, Any]:
        """The SPIFFE bundle (JWKS) document."""
        keys: list[dict[str, Any]] = []
        for cert in self._x509:
            public = require_p256_public(cert.public_key(), "CA certificate key")
            der = cert.public_bytes(serialization.Encoding.DER)
            keys.append(
                {"use": USE_X509, **_ec_jwk(public), "x5c": [base64.b64encode(der).decode("ascii")]}
            )
        for kid, key in self._jwt.items():
            keys.append({"use": USE_JWT, **_ec_jwk(key), "kid": kid})
        return {
            "keys": keys,
            "spiffe_sequence": self.sequence,
            "spiffe_refresh_hint": self.refresh_hint,
        }

    @classmethod
    def from_jwks(cls, trust_domain: str, data: Mapping[str, Any]) -> TrustBundle:
        """Parse a SPIFFE bundle document. Entries with an unknown ``use`` are ignored."""
        if not isinstance(data, Mapping) or not isinstance(data.get("keys"), list):
            raise _malformed(trust_domain, "'keys' must be a list")
        sequence = data.get("spiffe_sequence", 0)
        refresh_hint = data.get("spiffe_refresh_hint", 300)
        for name, value in (("spiffe_sequence", sequence), ("spiffe_refresh_hint", refresh_hint)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise _malformed(trust_domain, f"{name} must be a non-negative integer")
        certs: list[x509.Certificate] = []
        jwt_keys: dict[str, ec.EllipticCurvePublicKey] = {}
        for i, entry in enumerate(data["keys"]):
            if not isinstance(entry, Mapping):
                raise _malformed(trust_domain, f"key {i} is not an object")
            use = entry.get("use")
            if use not in (USE_X509, USE_JWT):
                logger.debug("ignoring bundle key %d with use %r", i, use)
                continue
            key = _jwk_public_key(trust_domain, i, entry)
            if use == USE_X509:
                certs.append(_x5c_certificate(trust_domain, i, entry, key))
            else:
                kid = entry.get("kid")
                if not isinstance(kid, str) or not kid:
                    raise _malformed(trust_domain, f"key {i}: jwt-svid entry needs a kid")
                if kid in jwt_keys:
                    raise _malformed(trust_domain, f"duplicate kid {kid!r}")
                jwt_keys[kid] = key
        return cls(trust_domain, certs, jwt_keys, sequence=sequence, refresh_hint=refresh_hint)

    def __repr__(self) -> str:
        return (
            f"TrustBundle({self._trust_domain!r}, x509={len(self._x509)}, "
            f"jwt={sorted(self._jwt)}, sequence={self.sequence})"
        )


def select_bundle(
    bundle: TrustBundle | Mapping[str, TrustBundle], trust_domain: str
) -> TrustBundle:
    """The bundle of ``trust_domain``: ``bundle`` itself or its entry in a trust-domain map.

    Raises :class:`SvidValidationError` (``untrusted_chain``) when there is none.
    """
    if isinstance(bundle, TrustBundle):
        chosen: TrustBundle | None = bundle
    else:
        chosen = bundle.get(trust_domain)
    if chosen is None or chosen.trust_domain != trust_domain:
        raise SvidValidationError(
            f"no trust bundle for trust domain {trust_domain}", reason="untrusted_chain"
        )
    return chosen


# --- JWKS entries ------------------------------------------------------------------------


def _malformed(trust_domain: str, msg: str) -> CredentialError:
    return CredentialError(f"malformed SPIFFE bundle for {trust_domain}: {msg}")


def _ec_jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    nums = key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _base64url.encode_coordinate(nums.x),
        "y": _base64url.encode_coordinate(nums.y),
    }


def _jwk_public_key(
    trust_domain: str, i: int, entry: Mapping[str, Any]
) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of JWKS entry ``i``."""
    if entry.get("kty") != "EC" or entry.get("crv") != "P-256":
        raise _malformed(trust_domain, f"key {i}: only EC P-256 keys are supported")
    try:
        x, y = entry["x"], entry["y"]
        if not isinstance(x, str) or not isinstance(y, str):
            raise ValueError("x/y must be strings")
        xb, yb = _base64url.decode(x), _base64url.decode(y)
        if len(xb) != 32 or len(yb) != 32:
            raise ValueError("x/y must be 32 bytes")
        return ec.EllipticCurvePublicNumbers(
            int.from_bytes(xb, "big"), int.from_bytes(yb, "big"), CURVE()
        ).public_key()
    except (KeyError, ValueError) as exc:
        raise _malformed(trust_domain, f"key {i}: bad EC point ({exc})") from exc


def _x5c_certificate(
    trust_domain: str, i: int, entry: Mapping[str, Any], key: ec.EllipticCurvePublicKey
) -> x509.Certificate:
    """The one certificate of an ``x509-svid`` entry; its key must be the entry's x/y."""
    x5c = entry.get("x5c")
    if not isinstance(x5c, list) or len(x5c) != 1 or not isinstance(x5c[0], str):
        raise _malformed(
            trust_domain, f"key {i}: x509-svid entry needs exactly one x5c certificate"
        )
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode(x5c[0], validate=True))
    except (ValueError, binascii.Error) as exc:
        raise _malformed(trust_domain, f"key {i}: x5c is not a DER certificate") from exc
    if spki_der(cert.public_key()) != spki_der(key):  # type: ignore[arg-type]
        raise _malformed(trust_domain, f"key {i}: x/y do not match the x5c certificate")
    return cert
