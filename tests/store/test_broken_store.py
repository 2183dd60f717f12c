"""A broken store stops an embedded agent: fail closed within the documented bound.

Issue 13.2: delete, overwrite or ``chmod 000`` the store while a secured agent runs, and
memoized decisions kept allowing (thousands of tool bodies after the break). Now the
enforcement point re-confirms the store's files at least every
``StoreFiles.CONFIRM_INTERVAL_S`` and denies with ``authority_unavailable`` (the cause in
the log and in the denial's detail) once it cannot. Real embedded authorities and guards;
the files are broken from another process, as an operator or another program would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from aztp_agents import Aztp
from aztp_agents.guard import Guard
from aztp_agents.store.files import StoreFiles
from tests.support.processes import in_another_process

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file semantics")


def delete(db: Path, other: Path) -> None:
    in_another_process("import os; os.unlink(db)", db=str(db))


def replace_with_other_bytes(db: Path, other: Path) -> None:
    in_another_process(
        "import os\nopen(db + '.new', 'wb').write(os.urandom(8192))\nos.replace(db + '.new', db)",
        db=str(db),
    )


def replace_with_another_store(db: Path, other: Path) -> None:
    in_another_process(
        "import os, shutil\nshutil.copyfile(other, db + '.new')\nos.replace(db + '.new', db)",
        db=str(db),
        other=str(other),
    )


def overwrite_in_place(db: Path, other: Path) -> None:
    in_another_process(
        "import os\nwith open(db, 'r+b') as f:\n    f.write(os.urandom(4096))",
        db=str(db),
    )


BREAKS = {
    # A deleted file may be recreated (empty) by a new SQLite connection to the path before the
    # confirmation looks: then the cause reads "replaced", which is as true.
    "deleted": (delete, ("deleted", "replaced")),
    "replaced_by_other_bytes": (replace_with_other_bytes, ("replaced",)),
    "replaced_by_another_store": (replace_with_another_store, ("replaced",)),
    "overwritten_in_place": (overwrite_in_place, ("overwritten",)),
}


def another_store(tmp_path: Path) -> Path:
    """A second, valid aztp store (its database file)."""
    home = tmp_path / "other-home"
    other = Aztp(home=home, trust_domain="astha.ai")
    Guard("prod", other).enroll("someone", ["something"])
    other.backend.authority.store.close()  # type: ignore[attr-defined]
    return home / "aztp.db"


def deny_within_bound(check: Any) -> Any:
    """Call ``check()`` until it denies; every allowed call before that is within the bound
    (the loop ends by itself once ``CONFIRM_INTERVAL_S`` has passed: never timed here)."""
    deadline = time.monotonic() + 10 * StoreFiles.CONFIRM_INTERVAL_S + 5  # a hang guard only
    while time.monotonic() < deadline:
        decision = check()
        if not decision.allowed:
            return decision
    raise AssertionError("still allowed long past the documented bound")


@pytest.mark.parametrize("break_name", sorted(BREAKS))
def test_a_broken_store_denies_every_call_within_the_bound(
    tmp_path: Path, break_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    breaker, cause = BREAKS[break_name]
    other = another_store(tmp_path)
    client = Aztp(home=tmp_path / "home", trust_domain="astha.ai")
    guard = Guard("prod", client)
    enrolled = guard.enroll("worker", ["lookup"])
    agent, tool = enrolled.agent_id, enrolled.tools["lookup"]
    bodies = 0

    def guarded_call() -> Any:
        nonlocal bodies
        decision = guard.check(agent, tool, "lookup")
        if decision.allowed:
            bodies += 1  # the tool body
        return decision

    for _ in range(50):  # warm: the memoized path
        assert guarded_call().allowed
    breaker(tmp_path / "home" / "aztp.db", other)

    denied = deny_within_bound(guarded_call)
    assert denied.reason.value == "authority_unavailable", denied
    assert any(c in (denied.detail or "") for c in cause), denied.detail
    after = bodies
    for _ in range(200):  # never allowed again: the warm path, the blocking path, async
        assert not guarded_call().allowed
    import asyncio

    assert not asyncio.run(guard.acheck(agent, tool, "lookup")).allowed
    assert bodies == after  # no tool body ran after the first denial
    # The store logs the cause once (the guard logs each denial, as it always has).
    causes = [r.getMessage() for r in caplog.records if r.name == "aztp_agents.store.files"]
    assert len(causes) == 1 and any(c in causes[0] for c in cause), causes


_UNREADABLE_AGENT = """
import json, sys
from aztp_agents import Aztp
from aztp_agents.guard import Guard
guard = Guard("prod", Aztp(home=sys.argv[1], trust_domain="astha.ai"))
e = guard.enroll("worker", ["lookup"])
agent, tool = e.agent_id, e.tools["lookup"]
bodies = 0
def call():
    global bodies
    d = guard.check(agent, tool, "lookup")
    bodies += d.allowed
    return d
for _ in range(50):
    assert call().allowed
print("ready", flush=True)
sys.stdin.readline()  # the store is made unreadable now
import time
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    d = call()
    if not d.allowed:
        break
after = bodies
more = [call() for _ in range(200)]
print(json.dumps({"reason": d.reason.value, "detail": d.detail or "",
                  "all_denied": not any(m.allowed for m in more), "bodies_after": bodies - after}),
      flush=True)
sys.stdin.readline()  # permissions are back
deadline = time.monotonic() + 10
while time.monotonic() < deadline and not call().allowed:
    pass
print(json.dumps({"allowed_again": call().allowed}), flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX users")
def test_an_unreadable_store_denies_within_the_bound_and_recovers_when_readable(
    tmp_path: Path,
) -> None:
    """``chmod 000`` on the database. Root reads through any permission, so when the tests
    run as root the agent runs as ``nobody`` (a real unprivileged process); otherwise as the
    test's own user."""
    home = tmp_path / "home"
    home.mkdir()
    user: int | None = None
    if os.geteuid() == 0:
        user = 65534  # nobody
        os.chown(tmp_path, user, -1)
        os.chown(home, user, -1)
        try:
            subprocess.run(
                [sys.executable, "-c", "import aztp_agents"],
                user=user,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                check=True,
                capture_output=True,
                timeout=120,
            )
        except (OSError, subprocess.CalledProcessError):
            pytest.skip(
                "running as root (which reads through chmod 000), and this Python or the "
                "source tree cannot be run by an unprivileged user to stand in for the agent"
            )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _UNREADABLE_AGENT, str(home)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        user=user,
        env=env,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        db = home / "aztp.db"
        db.chmod(0)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        result = json.loads(proc.stdout.readline())
        assert result["reason"] == "authority_unavailable", result
        assert "not readable" in result["detail"], result
        assert result["all_denied"] and result["bodies_after"] == 0, result
        db.chmod(0o600)  # a permission problem clears when it clears (the file is unchanged)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline()) == {"allowed_again": True}
    finally:
        proc.kill()
        proc.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_langchain_agent_whose_store_is_deleted_mid_run_stops_running_tools(
    tmp_path: Path, mode: str
) -> None:
    """A real ``create_agent`` run (scripted model) with ``AztpMiddleware``: the store is
    deleted inside the third tool body; every tool call after the bound is denied."""
    pytest.importorskip("langchain")
    from aztp_langchain import AztpMiddleware
    from aztp_langchain.testing import ScriptedChatModel, call
    from langchain.agents import create_agent

    from tests.support.langchain import Counter, counting_tool, invoke, tool_messages

    client = Aztp(home=tmp_path / "home", trust_domain="astha.ai")
    counter = Counter()

    async def break_store_on_third_call() -> None:
        if counter["search"] == 3:
            os.unlink(tmp_path / "home" / "aztp.db")
            # Wait out the documented bound: from here on, every decision must deny.
            time.sleep(StoreFiles.CONFIRM_INTERVAL_S * 1.5)

    tool = counting_tool("search", counter, on_call=break_store_on_third_call)
    model = ScriptedChatModel(script=[[call("search", query=f"q{i}")] for i in range(12)])
    middleware = AztpMiddleware(flow="prod", agent_name="researcher", client=client)
    agent = create_agent(model, [tool], middleware=[middleware])

    result = invoke(agent, mode)

    assert counter["search"] == 3  # no tool body ran after the break
    messages = tool_messages(result, "search")
    assert [m.status for m in messages[:3]] == ["success"] * 3
    assert len(messages) == 12
    for m in messages[3:]:
        assert m.status == "error" and "[authority_unavailable]" in str(m.content), m.content
