"""Decisions made while another process holds the store's write lock survive a SIGKILL.

Issue 13.8: the audit writer lingered 200 ms, then blocked in ``BEGIN IMMEDIATE`` (busy
timeout 30 s) while another process held the write lock; everything queued meanwhile was only
in memory, so a process killed outright lost far more than the documented window. Now every
window is appended to a spool file beside the store before the commit is tried, and the next
process to open the store replays what its owner never committed, exactly once. Real
processes, a real store, the installed CLI.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from aztp_agents.audit import decode_batch
from aztp_agents.errors import StoreError
from aztp_agents.store.spool import read_spool
from tests.authority.helpers import run
from tests.support.cli import script

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and flock")

N = 50

AGENT = """
import sys
from aztp_agents import Aztp
from aztp_agents.guard import Guard

client = Aztp(home=sys.argv[1], trust_domain="astha.ai")
guard = Guard("prod", client)
enrolled = guard.enroll("looper", ["lookup"])
agent, tool = enrolled.agent_id, enrolled.tools["lookup"]
store = client.backend.authority.store
guard.check(agent, tool, "lookup")
store.flush_audit(30)
print("ready", flush=True)
for line in sys.stdin:
    command = line.strip()
    if command == "decide":
        for _ in range(int(sys.argv[2])):
            assert guard.check(agent, tool, "lookup").allowed
        print("decided", flush=True)
    elif command == "flush":
        store.flush_audit(30)
        print("flushed", flush=True)
    elif command == "quit":
        store.flush_audit(30)
        print("bye", flush=True)
        break
"""


class Agent:
    def __init__(self, home: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", AGENT, str(home), str(N)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        self.expect("ready")

    def expect(self, word: str) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line == word, f"wanted {word!r}, got {line!r} (exit {self.proc.poll()})"

    def ask(self, command: str, answer: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        self.expect(answer)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill()


@pytest.fixture
def agent(tmp_path: Path):  # type: ignore[no-untyped-def]
    process = Agent(tmp_path)
    yield process
    process.stop()


def spooled_decisions(home: Path) -> int:
    """Decision records held in spool files beside the store (what a recoverer would see)."""
    total = 0
    for path in home.glob("aztp.db-audit-*.spool"):
        for _org, payload in read_spool(path.read_bytes()):
            total += sum(1 for r in decode_batch(payload) if r[1] == "decision.tool_call")
    return total


def wait_until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 60  # a deadline, not a measurement
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def decisions_in_store(home: Path) -> int:
    audit = script(
        "audit", "tail", "-n", "0", "--action", "decision.tool_call", "--json", home=home
    )
    assert audit.returncode == 0, audit.stderr
    return len(json.loads(audit.stdout))


def assert_intact(home: Path) -> None:
    verify = script("audit", "verify", home=home)
    assert verify.returncode == 0 and "intact" in verify.stdout, verify.stdout + verify.stderr


def test_decisions_queued_behind_another_writer_survive_sigkill(
    tmp_path: Path, agent: Agent
) -> None:
    before = decisions_in_store(tmp_path)
    holder = sqlite3.connect(tmp_path / "aztp.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        agent.ask("decide", "decided")
        wait_until(lambda: spooled_decisions(tmp_path) >= N, f"{N} spooled decisions")
        agent.kill()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert decisions_in_store(tmp_path) == before + N  # all of them, once
    assert_intact(tmp_path)
    assert not list(tmp_path.glob("*.spool"))  # replayed, then removed
    assert decisions_in_store(tmp_path) == before + N  # a second open replays nothing


def test_a_kill_after_the_commit_replays_nothing(tmp_path: Path, agent: Agent) -> None:
    """Killed after its commit but before it removed its spool: the spool says what was
    committed (in the same transaction), so the recoverer adds nothing."""
    agent.ask("decide", "decided")
    agent.ask("flush", "flushed")
    assert list(tmp_path.glob("aztp.db-audit-*.spool"))  # still its owner's
    agent.kill()
    before = decisions_in_store(tmp_path)  # this open is the recoverer
    assert before >= N + 1
    assert decisions_in_store(tmp_path) == before
    assert not list(tmp_path.glob("*.spool"))
    assert_intact(tmp_path)


def test_a_normal_exit_leaves_no_spool(tmp_path: Path, agent: Agent) -> None:
    agent.ask("decide", "decided")
    agent.ask("quit", "bye")
    assert agent.proc.wait(timeout=60) == 0
    assert not list(tmp_path.glob("*.spool"))
    assert decisions_in_store(tmp_path) == N + 1
    assert_intact(tmp_path)


def test_windows_held_back_by_a_lock_commit_later_in_order(
    client: Any, authority: Any, principal: Any
) -> None:
    """In one process: while another connection holds the write lock, flushes time out (the
    windows stay pending and spooled, nothing is dropped); once it is released they commit
    in the order they were queued, once, and the spool's committed offset is its end."""
    store = authority.store
    store.submit_audit(principal.org_id, (time.time(), "test.held", "someone", "w0", "{}"))
    store.flush_audit()  # the writer and its spool exist
    holder = sqlite3.connect(store.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        for subject in ("w1", "w2", "w3"):
            store.submit_audit(
                principal.org_id, (time.time(), "test.held", "someone", subject, "{}")
            )
            with pytest.raises(StoreError, match="not committed"):
                store.flush_audit(0.5)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.flush_audit()
    subjects = [e["subject"] for e in run(client.audit()) if e["action"] == "test.held"]
    assert sorted(subjects) == ["w0", "w1", "w2", "w3"]  # each once
    entries = [e for e in run(client.audit()) if e["action"] == "test.held"]
    by_subject = {e["subject"]: e for e in entries}
    assert by_subject["w1"]["ts"] <= by_subject["w2"]["ts"] <= by_subject["w3"]["ts"]
    assert run(client.verify_audit())["ok"] is True
    (spool,) = store.path.parent.glob("aztp.db-audit-*.spool")
    with sqlite3.connect(store.path) as db:
        offsets = db.execute(
            "SELECT key, value FROM meta WHERE key LIKE 'audit-spool:%'"
        ).fetchall()
    assert [value for _key, value in offsets] == [spool.stat().st_size]


def test_a_fully_committed_spool_is_replaced_when_large(
    authority: Any, principal: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = authority.store
    monkeypatch.setattr(type(store._audit_writer), "SPOOL_ROTATE_BYTES", 1)
    seen = set()
    for i in range(3):
        store.submit_audit(principal.org_id, (time.time(), "test.rotate", "someone", f"r{i}", "{}"))
        store.flush_audit()
        spools = list(store.path.parent.glob("aztp.db-audit-*.spool"))
        assert spools == []  # removed once committed: the next window starts a new one
        with sqlite3.connect(store.path) as db:
            keys = {k for (k,) in db.execute("SELECT key FROM meta WHERE key LIKE 'audit-spool:%'")}
        assert len(keys) <= 1  # the previous spool's offset went with this commit
        assert not keys & seen
        seen |= keys
    assert len(seen) == 3  # one spool per window
