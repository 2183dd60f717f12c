"""The one live-server harness, for tests, examples and benchmarks.

``live_server(home)`` starts ``python -m aztp_agents.server --home home`` on a free loopback
port as a real process and returns once it answers ``/v1/health``; it is stopped (by its PID)
when its ``with`` block ends, or by ``stop()``/``kill()`` for fixtures that manage it. The
server's output goes to ``home/server.log`` (``LiveServer.log()``). ``serving(app)`` runs an application built here (over an authority
configured in ways the command line does not offer) in a thread of this process, on the same
terms. ``make_org`` creates an organization and its API key in a home's store.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from ..authority import Authority, Principal
from ..store import Store

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["LiveServer", "free_port", "live_server", "make_org", "serving"]


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
    """A server process: ``url`` is its origin, ``base_url`` adds its route prefix. As a
    context manager it stops the server when the block ends."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    prefix: str = ""

    @property
    def base_url(self) -> str:
        return self.url + self.prefix

    @property
    def pid(self) -> int:
        return self.process.pid

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server's PID, then SIGKILL it if it has not exited within ``timeout``."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(timeout)

    def kill(self, timeout: float = 10.0) -> None:
        """Stop the server abruptly: SIGKILL its PID (as a crash would)."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=timeout)


def _wait_until_healthy(
    health_url: str, exited: Callable[[], str | None], timeout: float, describe: Callable[[], str]
) -> None:
    """Poll ``health_url`` until it answers 200. ``exited`` says why the server is gone (or
    ``None`` while it runs); ``describe`` gives its output for the error message."""
    deadline = time.monotonic() + timeout
    # verify=False: this only asks whether the server is up, also when it has a test certificate
    with httpx.Client(verify=False, timeout=2.0) as client:
        while True:
            gone = exited()
            if gone is not None:
                raise RuntimeError(f"{gone}:\n{describe()}")
            with contextlib.suppress(httpx.TransportError):
                if client.get(health_url).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not answer within {timeout} s:\n{describe()}")
            time.sleep(0.05)


def _option(args: Sequence[str], name: str) -> str | None:
    """The value of ``--name VALUE`` in ``args``, if given."""
    args = list(args)
    return args[args.index(name) + 1] if name in args[:-1] else None


def live_server(
    home: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    args: Sequence[str] = (),
    startup_timeout: float = 30.0,
    log_level: str = "warning",
) -> LiveServer:
    """Start ``python -m aztp_agents.server --home home`` and return it once it answers.

    ``args`` are further options of the command (``--tls-cert F --tls-key F``, ``--prefix P``,
    ``--access-log``, ...). Use it as ``with live_server(home) as server:`` to stop it when the
    block ends, or call ``stop()`` (or ``kill()``) yourself.
    """
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    log_path = home / "server.log"
    cmd = [
        sys.executable, "-m", "aztp_agents.server", "--home", str(home), "--host", host,
        "--port", str(port), "--log-level", log_level, *args,
    ]  # fmt: skip
    # unbuffered: the log shows why a server that died at start-up died
    env = {**os.environ, "AZTP_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    prefix = _option(args, "--prefix")
    prefix = "/" + prefix.strip("/") if prefix and prefix.strip("/") else ""
    scheme = "https" if "--tls-cert" in args else "http"
    server = LiveServer(f"{scheme}://{host}:{port}", proc, log_path, prefix)

    def exited() -> str | None:
        code = proc.poll()
        return None if code is None else f"server exited with {code}"

    try:
        _wait_until_healthy(f"{server.base_url}/v1/health", exited, startup_timeout, server.log)
    except BaseException:
        server.stop()
        raise
    return server


@contextlib.contextmanager
def serving(
    app: FastAPI, *, host: str = "127.0.0.1", startup_timeout: float = 20.0
) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread of this process until the block ends; yields
    its URL. For apps over an authority the command line cannot configure (test limits)."""
    import uvicorn

    port = free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="aztp-test-server", daemon=True)
    thread.start()
    url = f"http://{host}:{port}"

    def exited() -> str | None:
        return None if thread.is_alive() else "the server thread ended"

    try:
        _wait_until_healthy(f"{url}/v1/health", exited, startup_timeout, lambda: "")
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
