"""Helpers for the remote tests (no tests here): a real ``aztp-agents`` server process.

``start_server(home)`` makes the home, the organization ``acme`` (trust domain ``acme.test``)
and its API key before launch, then starts the server through the one live-server harness
(:func:`aztp_agents.server.testing.live_server`). ``Server.org`` adds another
organization (and key) to the running server's store; the server accepts the key at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aztp_agents.server.testing import LiveServer, live_server, make_org


def new_org(home: Path, name: str, trust_domain: str) -> str:
    """A new organization in ``home``'s store; returns its API key."""
    return make_org(home, name, trust_domain)[1]


@dataclass
class Server:
    home: Path
    live: LiveServer
    key: str
    orgs: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The base URL clients are given (with the route prefix, if any)."""
        return self.live.base_url

    def org(self, name: str, trust_domain: str) -> str:
        """API key of organization ``name`` (made on first use)."""
        if name not in self.orgs:
            self.orgs[name] = new_org(self.home, name, trust_domain)
        return self.orgs[name]

    def kill(self) -> None:
        """Stop the server abruptly (SIGKILL) by its PID."""
        self.live.kill()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) by its PID."""
        self.live.stop()

    def output(self) -> str:
        return self.live.log()[-4000:]


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1 signed by it: (cert, key, ca) files."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aztp test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "server.pem", directory / "server.key", directory / "ca.pem"
    paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths[2].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return paths


def start_server(
    home: Path,
    *,
    timeout: float = 30.0,
    tls: tuple[Path, Path, Path] | None = None,
    prefix: str = "",
) -> Server:
    """Start a server on ``home``; with ``tls`` = (cert, key, ca) it speaks HTTPS only."""
    home.mkdir(parents=True, exist_ok=True)
    key = new_org(home, "acme", "acme.test")
    args: list[str] = []
    if tls is not None:
        args += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    if prefix:
        args += ["--prefix", prefix]
    live = live_server(home, args=args, startup_timeout=timeout, log_level="info")
    return Server(home, live, key, {"acme": key})
