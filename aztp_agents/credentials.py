"""Real SPIFFE credentials: a per-organization CA, X.509-SVIDs, JWT-SVIDs and trust bundles.

* :class:`CertificateAuthority` is an EC P-256 self-signed CA for one trust domain. It issues
  X.509-SVIDs (from a public key or a CSR) and mints JWT-SVIDs (ES256, signed with the same key).
* :class:`TrustBundle` holds what a verifier needs for one trust domain (X.509 authorities and
  JWT keys by ``kid``) and converts to and from the SPIFFE bundle format (JWKS).
* :func:`validate_x509_svid` and :func:`validate_jwt_svid` check SVIDs against a bundle and
  raise :class:`~aztp_agents.errors.SvidValidationError` with a ``reason`` on failure.

SPIFFE IDs are taken as plain strings; only the checks a credential needs are made here.
JWT-SVIDs are minted with PyJWT. Validation decodes the compact form itself (strict base64url,
header checked before anything else) and verifies the ES256 signature with ``cryptography``
directly: that keeps validation close to the cost of a single ECDSA verify.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import logging
import math
import os
import re
import secrets
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from aztp_agents.errors import CredentialError, SvidValidationError

__all__ = [
    "CertificateAuthority",
    "JwtSvid",
    "TrustBundle",
    "X509Svid",
    "generate_private_key",
    "kid_for_public_key",
    "load_private_key",
    "make_csr",
    "private_key_to_pem",
    "validate_jwt_svid",
    "validate_x509_svid",
]

logger = logging.getLogger(__name__)

#: Clock skew allowance put into every leaf's ``not_before``.
CLOCK_SKEW_SECONDS = 60
#: Tokens longer than this are rejected before any parsing.
MAX_JWT_LENGTH = 16 * 1024

_CURVE = ec.SECP256R1
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_JWT_HEADER_FIELDS = frozenset({"alg", "kid", "typ"})
_JWT_TYPES = frozenset({"JWT", "JOSE"})
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]{1,255}")
_SPIFFE_ID = re.compile(r"spiffe://([a-z0-9._-]{1,255})((?:/[A-Za-z0-9._-]+)*)")
_USE_X509 = "x509-svid"
_USE_JWT = "jwt-svid"
_CA_CERT_FILE = "ca.crt"
_CA_KEY_FILE = "ca.key"


# --- small helpers ---------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _as_utc(when: dt.datetime | None) -> dt.datetime:
    """``when`` as an aware UTC datetime (naive values are taken as UTC); now if ``None``."""
    if when is None:
        return _now()
    if when.tzinfo is None:
        return when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc)


def _split_spiffe_id(spiffe_id: str) -> tuple[str, str]:
    """Return ``(trust_domain, path)`` of a SPIFFE ID, or raise ``ValueError``.

    A deliberately small check (the full rules live in :mod:`aztp_agents.ids`): scheme,
    lower-case trust domain, path segments of ``[A-Za-z0-9._-]`` without ``.``/``..``.
    """
    if not isinstance(spiffe_id, str) or len(spiffe_id) > 2048:
        raise ValueError("not a SPIFFE ID")
    m = _SPIFFE_ID.fullmatch(spiffe_id)
    if m is None:
        raise ValueError(f"not a SPIFFE ID: {spiffe_id!r}")
    path = m.group(2)
    if any(seg in (".", "..") for seg in path.split("/")[1:]):
        raise ValueError(f"SPIFFE ID path has a dot segment: {spiffe_id!r}")
    return m.group(1), path


def _check_trust_domain(trust_domain: str) -> str:
    if not isinstance(trust_domain, str) or _TRUST_DOMAIN.fullmatch(trust_domain) is None:
        raise CredentialError(f"invalid trust domain: {trust_domain!r}")
    return trust_domain


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(segment: str) -> bytes:
    """Strict base64url without padding (RFC 7515 section 2); raise ``ValueError``."""
    if _B64URL.fullmatch(segment) is None or len(segment) % 4 == 1:
        raise ValueError("invalid base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except binascii.Error as exc:
        raise ValueError("invalid base64url") from exc


def _int_to_b64(n: int) -> str:
    return _b64url_encode(n.to_bytes(32, "big"))


def _require_p256_public(key: object, what: str) -> ec.EllipticCurvePublicKey:
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, _CURVE):
        raise CredentialError(f"{what} must be an EC P-256 public key")
    return key


def _require_p256_private(key: object, what: str) -> ec.EllipticCurvePrivateKey:
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, _CURVE):
        raise CredentialError(f"{what} must be an EC P-256 private key")
    return key


def _spki_der(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def kid_for_public_key(public_key: ec.EllipticCurvePublicKey) -> str:
    """Stable key id: base64url of SHA-256 of the SubjectPublicKeyInfo DER, 32 characters."""
    return _b64url_encode(hashlib.sha256(_spki_der(public_key)).digest())[:32]


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` atomically; the file has ``mode`` from its creation on."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _uri_sans(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


# --- keys and CSRs ---------------------------------------------------------------------


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    """A new EC P-256 private key."""
    return ec.generate_private_key(_CURVE())


def private_key_to_pem(key: ec.EllipticCurvePrivateKey) -> str:
    """PKCS#8 PEM, unencrypted."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def load_private_key(pem: str | bytes) -> ec.EllipticCurvePrivateKey:
    """Load an unencrypted PEM private key; it must be EC P-256."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnicodeError) as exc:
        raise CredentialError("could not load the private key (unencrypted PEM expected)") from exc
    return _require_p256_private(key, "private key")


def make_csr(private_key: ec.EllipticCurvePrivateKey, spiffe_id: str) -> str:
    """A PEM certificate signing request for ``spiffe_id`` (as its URI SAN)."""
    _require_p256_private(private_key, "private key")
    try:
        _split_spiffe_id(spiffe_id)
    except ValueError as exc:
        raise CredentialError(str(exc)) from exc
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
            critical=False,
        )
        .sign(private_key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


# --- SVIDs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class X509Svid:
    """An issued X.509-SVID (the private key stays with whoever made it)."""

    spiffe_id: str
    certificate: x509.Certificate
    cert_pem: str
    #: Leaf then CA certificate, PEM.
    chain_pem: str
    not_after: dt.datetime
    serial: int


@dataclass(frozen=True)
class JwtSvid:
    """A validated JWT-SVID."""

    spiffe_id: str
    audience: list[str]
    expiry: dt.datetime
    issued_at: dt.datetime | None
    token: str


# --- certificate authority -------------------------------------------------------------


class CertificateAuthority:
    """An EC P-256 CA for one trust domain; also the JWT-SVID signing key."""

    def __init__(
        self,
        trust_domain: str,
        certificate: x509.Certificate,
        private_key: ec.EllipticCurvePrivateKey,
    ) -> None:
        self._trust_domain = _check_trust_domain(trust_domain)
        self._private_key = _require_p256_private(private_key, "CA private key")
        public = _require_p256_public(certificate.public_key(), "CA certificate key")
        if _spki_der(public) != _spki_der(private_key.public_key()):
            raise CredentialError("the CA private key does not match the CA certificate")
        try:
            bc = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if bc is None or not bc.ca:
            raise CredentialError("the CA certificate is not a CA (basicConstraints cA=false)")
        for uri in _uri_sans(certificate):
            if uri != f"spiffe://{trust_domain}":
                raise CredentialError(
                    f"the CA certificate's URI SAN {uri!r} is not spiffe://{trust_domain}"
                )
        self._certificate = certificate
        self._certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
        self._kid = kid_for_public_key(public)
        self._aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(public)

    # construction / persistence

    @classmethod
    def generate(
        cls, trust_domain: str, *, common_name: str | None = None, ttl_days: int = 3650
    ) -> CertificateAuthority:
        """A new self-signed CA for ``trust_domain``."""
        _check_trust_domain(trust_domain)
        if ttl_days <= 0:
            raise CredentialError("ttl_days must be positive")
        key = generate_private_key()
        public = key.public_key()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name or f"{trust_domain} AZTP CA"),
            ]
        )
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(seconds=CLOCK_SKEW_SECONDS))
            .not_valid_after(now + dt.timedelta(days=ttl_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]
                ),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        ca = cls(trust_domain, cert, key)
        logger.info("generated CA for trust domain %s (kid %s)", trust_domain, ca.kid)
        return ca

    @classmethod
    def from_pem(
        cls, cert_pem: str | bytes, key_pem: str | bytes, *, trust_domain: str | None = None
    ) -> CertificateAuthority:
        """Load a CA; the trust domain comes from its ``spiffe://td`` URI SAN unless given."""
        data = cert_pem.encode("ascii") if isinstance(cert_pem, str) else cert_pem
        try:
            cert = x509.load_pem_x509_certificate(data)
        except ValueError as exc:
            raise CredentialError("could not parse the CA certificate PEM") from exc
        key = load_private_key(key_pem)
        if trust_domain is None:
            uris = _uri_sans(cert)
            if len(uris) != 1 or not uris[0].startswith("spiffe://"):
                raise CredentialError(
                    "the CA certificate carries no spiffe:// URI SAN; pass trust_domain"
                )
            trust_domain = uris[0][len("spiffe://") :]
        return cls(trust_domain, cert, key)

    def to_pem(self) -> tuple[str, str]:
        """``(certificate PEM, private key PEM)``."""
        return self._certificate_pem, private_key_to_pem(self._private_key)

    def save(self, directory: Path | str) -> None:
        """Write ``ca.crt`` (0644) and ``ca.key`` (0600, never wider) into ``directory`` (0700)."""
        directory = Path(directory)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        cert_pem, key_pem = self.to_pem()
        _write_file(directory / _CA_KEY_FILE, key_pem.encode("ascii"), 0o600)
        _write_file(directory / _CA_CERT_FILE, cert_pem.encode("ascii"), 0o644)
        logger.info("saved CA for trust domain %s to %s", self._trust_domain, directory)

    @classmethod
    def load(cls, directory: Path | str) -> CertificateAuthority:
        """Load a CA written by :meth:`save`."""
        directory = Path(directory)
        key_path = directory / _CA_KEY_FILE
        try:
            mode = stat.S_IMODE(key_path.stat().st_mode)
            if mode & 0o077:
                logger.warning("CA key file %s has mode %o; expected 0600", key_path, mode)
            cert_pem = (directory / _CA_CERT_FILE).read_bytes()
            key_pem = key_path.read_bytes()
        except OSError as exc:
            raise CredentialError(f"could not read the CA from {directory}: {exc}") from exc
        return cls.from_pem(cert_pem, key_pem)

    # properties

    @property
    def trust_domain(self) -> str:
        return self._trust_domain

    @property
    def certificate(self) -> x509.Certificate:
        return self._certificate

    @property
    def certificate_pem(self) -> str:
        return self._certificate_pem

    @property
    def private_key(self) -> ec.EllipticCurvePrivateKey:
        return self._private_key

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._private_key.public_key()

    @property
    def kid(self) -> str:
        return self._kid

    def trust_bundle(self, *, sequence: int = 1, refresh_hint: int = 300) -> TrustBundle:
        """A bundle holding just this CA."""
        return TrustBundle.from_authorities(
            self._trust_domain, [self], sequence=sequence, refresh_hint=refresh_hint
        )

    # issuance

    def _check_subject(self, spiffe_id: str) -> None:
        try:
            td, path = _split_spiffe_id(spiffe_id)
        except ValueError as exc:
            raise CredentialError(str(exc)) from exc
        if td != self._trust_domain:
            raise CredentialError(
                f"{spiffe_id} is not in this CA's trust domain {self._trust_domain}"
            )
        if not path:
            raise CredentialError(f"an SVID needs a SPIFFE ID with a path, got {spiffe_id}")

    def issue_x509_svid(
        self,
        spiffe_id: str,
        public_key: ec.EllipticCurvePublicKey,
        *,
        ttl: int = 3600,
    ) -> X509Svid:
        """Issue an X.509-SVID for ``spiffe_id`` binding ``public_key`` (EC P-256)."""
        self._check_subject(spiffe_id)
        _require_p256_public(public_key, "SVID public key")
        if ttl <= 0:
            raise CredentialError("ttl must be positive")
        now = _now()
        if self._certificate.not_valid_after_utc <= now:
            raise CredentialError(f"the CA of {self._trust_domain} has expired")
        not_after = min(now + dt.timedelta(seconds=ttl), self._certificate.not_valid_after_utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, self._trust_domain)])
            )
            .issuer_name(self._certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(seconds=CLOCK_SKEW_SECONDS))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(self._aki, critical=False)
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
                critical=False,
            )
            .sign(self._private_key, hashes.SHA256())
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
        logger.debug("issued X.509-SVID for %s serial %x", spiffe_id, cert.serial_number)
        return X509Svid(
            spiffe_id=spiffe_id,
            certificate=cert,
            cert_pem=cert_pem,
            chain_pem=cert_pem + self._certificate_pem,
            not_after=cert.not_valid_after_utc,
            serial=cert.serial_number,
        )

    def issue_x509_svid_from_csr(
        self, spiffe_id: str, csr_pem: str | bytes, *, ttl: int = 3600
    ) -> X509Svid:
        """Issue from a PEM CSR. Its signature must verify and its key be EC P-256.

        Whatever names the CSR asks for are ignored: the SVID carries exactly ``spiffe_id``.
        """
        self._check_subject(spiffe_id)
        data = csr_pem.encode("ascii") if isinstance(csr_pem, str) else csr_pem
        try:
            csr = x509.load_pem_x509_csr(data)
        except (ValueError, UnicodeError) as exc:
            raise CredentialError("could not parse the CSR (PEM expected)") from exc
        if not csr.is_signature_valid:
            raise CredentialError("the CSR's signature does not verify")
        try:
            public_key = csr.public_key()
        except (ValueError, TypeError) as exc:
            raise CredentialError("the CSR's public key is not supported") from exc
        public_key = _require_p256_public(public_key, "the CSR's key")
        return self.issue_x509_svid(spiffe_id, public_key, ttl=ttl)

    def mint_jwt_svid(self, spiffe_id: str, audience: str | list[str], *, ttl: int = 300) -> str:
        """A compact ES256 JWS: header ``alg, kid, typ``; claims ``sub, aud, exp, iat``."""
        self._check_subject(spiffe_id)
        auds = [audience] if isinstance(audience, str) else list(audience)
        if not auds or not all(isinstance(a, str) and a for a in auds):
            raise CredentialError("audience must be a non-empty string or list of strings")
        if ttl <= 0:
            raise CredentialError("ttl must be positive")
        iat = int(time.time())
        token = jwt.encode(
            {"sub": spiffe_id, "aud": auds, "exp": iat + ttl, "iat": iat},
            self._private_key,
            algorithm="ES256",
            headers={"kid": self._kid, "typ": "JWT"},
        )
        header = jwt.get_unverified_header(token)
        if header != {"alg": "ES256", "kid": self._kid, "typ": "JWT"}:
            raise CredentialError(f"unexpected JWT header produced: {sorted(header)}")
        return token


# --- trust bundle ----------------------------------------------------------------------


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
        self._trust_domain = _check_trust_domain(trust_domain)
        self._x509 = list(x509_authorities)
        self._jwt = dict(jwt_authorities or {})
        for kid, key in self._jwt.items():
            if not isinstance(kid, str) or not kid:
                raise CredentialError("a JWT authority needs a non-empty kid")
            _require_p256_public(key, f"JWT authority {kid}")
        if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0:
            raise CredentialError("sequence must be a non-negative integer")
        if isinstance(refresh_hint, bool) or not isinstance(refresh_hint, int) or refresh_hint < 0:
            raise CredentialError("refresh_hint must be a non-negative integer")
        self.sequence = sequence
        self.refresh_hint = refresh_hint
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
            if isinstance(ca, CertificateAuthority):
                if ca.trust_domain != trust_domain:
                    raise CredentialError(
                        f"CA of {ca.trust_domain} cannot go into a bundle of {trust_domain}"
                    )
                cert = ca.certificate
            else:
                cert = ca
            public = _require_p256_public(cert.public_key(), "CA certificate key")
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
            nums = _require_p256_public(cert.public_key(), "CA certificate key").public_numbers()
            keys.append(
                {
                    "use": _USE_X509,
                    "kty": "EC",
                    "crv": "P-256",
                    "x": _int_to_b64(nums.x),
                    "y": _int_to_b64(nums.y),
                    "x5c": [
                        base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode(
                            "ascii"
                        )
                    ],
                }
            )
        for kid, key in self._jwt.items():
            nums = key.public_numbers()
            keys.append(
                {
                    "use": _USE_JWT,
                    "kty": "EC",
                    "crv": "P-256",
                    "x": _int_to_b64(nums.x),
                    "y": _int_to_b64(nums.y),
                    "kid": kid,
                }
            )
        return {
            "keys": keys,
            "spiffe_sequence": self.sequence,
            "spiffe_refresh_hint": self.refresh_hint,
        }

    @classmethod
    def from_jwks(cls, trust_domain: str, data: Mapping[str, Any]) -> TrustBundle:
        """Parse a SPIFFE bundle document. Entries with an unknown ``use`` are ignored."""

        def bad(msg: str) -> CredentialError:
            return CredentialError(f"malformed SPIFFE bundle for {trust_domain}: {msg}")

        if not isinstance(data, Mapping) or not isinstance(data.get("keys"), list):
            raise bad("'keys' must be a list")
        sequence = data.get("spiffe_sequence", 0)
        refresh_hint = data.get("spiffe_refresh_hint", 300)
        for name, value in (("spiffe_sequence", sequence), ("spiffe_refresh_hint", refresh_hint)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise bad(f"{name} must be a non-negative integer")
        certs: list[x509.Certificate] = []
        jwt_keys: dict[str, ec.EllipticCurvePublicKey] = {}
        for i, entry in enumerate(data["keys"]):
            if not isinstance(entry, Mapping):
                raise bad(f"key {i} is not an object")
            use = entry.get("use")
            if use not in (_USE_X509, _USE_JWT):
                logger.debug("ignoring bundle key %d with use %r", i, use)
                continue
            if entry.get("kty") != "EC" or entry.get("crv") != "P-256":
                raise bad(f"key {i}: only EC P-256 keys are supported")
            try:
                x, y = entry["x"], entry["y"]
                if not isinstance(x, str) or not isinstance(y, str):
                    raise ValueError("x/y must be strings")
                xb, yb = _b64url_decode(x), _b64url_decode(y)
                if len(xb) != 32 or len(yb) != 32:
                    raise ValueError("x/y must be 32 bytes")
                key = ec.EllipticCurvePublicNumbers(
                    int.from_bytes(xb, "big"), int.from_bytes(yb, "big"), _CURVE()
                ).public_key()
            except (KeyError, ValueError) as exc:
                raise bad(f"key {i}: bad EC point ({exc})") from exc
            if use == _USE_X509:
                x5c = entry.get("x5c")
                if not isinstance(x5c, list) or len(x5c) != 1 or not isinstance(x5c[0], str):
                    raise bad(f"key {i}: x509-svid entry needs exactly one x5c certificate")
                try:
                    cert = x509.load_der_x509_certificate(base64.b64decode(x5c[0], validate=True))
                except (ValueError, binascii.Error) as exc:
                    raise bad(f"key {i}: x5c is not a DER certificate") from exc
                if _spki_der(cert.public_key()) != _spki_der(key):  # type: ignore[arg-type]
                    raise bad(f"key {i}: x/y do not match the x5c certificate")
                certs.append(cert)
            else:
                kid = entry.get("kid")
                if not isinstance(kid, str) or not kid:
                    raise bad(f"key {i}: jwt-svid entry needs a kid")
                if kid in jwt_keys:
                    raise bad(f"duplicate kid {kid!r}")
                jwt_keys[kid] = key
        return cls(trust_domain, certs, jwt_keys, sequence=sequence, refresh_hint=refresh_hint)

    def __repr__(self) -> str:
        return (
            f"TrustBundle({self._trust_domain!r}, x509={len(self._x509)}, "
            f"jwt={sorted(self._jwt)}, sequence={self.sequence})"
        )


# --- validation ------------------------------------------------------------------------


def _fail(reason: str, message: str) -> SvidValidationError:
    return SvidValidationError(message, reason=reason)


def _pick_bundle(bundle: TrustBundle | Mapping[str, TrustBundle], trust_domain: str) -> TrustBundle:
    if isinstance(bundle, TrustBundle):
        chosen: TrustBundle | None = bundle
    else:
        chosen = bundle.get(trust_domain)
    if chosen is None or chosen.trust_domain != trust_domain:
        raise _fail("untrusted_chain", f"no trust bundle for trust domain {trust_domain}")
    return chosen


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _json_segment(segment: str) -> object:
    """Decode one base64url JSON segment (``NaN``/``Infinity`` are not JSON: rejected)."""
    return json.loads(_b64url_decode(segment), parse_constant=_reject_constant)


_MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z


def _is_time(v: object) -> bool:
    """A NumericDate we can represent: a finite, non-negative number up to year 9999."""
    return (
        isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
        and 0 <= v <= _MAX_TIME
    )


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
        raise _fail("malformed", "token is empty, too long or not a string")
    parts = token.split(".")
    if len(parts) != 3:
        raise _fail("malformed", "token is not a compact JWS (three segments)")
    h64, p64, s64 = parts

    # header first: nothing else is looked at before alg and kid are acceptable
    try:
        header = _json_segment(h64)
    except ValueError as exc:  # includes JSONDecodeError and UnicodeDecodeError
        raise _fail("malformed", "token header is not base64url JSON") from exc
    if not isinstance(header, dict):
        raise _fail("bad_header", "token header is not a JSON object")
    alg = header.get("alg")
    if alg != "ES256":
        raise _fail("bad_alg", f"algorithm {alg!r} is not allowed (ES256 only)")
    if not header.keys() <= _JWT_HEADER_FIELDS:
        raise _fail(
            "bad_header", f"unexpected header fields {sorted(header.keys() - _JWT_HEADER_FIELDS)}"
        )
    typ = header.get("typ")
    if typ is not None and typ not in _JWT_TYPES:
        raise _fail("bad_header", f"typ {typ!r} is not JWT or JOSE")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _fail("bad_header", "token header has no kid")

    # unverified peek at the claims: only to choose the bundle
    try:
        claims = _json_segment(p64)
    except ValueError as exc:
        raise _fail("malformed", "token payload is not base64url JSON") from exc
    if not isinstance(claims, dict):
        raise _fail("malformed", "token payload is not a JSON object")
    sub = claims.get("sub")
    try:
        sub_td, sub_path = _split_spiffe_id(sub)  # type: ignore[arg-type]
    except ValueError as exc:
        raise _fail("malformed", "sub is missing or not a SPIFFE ID") from exc
    if not sub_path:
        raise _fail("malformed", "sub must be a SPIFFE ID with a path")
    chosen = _pick_bundle(bundle, sub_td)

    key = chosen._jwt.get(kid)
    if key is None:
        raise _fail("unknown_kid", f"no JWT authority with kid {kid!r} in {sub_td}")
    try:
        raw_sig = _b64url_decode(s64)
    except ValueError as exc:
        raise _fail("malformed", "token signature is not base64url") from exc
    if len(raw_sig) != 64:
        raise _fail("bad_signature", "ES256 signature must be 64 bytes")
    der_sig = utils.encode_dss_signature(
        int.from_bytes(raw_sig[:32], "big"), int.from_bytes(raw_sig[32:], "big")
    )
    try:
        key.verify(der_sig, f"{h64}.{p64}".encode("ascii"), _ECDSA_SHA256)
    except InvalidSignature as exc:
        raise _fail("bad_signature", "token signature does not verify") from exc

    # verified claims
    exp = claims.get("exp")
    if not _is_time(exp):
        raise _fail("malformed", "exp is missing or not a NumericDate")
    iat = claims.get("iat")
    if iat is not None and not _is_time(iat):
        raise _fail("malformed", "iat is not a NumericDate")
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else aud
    if not isinstance(auds, list) or not auds or not all(isinstance(a, str) for a in auds):
        raise _fail("malformed", "aud is missing or not a string or list of strings")
    t = time.time() if now is None else _as_utc(now).timestamp()
    if t >= exp + leeway:  # type: ignore[operator]
        raise _fail("expired", "token has expired")
    nbf = claims.get("nbf")
    if nbf is not None and not _is_time(nbf):
        raise _fail("malformed", "nbf is not a NumericDate")
    if nbf is not None and t < nbf - leeway:  # type: ignore[operator]
        raise _fail("not_yet_valid", "token is not valid yet (nbf)")
    if audience not in auds:
        raise _fail("wrong_audience", "token is not for this audience")
    utc = dt.timezone.utc
    return JwtSvid(
        spiffe_id=sub,  # type: ignore[arg-type]
        audience=list(auds),
        expiry=dt.datetime.fromtimestamp(exp, utc),  # type: ignore[arg-type]
        issued_at=None if iat is None else dt.datetime.fromtimestamp(iat, utc),
        token=token,
    )


def _leaf_spiffe_id(leaf: x509.Certificate) -> str:
    """Apply the SPIFFE X.509-SVID leaf rules; return the SPIFFE ID."""
    uris = _uri_sans(leaf)
    if len(uris) != 1:
        raise _fail("bad_svid", f"leaf must have exactly one URI SAN, has {len(uris)}")
    try:
        _td, path = _split_spiffe_id(uris[0])
    except ValueError as exc:
        raise _fail("bad_svid", "leaf URI SAN is not a SPIFFE ID") from exc
    if not path:
        raise _fail("bad_svid", "leaf SPIFFE ID has no path")
    try:
        bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is not None and bc.ca:
        raise _fail("bad_svid", "leaf is a CA certificate")
    try:
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise _fail("bad_svid", "leaf has no key usage") from exc
    if not ku.digital_signature or ku.key_cert_sign or ku.crl_sign:
        raise _fail(
            "bad_svid", "leaf key usage must have digitalSignature and not keyCertSign/cRLSign"
        )
    return uris[0]


def _load_chain(chain: Sequence[x509.Certificate] | str | bytes) -> list[x509.Certificate]:
    if isinstance(chain, (str, bytes)):
        data = chain.encode("ascii") if isinstance(chain, str) else chain
        try:
            certs = x509.load_pem_x509_certificates(data)
        except (ValueError, UnicodeError) as exc:
            raise _fail("malformed", "chain is not PEM certificates") from exc
    else:
        certs = list(chain)
        if not all(isinstance(c, x509.Certificate) for c in certs):
            raise _fail("malformed", "chain must hold x509.Certificate objects")
    if not certs:
        raise _fail("malformed", "empty certificate chain")
    return certs


def validate_x509_svid(
    chain: Sequence[x509.Certificate] | str | bytes,
    bundle: TrustBundle | Mapping[str, TrustBundle],
    *,
    private_key: ec.EllipticCurvePrivateKey | None = None,
    now: dt.datetime | None = None,
) -> str:
    """Validate an X.509-SVID chain (leaf first) against a bundle; return its SPIFFE ID.

    The chain is verified by ``cryptography.x509.verification`` (client verifier: signatures,
    validity, basic constraints, clientAuth EKU) on top of the SPIFFE leaf rules. With
    ``private_key``, its public key must be the leaf's.
    """
    certs = _load_chain(chain)
    leaf, intermediates = certs[0], certs[1:]
    spiffe_id = _leaf_spiffe_id(leaf)
    td, _path = _split_spiffe_id(spiffe_id)
    chosen = _pick_bundle(bundle, td)
    when = _as_utc(now)
    if when < leaf.not_valid_before_utc:
        raise _fail("not_yet_valid", "leaf certificate is not valid yet")
    if when > leaf.not_valid_after_utc:
        raise _fail("expired", "leaf certificate has expired")
    verifier = PolicyBuilder().store(chosen.x509_store).time(when).build_client_verifier()
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        raise _fail(
            "untrusted_chain", f"chain does not verify to the bundle of {td}: {exc}"
        ) from exc
    if private_key is not None:
        leaf_pub = leaf.public_key()
        if not isinstance(leaf_pub, ec.EllipticCurvePublicKey) or _spki_der(leaf_pub) != _spki_der(
            private_key.public_key()
        ):
            raise _fail("key_mismatch", "the private key does not match the leaf certificate")
    return spiffe_id
