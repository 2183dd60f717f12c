"""Credentials: CA, X.509-SVIDs, JWT-SVIDs, bundles.

What we issue is checked by code nobody here wrote (py-spiffe and
``cryptography.x509.verification``), then field by field, then against attacks our own
validator must reject. Where py-spiffe accepts something it should not, a comment says so.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import stat
import time
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store
from spiffe import JwtBundle, TrustDomain, X509Bundle
from spiffe import JwtSvid as PyJwtSvid
from spiffe import X509Svid as PyX509Svid

from aztp_agents.credentials import (
    CertificateAuthority,
    JwtSvid,
    TrustBundle,
    X509Svid,
    generate_private_key,
    kid_for_public_key,
    load_private_key,
    make_csr,
    private_key_to_pem,
    validate_jwt_svid,
    validate_x509_svid,
)
from aztp_agents.errors import CredentialError, SvidValidationError

TD = "example.org"
SID = "spiffe://example.org/workload/production/node/chat-service"
AUD = "spiffe://example.org/workload/production/node/search-tool"


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.generate(TD)


@pytest.fixture(scope="module")
def other_ca() -> CertificateAuthority:
    """Another CA claiming the same trust domain (an attacker's, or a stale one)."""
    return CertificateAuthority.generate(TD)


@pytest.fixture(scope="module")
def bundle(ca: CertificateAuthority) -> TrustBundle:
    return ca.trust_bundle()


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return generate_private_key()


@pytest.fixture(scope="module")
def svid(ca: CertificateAuthority, key: ec.EllipticCurvePrivateKey) -> X509Svid:
    return ca.issue_x509_svid_from_csr(SID, make_csr(key, SID))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(obj: object) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def unb64url(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def es256(ca: CertificateAuthority, claims: dict, headers: dict | None = None) -> str:
    """A token signed by ``ca`` through PyJWT with arbitrary claims/header additions."""
    return jwt.encode(
        claims,
        ca.private_key,
        algorithm="ES256",
        headers={"kid": ca.kid, "typ": "JWT", **(headers or {})},
    )


def good_claims(**over: object) -> dict:
    now = int(time.time())
    claims = {"sub": SID, "aud": [AUD], "exp": now + 300, "iat": now}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def reason_of(fn, *args, **kwargs) -> str:
    with pytest.raises(SvidValidationError) as info:
        fn(*args, **kwargs)
    return info.value.reason


def ext(cert: x509.Certificate, cls: type) -> x509.Extension:
    return cert.extensions.get_extension_for_class(cls)


# --- keys ------------------------------------------------------------------------------


def test_key_round_trip_and_type_checks() -> None:
    k = generate_private_key()
    assert isinstance(k.curve, ec.SECP256R1)
    pem = private_key_to_pem(k)
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert load_private_key(pem).private_numbers() == k.private_numbers()
    assert load_private_key(pem.encode()).private_numbers() == k.private_numbers()
    p384 = ec.generate_private_key(ec.SECP384R1())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for other in (p384, rsa_key):
        with pytest.raises(CredentialError):
            load_private_key(private_key_to_pem(other))  # type: ignore[arg-type]
    with pytest.raises(CredentialError):
        load_private_key("not a key")


# --- CA --------------------------------------------------------------------------------


def test_ca_certificate_properties(ca: CertificateAuthority) -> None:
    cert = ca.certificate
    assert ca.trust_domain == TD
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(cert.public_key().curve, ec.SECP256R1)  # type: ignore[union-attr]
    assert cert.subject == cert.issuer
    cert.verify_directly_issued_by(cert)  # self-signed
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is True
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature
    ski = ext(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())  # type: ignore[arg-type]
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://{TD}"]
    assert cert.serial_number > 0
    assert CertificateAuthority.generate(TD).certificate.serial_number != cert.serial_number
    assert ca.certificate_pem == cert.public_bytes(serialization.Encoding.PEM).decode()
    assert f"{TD} AZTP CA" in cert.subject.rfc4514_string()
    named = CertificateAuthority.generate(TD, common_name="Acme Root", ttl_days=10)
    assert named.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "Acme Root"
    )
    life = named.certificate.not_valid_after_utc - named.certificate.not_valid_before_utc
    assert dt.timedelta(days=10) <= life <= dt.timedelta(days=10, seconds=61)


def test_ca_kid_is_stable(ca: CertificateAuthority) -> None:
    assert len(ca.kid) == 32
    assert set(ca.kid) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    spki = ca.certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert ca.kid == b64url(hashlib.sha256(spki).digest())[:32]
    assert ca.kid == kid_for_public_key(ca.public_key)
    cert_pem, key_pem = ca.to_pem()
    again = CertificateAuthority.from_pem(cert_pem, key_pem)
    assert again.kid == ca.kid and again.trust_domain == TD
    assert again.certificate == ca.certificate


def test_ca_rejects_bad_input(ca: CertificateAuthority, other_ca: CertificateAuthority) -> None:
    for td in ("", "Example.org", "exa mple.org", "a/b"):
        with pytest.raises(CredentialError):
            CertificateAuthority.generate(td)
    cert_pem, _ = ca.to_pem()
    _, other_key = other_ca.to_pem()
    with pytest.raises(CredentialError, match="does not match"):
        CertificateAuthority.from_pem(cert_pem, other_key)


def test_ca_files_modes(ca: CertificateAuthority, tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    old = os.umask(0)  # the key must be 0600 by itself, not thanks to the umask
    try:
        ca.save(directory)
    finally:
        os.umask(old)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "ca.key").stat().st_mode) == 0o600
    assert (directory / "ca.crt").read_text() == ca.certificate_pem
    assert sorted(p.name for p in directory.iterdir()) == ["ca.crt", "ca.key"]
    loaded = CertificateAuthority.load(directory)
    assert loaded.kid == ca.kid and loaded.trust_domain == TD
    assert loaded.private_key.private_numbers() == ca.private_key.private_numbers()

    # an existing, too-open directory is tightened; saving again keeps the key at 0600
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    ca.save(loose)
    ca.save(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    assert stat.S_IMODE((loose / "ca.key").stat().st_mode) == 0o600


# --- X.509-SVID issuance ---------------------------------------------------------------


def test_leaf_properties(ca: CertificateAuthority, svid: X509Svid, key) -> None:
    cert = svid.certificate
    assert svid.spiffe_id == SID
    assert svid.serial == cert.serial_number
    assert svid.not_after == cert.not_valid_after_utc
    assert svid.cert_pem == cert.public_bytes(serialization.Encoding.PEM).decode()
    assert svid.chain_pem == svid.cert_pem + ca.certificate_pem
    # exactly one SAN entry, a URI, our SPIFFE ID
    san = ext(cert, x509.SubjectAlternativeName).value
    assert list(san) == [x509.UniformResourceIdentifier(SID)]
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature
    for flag in (
        "key_cert_sign",
        "crl_sign",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
    ):
        assert getattr(ku.value, flag) is False, flag
    eku = ext(cert, x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    ca_ski = ext(ca.certificate, x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    assert cert.issuer == ca.certificate.subject
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.public_key() == key.public_key()
    # TTL: default 1 h, with 60 s of back-dating for clock skew
    now = dt.datetime.now(dt.timezone.utc)
    assert abs((cert.not_valid_after_utc - now) - dt.timedelta(hours=1)) < dt.timedelta(seconds=5)
    assert abs((now - cert.not_valid_before_utc) - dt.timedelta(seconds=60)) < dt.timedelta(
        seconds=5
    )
    assert cert.serial_number > 0 and cert.serial_number.bit_length() > 64


def test_serials_random_and_ttl(ca: CertificateAuthority, key) -> None:
    serials = {ca.issue_x509_svid(SID, key.public_key()).serial for _ in range(20)}
    assert len(serials) == 20
    short = ca.issue_x509_svid(SID, key.public_key(), ttl=120).certificate
    assert short.not_valid_after_utc - short.not_valid_before_utc == dt.timedelta(seconds=180)


def test_issue_rejects(ca: CertificateAuthority, key) -> None:
    with pytest.raises(CredentialError, match="trust domain"):
        ca.issue_x509_svid("spiffe://other.org/workload/x", key.public_key())
    for bad in ("spiffe://example.org", "https://example.org/x", "spiffe://example.org/a/../b", ""):
        with pytest.raises(CredentialError):
            ca.issue_x509_svid(bad, key.public_key())
    with pytest.raises(CredentialError):
        ca.issue_x509_svid(SID, key.public_key(), ttl=0)
    with pytest.raises(CredentialError):
        ca.issue_x509_svid(SID, ec.generate_private_key(ec.SECP384R1()).public_key())


def test_csr_asking_for_another_san_gets_ours(ca: CertificateAuthority, key) -> None:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "admin")]))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier("spiffe://example.org/admin"),
                    x509.UniformResourceIdentifier("spiffe://other.org/x"),
                    x509.DNSName("evil.example"),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    got = ca.issue_x509_svid_from_csr(SID, pem).certificate
    assert list(ext(got, x509.SubjectAlternativeName).value) == [
        x509.UniformResourceIdentifier(SID)
    ]
    assert ext(got, x509.BasicConstraints).value.ca is False
    assert "admin" not in got.subject.rfc4514_string()


def test_csr_with_bad_signature_rejected(ca: CertificateAuthority, key) -> None:
    der = bytearray(
        x509.load_pem_x509_csr(make_csr(key, SID).encode()).public_bytes(serialization.Encoding.DER)
    )
    der[-3] ^= 0x01  # inside the ECDSA signature value
    pem = (
        "-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(bytes(der)).decode()
        + "-----END CERTIFICATE REQUEST-----\n"
    )
    assert not x509.load_pem_x509_csr(pem.encode()).is_signature_valid
    with pytest.raises(CredentialError, match="signature"):
        ca.issue_x509_svid_from_csr(SID, pem)


def test_csr_key_type_and_garbage_rejected(ca: CertificateAuthority) -> None:
    for k in (
        ec.generate_private_key(ec.SECP384R1()),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ):
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .sign(k, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
            .decode()
        )
        with pytest.raises(CredentialError, match="P-256"):
            ca.issue_x509_svid_from_csr(SID, csr)
    with pytest.raises(CredentialError):
        ca.issue_x509_svid_from_csr(SID, "not a csr")


# --- X.509-SVID checked by others ------------------------------------------------------


def test_x509_svid_accepted_by_py_spiffe(ca: CertificateAuthority, svid: X509Svid, key) -> None:
    parsed = PyX509Svid.parse(svid.chain_pem.encode(), private_key_to_pem(key).encode())
    assert str(parsed.spiffe_id) == SID
    assert parsed.leaf == svid.certificate
    assert parsed.cert_chain[1] == ca.certificate
    xb = X509Bundle.parse(TrustDomain(TD), ca.certificate_pem.encode())
    assert xb.x509_authorities == {ca.certificate}


def test_x509_svid_chain_verified_by_cryptography(ca: CertificateAuthority, svid: X509Svid) -> None:
    verifier = (
        PolicyBuilder()
        .store(Store([ca.certificate]))
        .time(dt.datetime.now(dt.timezone.utc))
        .build_client_verifier()
    )
    verified = verifier.verify(svid.certificate, [])
    assert verified.chain == [svid.certificate, ca.certificate]
    assert verified.subjects == [x509.UniformResourceIdentifier(SID)]


# --- X.509-SVID validation -------------------------------------------------------------


def test_validate_x509_svid_ok(bundle: TrustBundle, svid: X509Svid, key) -> None:
    assert validate_x509_svid(svid.chain_pem, bundle) == SID
    assert validate_x509_svid(svid.cert_pem, bundle, private_key=key) == SID
    assert validate_x509_svid([svid.certificate], {TD: bundle}) == SID


def test_validate_x509_leaf_from_another_ca(
    bundle: TrustBundle, other_ca: CertificateAuthority, key
) -> None:
    foreign = other_ca.issue_x509_svid(SID, key.public_key())
    # py-spiffe's X509Svid.parse accepts this (it never checks signatures: no chain
    # verification API at all in 0.3.2), our validator must not.
    PyX509Svid.parse(foreign.chain_pem.encode(), private_key_to_pem(key).encode())
    assert reason_of(validate_x509_svid, foreign.chain_pem, bundle) == "untrusted_chain"
    assert reason_of(validate_x509_svid, foreign.cert_pem, bundle) == "untrusted_chain"


def test_validate_x509_key_mismatch(bundle: TrustBundle, svid: X509Svid) -> None:
    wrong = generate_private_key()
    # py-spiffe pairs any private key with any leaf without complaint.
    PyX509Svid.parse(svid.chain_pem.encode(), private_key_to_pem(wrong).encode())
    assert (
        reason_of(validate_x509_svid, svid.chain_pem, bundle, private_key=wrong) == "key_mismatch"
    )


def test_validate_x509_time(bundle: TrustBundle, svid: X509Svid) -> None:
    later = svid.not_after + dt.timedelta(seconds=1)
    # py-spiffe's parse has no notion of time; an expired SVID parses fine.
    assert reason_of(validate_x509_svid, svid.chain_pem, bundle, now=later) == "expired"
    earlier = svid.certificate.not_valid_before_utc - dt.timedelta(seconds=1)
    assert reason_of(validate_x509_svid, svid.chain_pem, bundle, now=earlier) == "not_yet_valid"


def test_validate_x509_wrong_trust_domain(svid: X509Svid) -> None:
    other = CertificateAuthority.generate("other.org").trust_bundle()
    assert reason_of(validate_x509_svid, svid.chain_pem, other) == "untrusted_chain"
    assert reason_of(validate_x509_svid, svid.chain_pem, {"other.org": other}) == "untrusted_chain"


def _hand_made_leaf(ca: CertificateAuthority, sans: list[str], *, ca_flag=False, ku_sign=False):
    k = generate_private_key()
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x")]))
        .issuer_name(ca.certificate.subject)
        .public_key(k.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca_flag, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, ku_sign, ku_sign, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in sans]),
            critical=False,
        )
    return builder.sign(ca.private_key, hashes.SHA256())


def test_validate_x509_spiffe_leaf_rules(ca: CertificateAuthority, bundle: TrustBundle) -> None:
    assert validate_x509_svid([_hand_made_leaf(ca, [SID])], bundle) == SID
    for leaf in (
        _hand_made_leaf(ca, [SID, "spiffe://example.org/two"]),
        _hand_made_leaf(ca, []),
        _hand_made_leaf(ca, ["https://example.org/x"]),
        _hand_made_leaf(ca, [f"spiffe://{TD}"]),
        _hand_made_leaf(ca, [SID], ca_flag=True),
        _hand_made_leaf(ca, [SID], ku_sign=True),
    ):
        assert reason_of(validate_x509_svid, [leaf], bundle) == "bad_svid"
    # the CA certificate itself is not an SVID
    assert reason_of(validate_x509_svid, [ca.certificate], bundle) == "bad_svid"


def test_validate_x509_malformed(bundle: TrustBundle) -> None:
    assert reason_of(validate_x509_svid, "", bundle) == "malformed"
    assert reason_of(validate_x509_svid, [], bundle) == "malformed"
    assert reason_of(validate_x509_svid, "-----BEGIN CERTIFICATE-----\nAAAA\n", bundle) == (
        "malformed"
    )


# --- JWT-SVID minting ------------------------------------------------------------------


def test_jwt_header_and_claims_exact(ca: CertificateAuthority) -> None:
    token = ca.mint_jwt_svid(SID, AUD)
    h64, p64, s64 = token.split(".")
    header = json.loads(unb64url(h64))
    assert header == {"alg": "ES256", "kid": ca.kid, "typ": "JWT"}
    claims = json.loads(unb64url(p64))
    assert set(claims) == {"sub", "aud", "exp", "iat"}
    assert claims["sub"] == SID
    assert claims["aud"] == [AUD]
    assert claims["exp"] - claims["iat"] == 300
    assert abs(claims["iat"] - time.time()) < 5
    assert len(unb64url(s64)) == 64  # raw r||s, not DER
    multi = json.loads(unb64url(ca.mint_jwt_svid(SID, [AUD, "b"], ttl=60).split(".")[1]))
    assert multi["aud"] == [AUD, "b"] and multi["exp"] - multi["iat"] == 60


def test_jwt_mint_rejects(ca: CertificateAuthority) -> None:
    for bad_sub in ("spiffe://other.org/x", "spiffe://example.org", "nope"):
        with pytest.raises(CredentialError):
            ca.mint_jwt_svid(bad_sub, AUD)
    for bad_aud in ("", [], [""]):
        with pytest.raises(CredentialError):
            ca.mint_jwt_svid(SID, bad_aud)
    with pytest.raises(CredentialError):
        ca.mint_jwt_svid(SID, AUD, ttl=0)


def test_jwt_svid_accepted_by_py_spiffe(ca: CertificateAuthority, bundle: TrustBundle) -> None:
    jwks = bundle.to_jwks()
    # py-spiffe's JwtBundle.parse cannot read a full SPIFFE bundle: it demands a kid on every
    # key, including the x509-svid entries (which carry none), so it gets the jwt-svid subset.
    jwt_only = {"keys": [k for k in jwks["keys"] if k["use"] == "jwt-svid"]}
    jb = JwtBundle.parse(TrustDomain(TD), json.dumps(jwt_only).encode())
    assert set(jb.jwt_authorities) == {ca.kid}
    token = ca.mint_jwt_svid(SID, AUD)
    parsed = PyJwtSvid.parse_and_validate(token, jb, {AUD})
    assert str(parsed.spiffe_id) == SID
    assert parsed.audience == {AUD}
    ours = validate_jwt_svid(token, bundle, AUD)
    assert isinstance(ours, JwtSvid)
    assert ours.spiffe_id == SID and ours.audience == [AUD] and ours.token == token
    assert ours.expiry == dt.datetime.fromtimestamp(parsed.expiry, dt.timezone.utc)
    assert ours.issued_at is not None and ours.expiry - ours.issued_at == dt.timedelta(minutes=5)
    # also with a bundle map, and with a token for several audiences
    assert validate_jwt_svid(ca.mint_jwt_svid(SID, ["a", AUD]), {TD: bundle}, AUD).spiffe_id == SID


# --- JWT-SVID rejections ---------------------------------------------------------------


def test_jwt_tampered_payload(ca: CertificateAuthority, bundle: TrustBundle) -> None:
    h, _p, s = ca.mint_jwt_svid(SID, AUD).split(".")
    forged = good_claims(sub="spiffe://example.org/workload/production/node/admin")
    assert reason_of(validate_jwt_svid, f"{h}.{b64url_json(forged)}.{s}", bundle, AUD) == (
        "bad_signature"
    )


def test_jwt_tampered_signature(ca: CertificateAuthority, bundle: TrustBundle) -> None:
    h, p, s = ca.mint_jwt_svid(SID, AUD).split(".")
    sig = bytearray(unb64url(s))
    sig[10] ^= 0xFF
    assert reason_of(validate_jwt_svid, f"{h}.{p}.{b64url(bytes(sig))}", bundle, AUD) == (
        "bad_signature"
    )
    assert reason_of(validate_jwt_svid, f"{h}.{p}.{b64url(bytes(sig[:63]))}", bundle, AUD) == (
        "bad_signature"
    )
    # a DER-encoded signature instead of raw r||s is not ES256
    der = ca.private_key.sign(f"{h}.{p}".encode(), ec.ECDSA(hashes.SHA256()))
    assert reason_of(validate_jwt_svid, f"{h}.{p}.{b64url(der)}", bundle, AUD) == "bad_signature"


def test_jwt_wrong_audience(ca: CertificateAuthority, bundle: TrustBundle) -> None:
    token = ca.mint_jwt_svid(SID, AUD)
    assert reason_of(validate_jwt_svid, token, bundle, "spiffe://example.org/other") == (
        "wrong_audience"
    )


def test_jwt_expired(ca: CertificateAuthority, bundle: TrustBundle) -> None:
    token = ca.mint_jwt_svid(SID, AUD, ttl=60)
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=61)
    assert reason_of(validate_jwt_svid, token, bundle, AUD, now=later) == "expired"
    assert validate_jwt_svid(token, bundle, AUD, now=later, leeway=30).spiffe_id == SID
    old = es256(ca, good_claims(exp=int(time.time()) - 1))
    assert reason_of(validate_jwt_svid, old, bundle, AUD) == "expired"
    future = es256(ca, good_claims(nbf=int(time.time()) + 600))
    assert reason_of(validate_jwt_svid, future, bundle, AUD) == "not_yet_valid"


def test_jwt_alg_none(ca: CertificateAuthority, bundle: TrustBundle) -> None:
    payload = b64url_json(good_claims())
    for alg in ("none", "None", "NONE"):
        header = b64url_json({"alg": alg, "kid": ca.kid, "typ": "JWT"})
        for sig in ("", "AAAA"):
            assert reason_of(validate_jwt_svid, f"{header}.{payload}.{sig}", bundle, AUD) == (
                "bad_alg"
            )


def test_jwt_hs256_and_other_algs(ca: CertificateAuthority, bundle: TrustBundle) -> None:
    payload = b64url_json(good_claims())
    # The classic confusion attack: HS256 keyed with the CA's *public* key. PyJWT itself
    # refuses to make such a token, so it is made by hand.
    secrets = [
        ca.certificate_pem.encode(),
        ca.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        b"secret",
    ]
    for alg, digest in (("HS256", hashlib.sha256), ("HS384", hashlib.sha384)):
        header = b64url_json({"alg": alg, "kid": ca.kid, "typ": "JWT"})
        for secret in secrets:
            mac = hmac.new(secret, f"{header}.{payload}".encode(), digest).digest()
            token = f"{header}.{payload}.{b64url(mac)}"
            assert reason_of(validate_jwt_svid, token, bundle, AUD) == "bad_alg"
    for alg in ("RS256", "ES384", "PS256", "EdDSA", "es256", None, 256):
        header = b64url_json({"alg": alg, "kid": ca.kid, "typ": "JWT"})
        s = ca.mint_jwt_svid(SID, AUD).split(".")[2]
        assert reason_of(validate_jwt_svid, f"{header}.{payload}.{s}", bundle, AUD) == "bad_alg"
    no_alg = b64url_json({"kid": ca.kid, "typ": "JWT"})
    assert reason_of(validate_jwt_svid, f"{no_alg}.{payload}.{s}", bundle, AUD) == "bad_alg"


def test_jwt_unknown_or_missing_kid(
    ca: CertificateAuthority, other_ca: CertificateAuthority, bundle: TrustBundle
) -> None:
    foreign = other_ca.mint_jwt_svid(SID, AUD)  # same trust domain, key not in our bundle
    assert reason_of(validate_jwt_svid, foreign, bundle, AUD) == "unknown_kid"
    # signed by the other key but claiming our kid
    forged_kid = jwt.encode(
        good_claims(), other_ca.private_key, algorithm="ES256", headers={"kid": ca.kid}
    )
    assert reason_of(validate_jwt_svid, forged_kid, bundle, AUD) == "bad_signature"
    no_kid = jwt.encode(good_claims(), ca.private_key, algorithm="ES256")
    assert reason_of(validate_jwt_svid, no_kid, bundle, AUD) == "bad_header"
    empty_kid = es256(ca, good_claims(), {"kid": ""})
    assert reason_of(validate_jwt_svid, empty_kid, bundle, AUD) == "bad_header"


def test_jwt_header_fields(ca: CertificateAuthority, bundle: TrustBundle) -> None:
    jb = JwtBundle(TrustDomain(TD), {ca.kid: ca.public_key})
    # typ is optional; JOSE is allowed
    assert validate_jwt_svid(es256(ca, good_claims(), {"typ": None}), bundle, AUD)
    assert validate_jwt_svid(es256(ca, good_claims(), {"typ": "JOSE"}), bundle, AUD)
    assert (
        reason_of(validate_jwt_svid, es256(ca, good_claims(), {"typ": "at+jwt"}), bundle, AUD)
        == "bad_header"
    )
    for extra in ({"jku": "https://evil.example/jwks"}, {"x5u": "https://e/x"}, {"cty": "JWT"}):
        token = es256(ca, good_claims(), extra)
        # py-spiffe accepts extra header parameters (JWT-SVID allows only alg, kid, typ).
        assert str(PyJwtSvid.parse_and_validate(token, jb, {AUD}).spiffe_id) == SID
        assert reason_of(validate_jwt_svid, token, bundle, AUD) == "bad_header"


def test_jwt_claim_rules(ca: CertificateAuthority, bundle: TrustBundle) -> None:
    jb = JwtBundle(TrustDomain(TD), {ca.kid: ca.public_key})
    root_sub = es256(ca, good_claims(sub=f"spiffe://{TD}"))
    # py-spiffe accepts a JWT-SVID whose sub is the bare trust domain (no path).
    assert str(PyJwtSvid.parse_and_validate(root_sub, jb, {AUD}).spiffe_id) == f"spiffe://{TD}"
    assert reason_of(validate_jwt_svid, root_sub, bundle, AUD) == "malformed"
    no_exp = es256(ca, good_claims(exp=None))
    # py-spiffe rejects this, but with a bare KeyError rather than one of its own errors.
    with pytest.raises(KeyError):
        PyJwtSvid.parse_and_validate(no_exp, jb, {AUD})
    assert reason_of(validate_jwt_svid, no_exp, bundle, AUD) == "malformed"
    cases = [
        good_claims(sub=None),
        good_claims(aud=None),
        good_claims(aud=[]),
        good_claims(aud=[1]),
        good_claims(sub="https://example.org/x"),
        good_claims(sub="spiffe://Example.org/x"),
        good_claims(sub=42),
        good_claims(exp="tomorrow"),
        good_claims(exp=True),
        good_claims(iat="now"),
    ]
    for claims in cases:
        assert reason_of(validate_jwt_svid, es256(ca, claims), bundle, AUD) == "malformed", claims
    # aud as a single string is valid JWT
    assert validate_jwt_svid(es256(ca, good_claims(aud=AUD)), bundle, AUD).audience == [AUD]


def test_jwt_trust_domain_selection(ca: CertificateAuthority, bundle: TrustBundle) -> None:
    other = CertificateAuthority.generate("other.org")
    other_sid = "spiffe://other.org/workload/x"
    token_other = other.mint_jwt_svid(other_sid, AUD)
    bundles = {TD: bundle, "other.org": other.trust_bundle()}
    assert validate_jwt_svid(token_other, bundles, AUD).spiffe_id == other_sid
    assert validate_jwt_svid(ca.mint_jwt_svid(SID, AUD), bundles, AUD).spiffe_id == SID
    # our bundle alone does not trust other.org, a map without it neither
    assert reason_of(validate_jwt_svid, token_other, bundle, AUD) == "untrusted_chain"
    assert reason_of(validate_jwt_svid, token_other, {TD: bundle}, AUD) == "untrusted_chain"
    # other.org's key signing a sub of example.org: example.org's bundle has no such kid
    cross = jwt.encode(
        good_claims(), other.private_key, algorithm="ES256", headers={"kid": other.kid}
    )
    assert reason_of(validate_jwt_svid, cross, bundles, AUD) == "unknown_kid"
    # a map entry filed under the wrong name is not trusted for the sub's domain
    assert reason_of(validate_jwt_svid, token_other, {"other.org": bundle}, AUD) == (
        "untrusted_chain"
    )


def test_jwt_malformed(ca: CertificateAuthority, bundle: TrustBundle) -> None:
    token = ca.mint_jwt_svid(SID, AUD)
    h, p, s = token.split(".")
    for bad in (
        "",
        "abc",
        "a.b",
        f"{token}.x",
        f"{h}.{p}",
        f"{h}=.{p}.{s}",
        f"{h}.{p}.{s}=",
        f"{h}.{p}!.{s}",
        f"{h}.{b64url(b'not json')}.{s}",
        f"{b64url(b'[]')}.{p}.{s}",
        "x" * 20000,
    ):
        with pytest.raises(SvidValidationError) as info:
            validate_jwt_svid(bad, bundle, AUD)
        assert info.value.reason in {"malformed", "bad_header", "bad_signature"}, bad[:40]
    assert reason_of(validate_jwt_svid, f"{h}.{b64url(b'[1]')}.{s}", bundle, AUD) == "malformed"
    assert reason_of(validate_jwt_svid, f"{h}.{p}.{s}x", bundle, AUD) in {
        "malformed",
        "bad_signature",
    }


# --- bundles ---------------------------------------------------------------------------


def test_bundle_jwks_format_and_round_trip(ca: CertificateAuthority) -> None:
    b = TrustBundle.from_authorities(TD, [ca], sequence=7, refresh_hint=60)
    doc = b.to_jwks()
    assert doc["spiffe_sequence"] == 7 and doc["spiffe_refresh_hint"] == 60
    x509_entry, jwt_entry = doc["keys"]
    assert set(x509_entry) == {"use", "kty", "crv", "x", "y", "x5c"}
    assert x509_entry["use"] == "x509-svid" and x509_entry["kty"] == "EC"
    assert x509_entry["crv"] == "P-256"
    der = base64.b64decode(x509_entry["x5c"][0])
    assert x509.load_der_x509_certificate(der) == ca.certificate
    assert set(jwt_entry) == {"use", "kty", "crv", "x", "y", "kid"}
    assert jwt_entry["use"] == "jwt-svid" and jwt_entry["kid"] == ca.kid
    nums = ca.public_key.public_numbers()
    assert int.from_bytes(unb64url(jwt_entry["x"]), "big") == nums.x
    assert len(unb64url(jwt_entry["x"])) == 32 and len(unb64url(jwt_entry["y"])) == 32
    json.dumps(doc)  # JSON-serializable

    back = TrustBundle.from_jwks(TD, json.loads(json.dumps(doc)))
    assert back.to_jwks() == doc
    assert back.sequence == 7 and back.refresh_hint == 60
    assert back.x509_authorities == [ca.certificate]
    assert back.jwt_key(ca.kid) == ca.public_key
    assert back.jwt_key("nope") is None
    # a bundle built from a bare certificate is the same
    assert TrustBundle.from_authorities(TD, [ca.certificate], 7, 60).to_jwks() == doc
    # the parsed bundle validates what the CA issues
    assert validate_jwt_svid(ca.mint_jwt_svid(SID, AUD), back, AUD).spiffe_id == SID
    k = generate_private_key()
    assert validate_x509_svid(ca.issue_x509_svid(SID, k.public_key()).chain_pem, back) == SID


def test_bundle_parsed_by_py_spiffe(ca: CertificateAuthority, bundle: TrustBundle) -> None:
    doc = bundle.to_jwks()
    x509_der = b"".join(base64.b64decode(k["x5c"][0]) for k in doc["keys"] if "x5c" in k)
    xb = X509Bundle.parse_raw(TrustDomain(TD), x509_der)
    assert xb.x509_authorities == {ca.certificate}
    jwt_only = {"keys": [k for k in doc["keys"] if k["use"] == "jwt-svid"]}
    jb = JwtBundle.parse(TrustDomain(TD), json.dumps(jwt_only).encode())
    assert jb.get_jwt_authority(ca.kid) == ca.public_key


def test_bundle_from_jwks_rejects_malformed(ca: CertificateAuthority) -> None:
    good = ca.trust_bundle().to_jwks()

    def mutate(fn) -> dict:
        doc = json.loads(json.dumps(good))
        fn(doc)
        return doc

    other_cert = CertificateAuthority.generate(TD).certificate
    bad_docs = [
        {},
        {"keys": {}},
        [],
        mutate(lambda d: d.update(spiffe_sequence=-1)),
        mutate(lambda d: d.update(spiffe_sequence=True)),
        mutate(lambda d: d.update(spiffe_refresh_hint="300")),
        mutate(lambda d: d["keys"].append("x")),
        mutate(lambda d: d["keys"][1].update(crv="P-384")),
        mutate(lambda d: d["keys"][1].update(kty="RSA")),
        mutate(lambda d: d["keys"][1].update(x=d["keys"][1]["x"][:-2])),
        mutate(lambda d: d["keys"][1].update(x=b64url(b"\x01" * 32))),  # not on the curve
        mutate(lambda d: d["keys"][1].pop("y")),
        mutate(lambda d: d["keys"][1].pop("kid")),
        mutate(lambda d: d["keys"][1].update(kid="")),
        mutate(lambda d: d["keys"].append(dict(d["keys"][1]))),  # duplicate kid
        mutate(lambda d: d["keys"][0].pop("x5c")),
        mutate(lambda d: d["keys"][0].update(x5c=[])),
        mutate(lambda d: d["keys"][0].update(x5c=["!!notbase64"])),
        mutate(lambda d: d["keys"][0].update(x5c=[base64.b64encode(b"junk").decode()])),
        mutate(  # certificate that does not hold the entry's key
            lambda d: d["keys"][0].update(
                x5c=[base64.b64encode(other_cert.public_bytes(serialization.Encoding.DER)).decode()]
            )
        ),
    ]
    for doc in bad_docs:
        with pytest.raises(CredentialError):
            TrustBundle.from_jwks(TD, doc)  # type: ignore[arg-type]
    # entries with an unknown use are ignored, per the SPIFFE bundle spec
    extra = mutate(lambda d: d["keys"].append({"use": "other", "kty": "oct", "k": "AA"}))
    assert TrustBundle.from_jwks(TD, extra).to_jwks() == good
    with pytest.raises(CredentialError):
        TrustBundle.from_jwks("Not A Domain", good)


def test_bundle_from_authorities_trust_domain_mismatch(ca: CertificateAuthority) -> None:
    with pytest.raises(CredentialError):
        TrustBundle.from_authorities("other.org", [ca])
    empty = TrustBundle(TD)
    assert empty.to_jwks() == {"keys": [], "spiffe_sequence": 1, "spiffe_refresh_hint": 300}
    k = generate_private_key()
    assert (
        reason_of(validate_x509_svid, ca.issue_x509_svid(SID, k.public_key()).chain_pem, empty)
        == "untrusted_chain"
    )


def test_jwt_numeric_dates_must_be_sane(ca: CertificateAuthority, bundle: TrustBundle) -> None:
    h = b64url_json({"alg": "ES256", "kid": ca.kid, "typ": "JWT"})
    for exp in ("NaN", "Infinity", "-Infinity", "1e300", "-5"):
        body = f'{{"sub":"{SID}","aud":["{AUD}"],"exp":{exp},"iat":1}}'.encode()
        p = b64url(body)
        raw = ca.private_key.sign(f"{h}.{p}".encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(raw)
        token = f"{h}.{p}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
        assert reason_of(validate_jwt_svid, token, bundle, AUD) == "malformed", exp
    huge_nbf = es256(ca, good_claims(nbf=10**20))
    assert reason_of(validate_jwt_svid, huge_nbf, bundle, AUD) == "malformed"


def test_naive_now_is_utc(ca: CertificateAuthority, bundle: TrustBundle, svid: X509Svid) -> None:
    naive = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    assert validate_x509_svid(svid.chain_pem, bundle, now=naive) == SID
    token = ca.mint_jwt_svid(SID, AUD, ttl=60)
    assert validate_jwt_svid(token, bundle, AUD, now=naive).spiffe_id == SID
    later = naive + dt.timedelta(seconds=61)
    assert reason_of(validate_jwt_svid, token, bundle, AUD, now=later) == "expired"


def test_leaf_never_outlives_ca(key) -> None:
    short = CertificateAuthority.generate(TD, ttl_days=1)
    leaf = short.issue_x509_svid(SID, key.public_key(), ttl=10 * 86400)
    assert leaf.not_after == short.certificate.not_valid_after_utc
