"""An acknowledged write is durable and seen by every enforcement point, or it fails.

Issue 13.1: with an embedded agent running, delete the store's ``-shm`` file, then revoke the
agent from another process. SQLite gives the two processes two WAL indexes: the revoking
process appended its frames where its new index said the log ended, the agent's audit writer
then overwrote them, and the agent (watching its own, orphaned index) kept allowing. The CLI
printed "revoked" and exited 0. Real processes, a real store, the installed CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from aztp_agents.cli._errors import EXIT_UNAVAILABLE
from tests.support.cli import script

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shared-memory files")


class AgentProcess:
    """``tests.support.looping_agent`` in a subprocess (see there for the commands)."""

    def __init__(self, home: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.looping_agent", str(home)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        self.ids = self._read()

    def _read(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"agent process ended (exit {self.proc.poll()})"
        return json.loads(line)

    def ask(self, command: str) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask("quit")
                self.proc.wait(timeout=30)
            except Exception:
                self.proc.kill()
                self.proc.wait(timeout=30)


@pytest.fixture
def agent(tmp_path: Path) -> Any:
    process = AgentProcess(tmp_path)
    yield process
    process.stop()


def test_revocation_after_the_wal_index_was_deleted_is_refused_or_durable_and_enforced(
    tmp_path: Path, agent: AgentProcess
) -> None:
    agent_id = agent.ids["agent"]
    before = agent.ask("call")
    assert before["allowed"], before
    # Let the agent's audit writer commit a few batches, as a running agent does.
    while agent.ask("stats")["calls"] < 200:
        pass
    (tmp_path / "aztp.db-shm").unlink()

    revoke = script("flow", "revoke", "prod", agent_id, home=tmp_path)
    next_call = agent.ask("call")  # the agent's very next decision after the CLI answered

    if revoke.returncode != 0:
        # Refused: a clear reason, the "unavailable" exit code, and nothing claimed.
        assert revoke.returncode == EXIT_UNAVAILABLE, revoke.stderr
        assert "WAL index" in revoke.stderr, revoke.stderr
        assert "unexpected" not in revoke.stderr, revoke.stderr
        assert "revoked" not in revoke.stdout
        agent.stop()
        return
    # Acknowledged: the agent's very next call is denied ...
    assert "revoked" in revoke.stdout
    assert not next_call["allowed"], next_call
    agent.stop()
    # ... and the revocation and its audit entry are in the store, on an intact chain.
    shown = script("flow", "show", "prod", "--json", home=tmp_path)
    assert shown.returncode == 0, shown.stderr
    members = {m["aztpId"]: m for m in json.loads(shown.stdout)["identities"]}
    assert members[agent_id]["status"] == "revoked", members
    audit = script("audit", "tail", "-n", "0", "--action", "flow.*", "--json", home=tmp_path)
    assert audit.returncode == 0, audit.stderr
    assert any("revoke" in e["action"] for e in json.loads(audit.stdout)), audit.stdout
    verify = script("audit", "verify", home=tmp_path)
    assert verify.returncode == 0 and "intact" in verify.stdout, verify.stdout + verify.stderr


def test_the_agent_whose_wal_index_was_deleted_denies_and_stops_writing(
    tmp_path: Path, agent: AgentProcess
) -> None:
    """The agent side: its index is orphaned, so it can neither see others' writes nor write
    safely; within the documented bound its decisions are ``authority_unavailable`` and the
    tool body stops running."""
    assert agent.ask("call")["allowed"]
    (tmp_path / "aztp.db-shm").unlink()
    # The bound is 0.25 s of decisions: poll until the first denial (a count of calls is no
    # bound: 10,000 memoized calls can take less than 0.25 s); nothing here asserts a time.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = agent.ask("call")
        if not answer["allowed"]:
            break
    assert answer["reason"] == "authority_unavailable", answer
    assert "WAL index" in answer["detail"], answer
    bodies = answer["bodies"]
    for _ in range(20):
        again = agent.ask("call")
        assert not again["allowed"] and again["reason"] == "authority_unavailable", again
    assert agent.ask("stats")["bodies"] == bodies  # no tool body ran after the first denial


def test_a_process_on_an_orphaned_wal_index_refuses_writes_and_new_stores(tmp_path: Path) -> None:
    """In one process: once the ``-shm`` file it maps is replaced, its writes fail (they
    would overwrite the other index's commits), and a second store opened in the same
    process is refused too (SQLite would give it the same orphaned index)."""
    from aztp_agents.authority import Authority
    from aztp_agents.errors import StoreError
    from aztp_agents.store import Store

    db = tmp_path / "aztp.db"
    first = Authority(Store.open_sqlite(db))
    try:
        principal = first.local_principal()
        first.create_flow(principal, "before")
        (tmp_path / "aztp.db-shm").unlink()
        # Another process opens the store: it builds a new index, and refuses to go on
        # because this process holds the database on the old one.
        opened = subprocess.run(
            [sys.executable, "-c", OPEN_STORE, str(db)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert opened.returncode != 0 and "WAL index" in opened.stderr, opened.stderr[-2000:]
        assert (tmp_path / "aztp.db-shm").exists()  # the new index
        with pytest.raises(StoreError, match="WAL index"):
            first.create_flow(principal, "after")
        with pytest.raises(StoreError, match="still open in this process"):
            Store.open_sqlite(db)
    finally:
        first.store.close()


OPEN_STORE = """
import sys
from pathlib import Path
from aztp_agents.store import Store
Store.open_sqlite(Path(sys.argv[1])).close()
"""
