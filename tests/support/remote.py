"""Helpers for the remote tests (no tests here): run a real ``aztp-agents`` server as a subprocess.

``start_server(home)`` makes the home, the organization ``acme`` (trust domain ``acme.test``)
and its API key before launch, starts ``python -m aztp_agents.server --home DIR --host
127.0.0.1 --port N`` on a free port and waits until it answers. ``new_org`` adds another
organization (and key) to the running server's store; the server accepts the key at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_org(home: Path, name: str, trust_domain: str) -> str:
    """A new organization in ``home``'s store; returns its API key."""
    from aztp_agents.authority import Authority
    from aztp_agents.store import Store

    store = Store.open_sqlite(home / "aztp.db")
    try:
        _principal, key = Authority(store).create_org(name, trust_domain)
    finally:
        store.close()
    assert key is not None
    return key


@dataclass
class Server:
    home: Path
    url: str
    key: str
    proc: subprocess.Popen[bytes]
    log: Path
    orgs: dict[str, str] = field(default_factory=dict)

    def org(self, name: str, trust_domain: str) -> str:
        """API key of organization ``name`` (made on first use)."""
        if name not in self.orgs:
            self.orgs[name] = new_org(self.home, name, trust_domain)
        return self.orgs[name]

    def kill(self) -> None:
        """Stop the server abruptly (SIGKILL) by its PID."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) by its PID."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-4000:]
        return ""


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
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "server.pem", directory / "server.key", directory / "ca.pem"
    paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return paths


def start_server(home: Path, *, timeout: float = 30.0, tls: tuple[Path, Path, Path] | None = None,
                 prefix: str = "") -> Server:
    """Start a server on ``home``; with ``tls`` = (cert, key, ca) it speaks HTTPS only."""
    home.mkdir(parents=True, exist_ok=True)
    key = new_org(home, "acme", "acme.test")
    port = free_port()
    log = home / "server.log"
    env = {**os.environ, "AZTP_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "aztp_agents.server", "--home", str(home), "--host", "127.0.0.1", "--port", str(port)]
    if tls is not None:
        argv += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    if prefix:
        argv += ["--prefix", prefix]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    scheme = "https" if tls is not None else "http"
    server = Server(home, f"{scheme}://127.0.0.1:{port}{prefix}", key, proc, log, {"acme": key})
    verify: bool | str = str(tls[2]) if tls is not None else True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{server.output()}")
        try:
            r = httpx.get(f"{server.url}/v1/health", headers={"api_access_key": key}, timeout=1.0,
                          verify=_context(verify))
            if r.status_code < 500:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    server.kill()
    raise RuntimeError(f"the server did not answer within {timeout} s:\n{server.output()}")


def _context(verify: bool | str) -> bool | ssl.SSLContext:
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
