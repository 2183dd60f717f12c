"""EC P-256 key pairs, key ids and certificate signing requests.

Every credential in aztp-agents uses P-256 (ES256 for JWT-SVIDs); this module is where that
choice is made and checked. In remote mode the client makes its key pair here and sends only
a CSR (:func:`make_csr`), so private keys never cross the wire.
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aztp_agents.errors import CredentialError
from aztp_agents.ids import SpiffeId

from . import _base64url
from ._subject import spiffe_id_of

__all__ = [
    "generate_private_key",
    "kid_for_public_key",
    "load_private_key",
    "make_csr",
    "private_key_to_pem",
    "require_p256_private",
    "require_p256_public",
    "spki_der",
]

CURVE = ec.SECP256R1


def require_p256_public(key: object, what: str) -> ec.EllipticCurvePublicKey:
    """``key`` if it is an EC P-256 public key; else :class:`CredentialError` naming ``what``."""
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, CURVE):
        raise CredentialError(f"{what} must be an EC P-256 public key")
    return key


def require_p256_private(key: object, what: str) -> ec.EllipticCurvePrivateKey:
    """``key`` if it is an EC P-256 private key; else :class:`CredentialError` naming ``what``."""
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, CURVE):
        raise CredentialError(f"{what} must be an EC P-256 private key")
    return key


def spki_der(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The SubjectPublicKeyInfo DER of a public key (what key comparisons compare)."""
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def kid_for_public_key(public_key: ec.EllipticCurvePublicKey) -> str:
    """Stable key id: base64url of SHA-256 of the SubjectPublicKeyInfo DER, 32 characters."""
    return _base64url.encode(hashlib.sha256(spki_der(public_key)).digest())[:32]


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    """A new EC P-256 private key."""
    return ec.generate_private_key(CURVE())


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
    return require_p256_private(key, "private key")


def make_csr(private_key: ec.EllipticCurvePrivateKey, spiffe_id: SpiffeId | str) -> str:
    """A PEM certificate signing request for ``spiffe_id`` (as its URI SAN)."""
    require_p256_private(private_key, "private key")
    subject = str(spiffe_id_of(spiffe_id))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(subject)]),
            critical=False,
        )
        .sign(private_key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")
