"""The console in a real browser (headless Chromium, selenium) against a real server, with
a secured CrewAI crew (scripted LLM, offline) making its tool calls in another process:

sign in; the agent's decisions appear live; unlink a tool from the console and the agent's
next call of it is denied (and explained); revoke the agent in its flow from the console and
its very next tool call is denied, the tool body not run (each once the change feed brought
the write to the crew's process, as for any write made elsewhere); a forged cross-site POST from
another origin is refused; a second organization's user sees none of it.

With ``AZTP_SCREENSHOTS=1`` the run saves the screenshots docs/console.md shows.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aztp_agents.server.testing import free_port
from tests.support.browser import chromium, screenshot
from tests.support.remote import Server, start_server

ROOT = Path(__file__).resolve().parents[2]


class AgentProcess:
    """A secured CrewAI crew (tests/support/console_crew.py) in a process of its own, one JSON
    line per command."""

    def __init__(self, url: str, key: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.console_crew", url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            env={**os.environ, "AZTP_API_KEY": key, "PYTHONUNBUFFERED": "1"},
        )
        self.info = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the agent process ended"
        return json.loads(line)  # type: ignore[no-any-return]

    def send(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.send("quit")
            self.proc.wait(timeout=10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path / "home")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def attacker_site(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Another origin (``localhost`` on another port: another site) serving pages we write."""
    root = tmp_path / "evil"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        thread.join(timeout=5)


def _wait(driver: Any, condition: Any, timeout: float = 15) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)


def _sign_in(driver: Any, url: str, key: str) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{url}/console/login")
    driver.find_element(By.NAME, "api_key").send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "form.login button").click()
    _wait(driver, lambda d: d.current_url.endswith("/console/flows"))


def _live_rows(driver: Any) -> list[Any]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, "#decisions tbody tr.fresh")


def _open_live_decisions(driver: Any, url: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/console/decisions")
    _wait(
        driver, lambda d: d.find_element(By.ID, "live-status").get_attribute("data-state") == "live"
    )


def _confirm(driver: Any, link_text: str, row_text: str, reason: str | None = None) -> None:
    """Click the action link in the table row containing ``row_text``, then confirm it."""
    from selenium.webdriver.common.by import By

    row = next(
        r
        for r in driver.find_elements(By.CSS_SELECTOR, "table tbody tr")
        if row_text in r.text and r.find_elements(By.LINK_TEXT, link_text)
    )
    row.find_element(By.LINK_TEXT, link_text).click()
    _wait(driver, lambda d: "Confirm:" in d.title)
    if reason is not None:
        driver.find_element(By.NAME, "reason").send_keys(reason)
    driver.find_element(By.CSS_SELECTOR, "main form button").click()
    _wait(driver, lambda d: "/console/confirm" not in d.current_url)


def test_console_in_a_browser(server: Server, attacker_site: tuple[str, Path]) -> None:
    from selenium.webdriver.common.by import By

    agent = AgentProcess(server.url, server.key)
    agent_id, flow_id = agent.info["agent"], agent.info["flow"]
    try:
        with chromium() as driver:
            _sign_in(driver, server.url, server.key)
            # --- the flow, its health and its graph
            assert "ops" in driver.find_element(By.CSS_SELECTOR, "main table").text
            assert "healthy" in driver.find_element(By.CSS_SELECTOR, "main table").text

            # --- the agent's decisions arrive live
            _open_live_decisions(driver, server.url)
            assert agent.send("call lookup")["allowed"]
            assert agent.send("call search")["allowed"]
            _wait(driver, lambda d: len(_live_rows(d)) >= 2)
            assert all("allowed" in r.text for r in _live_rows(driver))

            # --- unlink analyst -> search from the console: the next call of it is denied
            driver.get(f"{server.url}/console/flow?id={flow_id}")
            mark = agent.send("mark")["revision"]
            _confirm(driver, "Unlink", "search", reason="search is not needed here")
            assert "Link removed" in driver.find_element(By.CSS_SELECTOR, "main").text
            _open_live_decisions(driver, server.url)
            agent.send(f"await {mark}")
            denied = agent.send("call search")
            assert denied == {"allowed": False, "reason": "no_link", "bodies": 2}
            _wait(driver, lambda d: any("denied" in r.text for r in _live_rows(d)))
            row = next(r for r in _live_rows(driver) if "denied" in r.text)
            assert "no_link" in row.text and "analyst" in row.text
            screenshot(driver, "decisions")
            row.find_element(By.LINK_TEXT, "why?").click()
            _wait(driver, lambda d: "Why this decision" in d.title)
            text = driver.find_element(By.CSS_SELECTOR, "main").text
            assert "no_link" in text and "link" in text.lower()
            screenshot(driver, "explain")

            # --- revoke the agent in its flow: its very next tool call is denied
            driver.get(f"{server.url}/console/flow?id={flow_id}")
            mark = agent.send("mark")["revision"]
            _confirm(driver, "Revoke in flow", "analyst", reason="incident 7")
            main = driver.find_element(By.CSS_SELECTOR, "main").text
            assert "Identity revoked in the flow" in main and "incident 7" in main
            graph = driver.find_element(By.CSS_SELECTOR, "svg.graph")
            assert "revoked in flow" in graph.text and "unlinked" in graph.text
            screenshot(driver, "flow")
            agent.send(f"await {mark}")
            assert agent.send("call lookup") == {
                "allowed": False,
                "reason": "agent_revoked_in_flow",
                "bodies": 2,  # the body did not run
            }

            # --- the flows page: ops is critical now, beside a healthy public flow
            api = {"api_access_key": server.key}
            reports = httpx.post(
                f"{server.url}/identity-flow/create",
                json={"name": "reports", "discoverable": "public"},
                headers=api,
            ).json()["data"]["_id"]
            for tool in agent.info["tools"].values():
                httpx.post(
                    f"{server.url}/identity-flow/add-identity-to-flow",
                    json={"identityFlowId": reports, "identity": {"aztpId": tool}},
                    headers=api,
                ).raise_for_status()
            driver.get(f"{server.url}/console/flows")
            rows = {
                r.text.split()[0]: r.text
                for r in driver.find_elements(By.CSS_SELECTOR, "main table tbody tr")
            }
            assert "critical" in rows["ops"] and "66.7 %" in rows["ops"]
            assert "healthy" in rows["reports"] and "public" in rows["reports"]
            screenshot(driver, "flows")

            # --- the agent's identity page, and the audit chain with the acting user
            driver.get(f"{server.url}/console/identity?id={agent_id}")
            main = driver.find_element(By.CSS_SELECTOR, "main").text
            assert "Credentials" in main and "no_link" in main  # its recent decisions
            screenshot(driver, "identity")
            driver.get(f"{server.url}/console/audit?limit=40")
            main = driver.find_element(By.CSS_SELECTOR, "main").text
            assert "chain intact" in main and "flow.revoke_identity" in main
            screenshot(driver, "audit")

            # --- a forged cross-site POST (even with the right CSRF token) is refused
            lookup = agent.info["tools"]["lookup"]
            csrf = driver.find_element(By.NAME, "csrf").get_attribute("value")
            evil_origin, evil_root = attacker_site
            (evil_root / "evil.html").write_text(
                f'<form id="f" method="post" action="{server.url}/console/act/revoke">'
                f'<input name="aztpId" value="{lookup}"><input name="csrf" value="{csrf}">'
                '<input name="reason" value="pwned"></form>'
                "<script>document.getElementById('f').submit()</script>"
            )
            driver.get(f"{evil_origin}/evil.html")
            _wait(driver, lambda d: d.current_url.startswith(server.url))
            assert "Refused" in driver.title
            status = httpx.get(
                f"{server.url}/v1/identities/{lookup}", headers={"api_access_key": server.key}
            ).json()["data"]["status"]
            assert status == "active"

            # --- a second organization's user sees none of it
            _sign_in(driver, server.url, server.org("globex", "globex.test"))
            main = driver.find_element(By.CSS_SELECTOR, "main").text
            assert "ops" not in main and "reports" not in main
            driver.get(f"{server.url}/console/identities")
            assert "analyst" not in driver.find_element(By.CSS_SELECTOR, "main").text
            _open_live_decisions(driver, server.url)
            assert "analyst" not in driver.find_element(By.ID, "decisions").text
            driver.get(f"{server.url}/console/flow?id={flow_id}")
            assert "not found" in driver.find_element(By.CSS_SELECTOR, "main").text
            driver.get(f"{server.url}/console/identity?id={agent_id}")
            assert "not found" in driver.find_element(By.CSS_SELECTOR, "main").text
    finally:
        agent.close()
