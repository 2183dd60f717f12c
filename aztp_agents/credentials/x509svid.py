"""X.509-SVIDs: the leaf certificate template and the SPIFFE validation rules.

:func:`build_x509_svid` is the one place that knows what an X.509-SVID leaf looks like (one URI
SAN, ``cA=false``, critical key usage with digitalSignature only, EKU serverAuth + clientAuth);
the CA that signs it is :class:`~aztp_agents.credentials.ca.CertificateAuthority`.
:func:`validate_x509_svid` checks a chain against a trust bundle.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, VerificationError

from aztp_agents.errors import InvalidIdError, SvidValidationError
from aztp_agents.ids import SpiffeId, TrustDomain, parse_spiffe_id

from ._time import CLOCK_SKEW_SECONDS, as_utc
from .bundle import TrustBundle, select_bundle
from .keys import spki_der

__all__ = ["X509Svid", "build_x509_svid", "uri_sans", "validate_x509_svid"]


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


def uri_sans(cert: x509.Certificate) -> list[str]:
    """The URI subject alternative names of ``cert`` (empty without a SAN extension)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


# --- issuance ----------------------------------------------------------------------------

_LEAF_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
_LEAF_EKU = x509.ExtendedKeyUsage(
    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
)


def build_x509_svid(
    spiffe_id: SpiffeId,
    public_key: ec.EllipticCurvePublicKey,
    *,
    issuer: x509.Certificate,
    issuer_pem: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    authority_key_id: x509.AuthorityKeyIdentifier,
    now: dt.datetime,
    not_after: dt.datetime,
) -> X509Svid:
    """Sign an X.509-SVID leaf for ``spiffe_id`` binding ``public_key``; random serial.

    The caller (the CA) has checked the subject, the key and the validity window, and passes
    its certificate in both forms and its key identifier, which it computes once.
    """
    subject = str(spiffe_id)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, spiffe_id.trust_domain.name)])
        )
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(seconds=CLOCK_SKEW_SECONDS))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_LEAF_KEY_USAGE, critical=True)
        .add_extension(_LEAF_EKU, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(authority_key_id, critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(subject)]),
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return X509Svid(
        spiffe_id=subject,
        certificate=cert,
        cert_pem=cert_pem,
        chain_pem=cert_pem + issuer_pem,
        not_after=cert.not_valid_after_utc,
        serial=cert.serial_number,
    )


# --- validation --------------------------------------------------------------------------


def _leaf_spiffe_id(leaf: x509.Certificate) -> SpiffeId:
    """Apply the SPIFFE X.509-SVID leaf rules; return the SPIFFE ID."""
    uris = uri_sans(leaf)
    if len(uris) != 1:
        raise SvidValidationError(
            f"leaf must have exactly one URI SAN, has {len(uris)}", reason="bad_svid"
        )
    try:
        spiffe_id = parse_spiffe_id(uris[0])
    except InvalidIdError as exc:
        raise SvidValidationError("leaf URI SAN is not a SPIFFE ID", reason="bad_svid") from exc
    if not spiffe_id.path:
        raise SvidValidationError("leaf SPIFFE ID has no path", reason="bad_svid")
    try:
        bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is not None and bc.ca:
        raise SvidValidationError("leaf is a CA certificate", reason="bad_svid")
    try:
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise SvidValidationError("leaf has no key usage", reason="bad_svid") from exc
    if not ku.digital_signature or ku.key_cert_sign or ku.crl_sign:
        raise SvidValidationError(
            "leaf key usage must have digitalSignature and not keyCertSign/cRLSign",
            reason="bad_svid",
        )
    return spiffe_id


def _load_chain(chain: Sequence[x509.Certificate] | str | bytes) -> list[x509.Certificate]:
    if isinstance(chain, (str, bytes)):
        data = chain.encode("ascii") if isinstance(chain, str) else chain
        try:
            certs = x509.load_pem_x509_certificates(data)
        except (ValueError, UnicodeError) as exc:
            raise SvidValidationError("chain is not PEM certificates", reason="malformed") from exc
    else:
        certs = list(chain)
        if not all(isinstance(c, x509.Certificate) for c in certs):
            raise SvidValidationError(
                "chain must hold x509.Certificate objects", reason="malformed"
            )
    if not certs:
        raise SvidValidationError("empty certificate chain", reason="malformed")
    return certs


def _verify_chain(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    trust_domain: TrustDomain,
    bundle: TrustBundle,
    when: dt.datetime,
) -> None:
    """Validity window of the leaf, then the chain to the bundle (client verifier)."""
    if when < leaf.not_valid_before_utc:
        raise SvidValidationError("leaf certificate is not valid yet", reason="not_yet_valid")
    if when > leaf.not_valid_after_utc:
        raise SvidValidationError("leaf certificate has expired", reason="expired")
    verifier = PolicyBuilder().store(bundle.x509_store).time(when).build_client_verifier()
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        raise SvidValidationError(
            f"chain does not verify to the bundle of {trust_domain}: {exc}",
            reason="untrusted_chain",
        ) from exc


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
    trust_domain = spiffe_id.trust_domain
    chosen = select_bundle(bundle, trust_domain.name)
    _verify_chain(leaf, intermediates, trust_domain, chosen, as_utc(now))
    if private_key is not None:
        leaf_pub = leaf.public_key()
        if not isinstance(leaf_pub, ec.EllipticCurvePublicKey) or spki_der(leaf_pub) != spki_der(
            private_key.public_key()
        ):
            raise SvidValidationError(
                "the private key does not match the leaf certificate", reason="key_mismatch"
            )
    return str(spiffe_id)
