"""One configuration, read from the environment at the time of use (issue 16.1)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aztp_agents import Aztp
from aztp_agents.client import default_client
from aztp_agents.config import AztpConfig
from aztp_agents.server.testing import live_server, make_org
from tests.support.cli import close_embedded


def test_default_client_follows_a_changed_aztp_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's tests that give each test its own home get a client on that home."""
    first, second = tmp_path / "one", tmp_path / "two"
    try:
        monkeypatch.setenv("AZTP_HOME", str(first))
        a = default_client()
        assert a.home == first
        a.sync.secure_connect({}, "only-in-one")
        monkeypatch.setenv("AZTP_HOME", str(second))
        b = default_client()
        assert b.home == second and b is not a
        assert b.sync.list_identities() == []  # nothing leaked from the first home
        monkeypatch.setenv("AZTP_HOME", str(first))
        assert default_client() is a
    finally:
        close_embedded(first)
        close_embedded(second)


def test_aztp_and_default_client_honour_aztp_url_and_api_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Aztp()`` and the adapters' default client use the server the CLI uses."""
    home = tmp_path / "server"
    home.mkdir()
    _, key = make_org(home, "acme", "acme.example")
    with live_server(home) as server:
        monkeypatch.setenv("AZTP_URL", server.url)
        monkeypatch.setenv("AZTP_API_KEY", key)
        assert AztpConfig.from_env() == AztpConfig(
            url=server.url, api_key=key, home=AztpConfig.from_env().home
        )
        client = Aztp()
        try:
            assert client.is_remote
            agent = asyncio.run(client.secure_connect({}, "remote-agent"))
            assert agent.identity.aztp_id.startswith("aztp://acme.example/")
        finally:
            client.close()
        shared = default_client()
        assert shared.is_remote
        ids = [i["aztpId"] for i in shared.sync.list_identities()]
        assert agent.identity.aztp_id in ids
        # An explicit home is the embedded store, as --home is for the CLI.
        local = Aztp(home=tmp_path / "local")
        try:
            assert not local.is_remote
        finally:
            local.close()
            close_embedded(tmp_path / "local")
