"""Fixtures of the command-line tests: ``run`` (the CLI on a temporary home), ``crew``
(two linked identities in flow ``prod``) and ``served`` (a real ``aztp-agents serve`` process)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aztp_agents.server.testing import free_port
from tests.support.cli import SCRIPT, Run, close_embedded, script


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Run]:
    for var in ("AZTP_HOME", "AZTP_URL", "AZTP_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    yield Run(home)
    close_embedded(home)


@pytest.fixture
def crew(run: Run) -> dict[str, str]:
    """Two identities in flow ``prod`` (public), linked."""
    agent = run.json("identity", "issue", "researcher")["aztpId"]
    tool = run.json("identity", "issue", "tool-search")["aztpId"]
    flow = run.json("flow", "create", "prod", "--public", "--tag", "demo")["_id"]
    run("flow", "add", "prod", "researcher")
    run("flow", "add", flow, tool)
    run("link", agent, tool)
    return {"agent": agent, "tool": tool, "flow": flow}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """A real ``aztp-agents serve`` process on a free port, and an API key for it."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    if not SCRIPT.exists():
        pytest.skip("the aztp-agents script is not installed in this environment")
    import httpx

    home = tmp_path / "server-home"
    created = script("keys", "create", "--json", home=home)
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["api_key"]
    port = free_port()
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZTP_")}
    proc = subprocess.Popen(
        [str(SCRIPT), "--home", str(home), "serve", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        yield url, key, home
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        log.close()
