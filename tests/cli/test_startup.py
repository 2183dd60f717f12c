"""The CLI starts fast: building its help imports neither the store nor the client stack.

Behavioural, not timed: a fresh interpreter imports ``aztp_agents.cli``, prints the help of the
root and of every group, and then reports which heavy modules it loaded (bench/cli_startup.py
measures the time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# What an operator's `aztp-agents --help` must not pay for: the SQL toolkit, the HTTP client,
# the authority (and with it the store and the crypto), the client facade and rich (help is plain text).
HEAVY = (
    "sqlalchemy",
    "httpx",
    "aztp_agents.authority",
    "aztp_agents.store",
    "aztp_agents.client",
    "cryptography",
    "rich",
)

_PROBE = """
import contextlib, io, json, sys
from aztp_agents.cli import app, main
import typer
groups = [None] + sorted(typer.main.get_command(app).commands)
for group in groups:
    argv = ["--help"] if group is None else [group, "--help"]
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    assert code == 0, (argv, code)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "httpx", "aztp_agents", "cryptography", "rich"))))
"""


def _loaded_after_help() -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZTP_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "adapters")])
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_help_imports_no_store_client_or_http_stack() -> None:
    loaded = _loaded_after_help()
    heavy = sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert heavy == [], f"--help imported {heavy}"


def test_public_facade_still_imports() -> None:
    from aztp_agents import Aztp, SyncAztp, secured

    assert Aztp.__name__ == "Aztp" and SyncAztp.__name__ == "SyncAztp" and callable(secured)


def test_secured_is_the_function_even_after_its_module_was_imported() -> None:
    import aztp_agents.secured  # noqa: F401 - the submodule shares the function's name
    from aztp_agents import secured

    assert callable(secured) and secured.__module__ == "aztp_agents.secured"
