"""Store files: private permissions, CA keys sealed at rest, the default home."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from aztp_agents import Aztp
from aztp_agents.private_files import private_folder
from tests.authority.helpers import db_state, run
from tests.support.cli import close_embedded

# =========================================================================================
# Files
# =========================================================================================


def test_store_files_are_private(client: Aztp, aztp_home: Path, db_path: Path) -> None:
    run(client.secure_connect({}, "files-agent"))
    assert stat.S_IMODE(aztp_home.stat().st_mode) == 0o700
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
    for sidecar in aztp_home.glob("aztp.db-*"):  # WAL and shared-memory files hold data too
        assert stat.S_IMODE(sidecar.stat().st_mode) == 0o600, sidecar.name


def test_an_existing_home_folder_is_made_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, 0o755)  # made earlier by hand, or by another tool
    client = Aztp(home=home, trust_domain="files.test")
    run(client.secure_connect({}, "files-agent"))
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "master.key").stat().st_mode) == 0o600
    close_embedded(home)


def test_a_shared_sticky_folder_is_left_alone(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp: not ours to close
    private_folder(shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777


def test_ca_private_keys_are_sealed_at_rest(
    client: Aztp, aztp_home: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = run(client.secure_connect({}, "sealed-agent"))
    master = aztp_home / "master.key"
    assert stat.S_IMODE(master.stat().st_mode) == 0o600
    con = sqlite3.connect(db_path)
    stored = [row[0] for row in con.execute("SELECT key_pem FROM trust_domains")]
    con.close()
    assert stored and all(s.startswith("aesgcm:v1:") and "PRIVATE KEY" not in s for s in stored)
    raw = db_path.read_bytes() + b"".join(p.read_bytes() for p in aztp_home.glob("aztp.db-wal"))
    assert b"PRIVATE KEY" not in raw  # the database files hold no CA key in clear
    # The sealed key still signs: a fresh credential validates against the bundle.
    assert run(client.verify_credential(agent.identity.certificate))["valid"] is True
    # With another master key the store is refused when it is opened (a clear error, before
    # anything is written: no garbage keys, no rows).
    from aztp_agents.errors import StoreError
    from aztp_agents.store import Store

    close_embedded(aztp_home)
    before = db_state(db_path)
    monkeypatch.setenv("AZTP_MASTER_KEY", "A" * 43 + "=")
    with pytest.raises(StoreError, match="master key does not match"):
        Store.open_sqlite(db_path)
    assert db_state(db_path) == before


def test_default_home_is_the_test_session_folder(session_aztp_home: Path) -> None:
    from aztp_agents.client import resolve_home

    assert resolve_home() == session_aztp_home
    assert resolve_home() != Path.home() / ".aztp"
