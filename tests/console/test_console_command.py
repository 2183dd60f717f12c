"""``aztp-agents console``: the embedded store's console on 127.0.0.1 with a one-time
sign-in link (a real process; stopped by its PID)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aztp_agents import Aztp
from aztp_agents.guard import Guard


@pytest.fixture
def console_link(tmp_path: Path) -> Iterator[str]:
    home = tmp_path / "home"
    client = Aztp(home=home, trust_domain="astha.ai")
    guard = Guard("ops", client)
    enrolled = guard.enroll("analyst", ["lookup"])
    assert guard.check(enrolled.agent_id, enrolled.tools["lookup"], "lookup").allowed
    client.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "aztp_agents.cli", "--home", str(home), "console"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        found = re.search(r"open (http://127\.0\.0\.1:\d+/console/login/token\?token=\S+)", first)
        assert found, first + (proc.stdout.read() if proc.poll() is not None else "")
        yield found.group(1)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _get(url: str, **kwargs: object) -> httpx.Response:
    """GET, retrying while the server is still starting (it prints the link first)."""
    for _ in range(200):
        try:
            return httpx.get(url, follow_redirects=False, timeout=10, **kwargs)  # type: ignore[arg-type]
        except httpx.ConnectError:
            time.sleep(0.05)
    raise AssertionError(f"{url} never answered")


def test_the_one_time_link_signs_in_once(console_link: str) -> None:
    first = _get(console_link)
    assert first.status_code == 303 and first.headers["location"] == "/console/flows"
    cookie = first.cookies["aztp_console"]
    assert "token" not in first.headers["set-cookie"].split(";")[0].lower()
    origin = console_link.split("/console/")[0]
    flows = _get(f"{origin}/console/flows", cookies={"aztp_console": cookie})
    assert flows.status_code == 200 and ">ops<" in flows.text  # the embedded store's flow
    again = _get(console_link)  # the link is spent
    assert again.status_code == 403 and "set-cookie" not in again.headers
    forged = _get(console_link.replace("token=", "token=x"))
    assert forged.status_code == 403
