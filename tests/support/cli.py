"""Helpers for the command-line tests (no tests here).

``Run(home)`` invokes the ``aztp-agents`` typer app in-process on a home and checks exit codes;
``script(...)`` runs the installed ``aztp-agents`` script in a subprocess; ``close_embedded``
forgets the embedded authority cached for a home.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from aztp_agents.cli import app

SCRIPT = Path(sys.executable).with_name("aztp-agents")


class Run:
    """``run(*args, code=0)``: invoke the CLI on this test's home; check the exit code."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.runner = CliRunner()

    def __call__(
        self, *args: str, code: int | None = 0, env: dict[str, str] | None = None, home: bool = True
    ) -> Any:
        argv = (["--home", str(self.home)] if home else []) + list(args)
        result = self.runner.invoke(app, argv, env=env)
        if code is not None:
            assert result.exit_code == code, (
                f"{argv} -> {result.exit_code}, wanted {code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self(*args, "--json", code=code).stdout)

    def fails(self, *args: str, code: int, contains: str = "") -> str:
        """A failure: exit ``code``, nothing on stdout, exactly one ``error:`` line on stderr."""
        result = self(*args, code=code)
        lines = result.stderr.splitlines()
        assert len(lines) == 1, f"{args}: expected one error line, got {result.stderr!r}"
        assert lines[0].startswith("error: "), lines[0]
        assert "Traceback" not in result.stderr
        assert result.stdout == "", result.stdout
        assert contains.lower() in lines[0].lower(), lines[0]
        return lines[0]


def close_embedded(home: Path) -> None:
    """Close and forget the embedded authority cached for ``home`` (best effort: closing is
    hygiene, never a test failure, and the cache is the client's private business)."""
    from aztp_agents import client as client_module

    cache = getattr(client_module, "_AUTHORITIES", None)
    lock = getattr(client_module, "_AUTHORITIES_LOCK", None)
    if cache is None or lock is None:
        return
    with lock:
        authority = cache.pop((home / "aztp.db").resolve(), None)
    if authority is not None:
        with contextlib.suppress(Exception):
            authority.store.close()


def script(
    *args: str, home: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``aztp-agents`` script on ``home`` (no ``AZTP_*`` from this process)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AZTP_")}
    full_env.update(env or {})
    return subprocess.run(
        [str(SCRIPT), "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=full_env,
        check=False,
    )


def jwt_part(token: str, i: int) -> dict[str, Any]:
    """Part ``i`` (0 header, 1 claims) of a compact JWT, decoded."""
    part = token.split(".")[i]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
