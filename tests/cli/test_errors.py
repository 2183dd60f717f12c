"""Bad input, failures and exit codes: one ``error:`` line on stderr, a meaningful code,
the traceback only with ``--debug``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aztp_agents.cli import app
from aztp_agents.server.testing import free_port
from tests.support.cli import Run

BAD_INPUT: list[tuple[list[str], int, str]] = [
    (["identity", "show", "ghost"], 3, "no identity named 'ghost'"),
    (["identity", "show", "aztp://aztp.local/workload/production/node/ghost"], 3, "not found"),
    (["identity", "show", "aztp://Bad.Domain/workload/production/node/x"], 2, "trust domain"),
    (["identity", "show", "aztp://aztp.local/not-a-workload"], 2, ""),
    (["identity", "show", "https://example.org/x"], 2, "expected an AZTP ID"),
    (["identity", "show", "x"], 2, "name"),
    (["identity", "revoke", "ghost"], 3, "ghost"),
    (["identity", "reissue", "aztp://aztp.local/workload/production/node/ghost"], 3, "not found"),
    (["identity", "issue", "bad-name-"], 2, "name"),
    (["identity", "issue", "ok-name", "--trust-domain", "UPPER.example"], 2, "trust domain"),
    (["identity", "issue", "ok-name", "--parent", "ghost"], 3, "ghost"),
    (["identity", "list", "--bogus"], 2, "no such option"),
    (["identity", "bogus"], 2, "no such command"),
    (["bogus"], 2, "no such command"),
    (["identity", "show"], 2, "missing argument"),
    (["flow", "show", "nope"], 3, "no identity flow with name 'nope'"),
    (["flow", "show", "0123456789abcdef01234567"], 3, "with id"),
    (["flow", "add", "nope", "researcher"], 3, "nope"),
    (["flow", "add", "prod", "ghost"], 3, "ghost"),
    (["flow", "remove", "prod", "aztp://x"], 2, ""),
    (["flow", "revoke", "nope", "researcher"], 3, "nope"),
    (["flow", "reinstate", "prod", "ghost"], 3, "ghost"),
    (["flow", "health", "nope"], 3, "nope"),
    (["flow", "delete", "nope"], 3, "nope"),
    (["flow", "create", "x", "--metadata", "[1]"], 2, "JSON object"),
    (["flow", "create", "x", "--metadata", "{"], 2, "not valid JSON"),
    (["verify", "ghost"], 3, "ghost"),
    (["verify", "researcher", "--flow", "nope"], 3, "nope"),
    (["verify", "researcher", "--to", "ghost"], 3, "ghost"),
    (["link", "researcher", "ghost"], 3, "ghost"),
    (["unlink", "ghost", "researcher"], 3, "ghost"),
    (["policy", "show", "ghost"], 3, "ghost"),
    (["policy", "attach", "ghost", "policy:x"], 3, "ghost"),
    (["svid", "jwt", "ghost", "--audience", "a"], 3, "ghost"),
    (["audit", "tail", "-n", "many"], 2, "valid integer"),
    (["keys", "revoke"], 2, "missing argument"),
    (["--api-key", "aztp_not_a_real_key", "identity", "list"], 4, "api key"),
]


@pytest.mark.parametrize(
    ("args", "code", "contains"), BAD_INPUT, ids=[" ".join(a) for a, _, _ in BAD_INPUT]
)
def test_bad_input_is_one_line_and_a_meaningful_exit_code(
    run: Run, args: list[str], code: int, contains: str
) -> None:
    run("identity", "issue", "researcher")
    run("flow", "create", "prod")
    run.fails(*args, code=code, contains=contains)


def test_debug_shows_the_traceback(run: Run) -> None:
    result = run("--debug", "identity", "show", "ghost", code=3)
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: no identity named 'ghost'")


def test_unexpected_errors_are_one_line(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from aztp_agents.client import Aztp

    async def boom(self: Aztp) -> list[dict[str, Any]]:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(Aztp, "list_identities", boom)
    line = run.fails("identity", "list", code=1, contains="disk on fire second line")
    assert "--debug" in line


def test_unreachable_server_is_exit_code_5(run: Run) -> None:
    run.fails(
        "--url",
        f"http://127.0.0.1:{free_port()}",
        "--api-key",
        "aztp_x",
        "identity",
        "list",
        code=5,
        contains="127.0.0.1",
    )


def test_home_that_is_not_a_folder_is_exit_code_5(run: Run, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    result = run.runner.invoke(app, ["--home", str(not_a_folder), "identity", "list"])
    assert result.exit_code == 5
    assert result.stderr.splitlines() == [
        f"error: cannot use {not_a_folder}: File exists (--home must be a folder you can write)"
    ]
