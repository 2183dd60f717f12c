"""The authority on PostgreSQL: chosen by URL everywhere (``Aztp(database_url=)``,
``AZTP_DATABASE_URL``, the CLI's and the server's ``--database-url``), guarded by the master
key, shared by several processes. A real cluster from Debian's package (tests/support/postgres).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aztp_langchain import AztpMiddleware
from aztp_langchain.testing import ScriptedChatModel, call
from langchain.agents import create_agent

from aztp_agents import Aztp
from aztp_agents.errors import StoreError
from aztp_agents.store import Store
from tests.authority.helpers import REPO, run
from tests.support.langchain import Counter, counting_tool, invoke, reasons, tool_messages


def _close(url: str) -> None:
    """Close and forget this process's embedded authority on ``url``."""
    from aztp_agents.client import _embedded

    with _embedded._AUTHORITIES_LOCK:
        authority = _embedded._AUTHORITIES.pop(url, None)
    if authority is not None:
        authority.store.close()


@pytest.fixture
def pg_client(pg_url: str) -> Iterator[Aztp]:
    client = Aztp(database_url=pg_url, trust_domain="astha.ai")
    yield client
    _close(pg_url)


def _rows(url: str) -> dict[str, int]:
    """Row count of every table of the database (to prove nothing was written)."""
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_langchain_agent_on_postgresql_is_guarded_and_a_revocation_holds_at_once(
    pg_client: Aztp, mode: str
) -> None:
    counter = Counter()
    holder: dict[str, AztpMiddleware] = {}

    async def revoke_agent_in_flow() -> None:
        mw = holder["mw"]
        await pg_client.revoke_flow_identity(mw.agent_id, mw.guard.flow_id, "compromised")

    model = ScriptedChatModel(
        script=[[call("search", query="aztp")], [call("fetch", query="doc-1", limit=1)], "done"]
    )
    tools = [
        counting_tool("search", counter, on_call=revoke_agent_in_flow),
        counting_tool("fetch", counter),
    ]
    mw = holder["mw"] = AztpMiddleware(flow="prod", agent_name="researcher", client=pg_client)
    result = invoke(create_agent(model, tools, middleware=[mw]), mode)

    assert counter["search"] == 1
    assert counter["fetch"] == 0  # revoked between the two calls: the body never ran
    (fetch,) = tool_messages(result, "fetch")
    assert "[agent_revoked_in_flow]" in fetch.content
    assert reasons(pg_client) == ["allowed", "agent_revoked_in_flow"]
    assert run(pg_client.verify_audit())["ok"] is True
    assert "postgresql" not in repr(pg_client) or "aztp@" not in repr(pg_client)


def test_another_process_on_the_same_database_sees_a_revocation_at_its_next_decision(
    pg_client: Aztp, pg_url: str
) -> None:
    from aztp_agents.guard import Guard

    guard = Guard(flow="shared", client=pg_client)
    crew = guard.enroll("agent/a", ["tool/t"])
    tool = crew.tools["tool/t"]
    assert guard.check(crew.agent_id, tool).allowed

    code = (
        "import asyncio, sys\n"
        "from aztp_agents import Aztp\n"
        "c = Aztp()\n"  # AZTP_DATABASE_URL, from the environment
        "asyncio.run(c.revoke_identity(sys.argv[1], 'stolen'))\n"
        "print('revoked')\n"
    )
    env = {**os.environ, "AZTP_DATABASE_URL": pg_url, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code, crew.agent_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    decision = guard.check(crew.agent_id, tool)
    assert not decision.allowed and decision.reason.value == "agent_revoked"


def test_a_process_with_another_master_key_is_refused_before_it_writes(
    pg_client: Aztp, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(pg_client.secure_connect({}, "sealed"))
    pg_client.backend.authority.store.flush_audit()  # type: ignore[attr-defined]
    _close(pg_url)
    before = _rows(pg_url)
    monkeypatch.setenv("AZTP_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(StoreError, match="master key does not match"):
        Store.open_url(pg_url)
    assert _rows(pg_url) == before


def test_a_database_store_without_a_master_key_is_refused_with_what_to_set(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _rows(pg_url)
    monkeypatch.delenv("AZTP_MASTER_KEY")
    with pytest.raises(StoreError, match="AZTP_MASTER_KEY") as err:
        Store.open_url(pg_url)
    assert "aztp@" not in str(err.value)  # the URL's user/password part is never shown
    assert _rows(pg_url) == before


def test_the_master_key_file_must_be_private_and_not_a_symlink(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZTP_MASTER_KEY")
    key_file = tmp_path / "master.key"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    link = tmp_path / "link.key"
    link.symlink_to(key_file)
    monkeypatch.setenv("AZTP_MASTER_KEY_FILE", str(key_file))

    key_file.chmod(0o644)
    with pytest.raises(StoreError, match="chmod 600"):
        Store.open_url(pg_url)
    key_file.chmod(0o600)
    monkeypatch.setenv("AZTP_MASTER_KEY_FILE", str(link))
    with pytest.raises(StoreError, match="symlink"):
        Store.open_url(pg_url)
    monkeypatch.setenv("AZTP_MASTER_KEY_FILE", str(key_file))
    Store.open_url(pg_url).close()


def test_the_cli_and_the_server_take_the_database_url(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aztp_agents.server.testing import live_server

    cli = [sys.executable, "-m", "aztp_agents.cli"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "AZTP_HOME": str(tmp_path / "unused")}

    def aztp_cli(*args: str, **extra: str) -> str:
        done = subprocess.run(
            [*cli, *args],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    aztp_cli("--database-url", pg_url, "identity", "issue", "cli-agent")
    listed = aztp_cli("identity", "list", AZTP_DATABASE_URL=pg_url)  # the variable works too
    assert "cli-agent" in listed
    made = aztp_cli(
        "--database-url", pg_url, "--json", "org", "create", "acme", "--trust-domain", "acme.test"
    )
    api_key = _api_key(made)

    with live_server(tmp_path / "server", args=["--database-url", pg_url]) as server:
        remote = Aztp(api_key=api_key, base_url=server.base_url)
        try:
            issued = run(remote.secure_connect({}, "served-agent"))
            assert issued.identity.aztp_id.startswith("aztp://acme.test/")
        finally:
            remote.close()
        assert "aztp.db" not in server.log()
    # What the server wrote is in the database: acme's identity, seen by the CLI as acme.
    seen = aztp_cli("--database-url", pg_url, "--api-key", api_key, "identity", "list")
    assert "served-agent" in seen and "cli-agent" not in seen
    assert not (tmp_path / "unused" / "aztp.db").exists()  # no SQLite store was made


def _api_key(output: str) -> str:
    import json

    data: Any = json.loads(output)
    return str(data["api_key"])
