"""Helpers shared by the authority and store tests."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from cryptography import x509

from aztp_agents import Aztp

REPO = Path(__file__).resolve().parents[2]
TD = "astha.ai"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def aztp(name: str, td: str = TD, env: str = "production") -> str:
    return f"aztp://{td}/workload/{env}/node/{name}"


def serial_of(cert_pem: str) -> int:
    return x509.load_pem_x509_certificate(cert_pem.encode()).serial_number


def issue(client: Aztp, *names: str, **config: Any) -> list[str]:
    return [
        run(client.secure_connect({}, n, config=config or None)).identity.aztp_id for n in names
    ]


def db_state(db: Path) -> dict[str, list[str]]:
    """Every row of every table (read straight from the SQLite file)."""
    con = sqlite3.connect(db)
    try:
        tables = [
            r[0]
            for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
        ]
        return {t: sorted(repr(r) for r in con.execute(f'SELECT * FROM "{t}"')) for t in tables}
    finally:
        con.close()


def run_python(code: str, *args: str, timeout: float = 120) -> str:
    """Run ``code`` in a fresh interpreter (another OS process); return its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )
    assert done.returncode == 0, f"subprocess failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


_SUBPROCESS_OPS = """
import asyncio, json, sys
from aztp_agents import Aztp
client = Aztp(home=sys.argv[1], trust_domain="astha.ai")
for op, *args in json.loads(sys.argv[2]):
    print(asyncio.run(getattr(client, op)(*args)))
"""


def in_another_process(home: Path, *ops: tuple[str, ...]) -> None:
    """Run facade calls ``(method, *args)`` on ``home`` in a fresh interpreter."""
    run_python(_SUBPROCESS_OPS, str(home), json.dumps(ops))
