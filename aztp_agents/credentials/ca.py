"""The per-organization certificate authority: an EC P-256 self-signed CA for one trust domain.

It issues X.509-SVIDs (from a public key or a CSR) and mints JWT-SVIDs with the same key; the
formats themselves live in :mod:`.x509svid` and :mod:`.jwtsvid`. It also saves and loads
itself (``ca.crt`` 0644, ``ca.key`` 0600, atomically).
"""

from __future__ import annotations

import datetime as dt
import logging
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from aztp_agents.errors import CredentialError
from aztp_agents.ids import SpiffeId
from aztp_agents.private_files import private_folder, write_file

from ._subject import spiffe_id_of, trust_domain_name
from ._time import CLOCK_SKEW_SECONDS, utcnow
from .bundle import TrustBundle
from .jwtsvid import encode_jwt_svid
from .keys import (
    generate_private_key,
    kid_for_public_key,
    load_private_key,
    private_key_to_pem,
    require_p256_private,
    require_p256_public,
    spki_der,
)
from .x509svid import X509Svid, build_x509_svid, uri_sans

__all__ = ["CertificateAuthority"]

logger = logging.getLogger(__name__)

_CA_CERT_FILE = "ca.crt"
_CA_KEY_FILE = "ca.key"

_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _check_ca_certificate(trust_domain: str, certificate: x509.Certificate) -> None:
    """A CA certificate is ``cA=true`` and carries no SPIFFE ID but its trust domain's."""
    try:
        bc = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise CredentialError("the CA certificate is not a CA (basicConstraints cA=false)")
    for uri in uri_sans(certificate):
        if uri != f"spiffe://{trust_domain}":
            raise CredentialError(
                f"the CA certificate's URI SAN {uri!r} is not spiffe://{trust_domain}"
            )


class CertificateAuthority:
    """An EC P-256 CA for one trust domain; also the JWT-SVID signing key."""

    def __init__(
        self,
        trust_domain: str,
        certificate: x509.Certificate,
        private_key: ec.EllipticCurvePrivateKey,
    ) -> None:
        self._trust_domain = trust_domain_name(trust_domain)
        self._private_key = require_p256_private(private_key, "CA private key")
        public = require_p256_public(certificate.public_key(), "CA certificate key")
        if spki_der(public) != spki_der(private_key.public_key()):
            raise CredentialError("the CA private key does not match the CA certificate")
        _check_ca_certificate(self._trust_domain, certificate)
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
        trust_domain_name(trust_domain)
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
        now = utcnow()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(seconds=CLOCK_SKEW_SECONDS))
            .not_valid_after(now + dt.timedelta(days=ttl_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_CA_KEY_USAGE, critical=True)
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
            uris = uri_sans(cert)
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
        private_folder(directory)
        cert_pem, key_pem = self.to_pem()
        write_file(directory / _CA_KEY_FILE, key_pem.encode("ascii"), 0o600)
        write_file(directory / _CA_CERT_FILE, cert_pem.encode("ascii"), 0o644)
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

    def _subject(self, spiffe_id: SpiffeId | str) -> SpiffeId:
        """``spiffe_id`` if this CA may issue for it: its trust domain, with a path."""
        subject = spiffe_id_of(spiffe_id)
        if subject.trust_domain.name != self._trust_domain:
            raise CredentialError(
                f"{subject} is not in this CA's trust domain {self._trust_domain}"
            )
        if not subject.path:
            raise CredentialError(f"an SVID needs a SPIFFE ID with a path, got {subject}")
        return subject

    def issue_x509_svid(
        self,
        spiffe_id: SpiffeId | str,
        public_key: ec.EllipticCurvePublicKey,
        *,
        ttl: int = 3600,
    ) -> X509Svid:
        """Issue an X.509-SVID for ``spiffe_id`` binding ``public_key`` (EC P-256)."""
        subject = self._subject(spiffe_id)
        require_p256_public(public_key, "SVID public key")
        if ttl <= 0:
            raise CredentialError("ttl must be positive")
        now = utcnow()
        ca_expiry = self._certificate.not_valid_after_utc
        if ca_expiry <= now:
            raise CredentialError(f"the CA of {self._trust_domain} has expired")
        svid = build_x509_svid(
            subject,
            public_key,
            issuer=self._certificate,
            issuer_pem=self._certificate_pem,
            issuer_key=self._private_key,
            authority_key_id=self._aki,
            now=now,
            not_after=min(now + dt.timedelta(seconds=ttl), ca_expiry),
        )
        logger.debug("issued X.509-SVID for %s serial %x", subject, svid.serial)
        return svid

    def issue_x509_svid_from_csr(
        self, spiffe_id: SpiffeId | str, csr_pem: str | bytes, *, ttl: int = 3600
    ) -> X509Svid:
        """Issue from a PEM CSR. Its signature must verify and its key be EC P-256.

        Whatever names the CSR asks for are ignored: the SVID carries exactly ``spiffe_id``.
        """
        subject = self._subject(spiffe_id)
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
        public_key = require_p256_public(public_key, "the CSR's key")
        return self.issue_x509_svid(subject, public_key, ttl=ttl)

    def mint_jwt_svid(
        self, spiffe_id: SpiffeId | str, audience: str | list[str], *, ttl: int = 300
    ) -> str:
        """A compact ES256 JWS: header ``alg, kid, typ``; claims ``sub, aud, exp, iat``."""
        return encode_jwt_svid(
            self._subject(spiffe_id), audience, key=self._private_key, kid=self._kid, ttl=ttl
        )
