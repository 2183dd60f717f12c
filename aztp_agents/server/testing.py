"""Helpers for tests and benchmarks: an organization with an API key, a live server process.

``live_server(home)`` starts ``python -m aztp_agents.server`` on a free loopback port as a real
process, waits until it answers ``/v1/health``, and stops it (by its PID) afterwards. Its
output goes to ``home/server.log`` (``LiveServer.log()``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..authority import Authority, Principal
from ..store import Store

__all__ = ["LiveServer", "free_port", "live_server", "make_org"]


def make_org(home: Path, name: str, trust_domain: str) -> tuple[Principal, str]:
    """Create organization ``name`` owning ``trust_domain`` in the store under ``home``;
    return its first user's principal and API key (what ``aztp-agents keys create`` does)."""
    store = Store.open_sqlite(Path(home) / "aztp.db")
    try:
        principal, key = Authority(store).create_org(name, trust_domain)
    finally:
        store.close()
    assert key is not None
    return principal, key


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server's PID, then SIGKILL it if it has not exited within ``timeout``."""
        proc = self.process
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)


@contextlib.contextmanager
def live_server(
    home: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    args: Sequence[str] = (),
    startup_timeout: float = 30.0,
    log_level: str = "warning",
) -> Iterator[LiveServer]:
    """Run ``python -m aztp_agents.server --home home`` until the block ends."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    log_path = home / "server.log"
    cmd = [sys.executable, "-m", "aztp_agents.server", "--home", str(home), "--host", host,
           "--port", str(port), "--log-level", log_level, *args]
    scheme = "https" if "--tls-cert" in args else "http"
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    prefix = ""
    if "--prefix" in args:
        prefix = "/" + args[list(args).index("--prefix") + 1].strip("/")
    server = LiveServer(f"{scheme}://{host}:{port}", proc, log_path)
    try:
        deadline = time.monotonic() + startup_timeout
        with httpx.Client(verify=False, timeout=2.0) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()}")
                try:
                    if client.get(f"{server.url}{prefix}/v1/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not answer within {startup_timeout} s:\n{server.log()}")
                time.sleep(0.05)
        yield server
    finally:
        server.stop()
