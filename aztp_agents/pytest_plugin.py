"""pytest fixtures for your own tests of secured agents.

Installed with the package as the pytest plugin ``aztp_agents`` (entry point ``pytest11``);
without the entry point, enable it with ``-p aztp_agents.pytest_plugin`` or
``pytest_plugins = ["aztp_agents.pytest_plugin"]`` in a ``conftest.py``.

* ``aztp_isolated_home``: a fresh embedded authority folder for this test; ``AZTP_HOME``
  points to it and ``AZTP_URL`` / ``AZTP_API_KEY`` are unset for the test, so ``Aztp()``, the
  adapters' default client and the CLI all use it; closed after the test;
* ``aztp_isolated``: an ``Aztp`` client on that folder.

Scripted (offline) models for the agents under test: ``aztp_crewai.testing`` and
``aztp_langchain.testing`` (imported by you: the core imports no agent framework).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from .client import Aztp

__all__ = ["aztp_isolated", "aztp_isolated_home"]


def _close_home(home: Path) -> None:
    """Close the authority cached for ``home`` and forget default clients on it."""
    from . import client as client_module

    with client_module._DEFAULT_LOCK:
        for config in [c for c in client_module._DEFAULTS if c.home == home]:
            client_module._DEFAULTS.pop(config).close()
    with client_module._AUTHORITIES_LOCK:
        authority = client_module._AUTHORITIES.pop((home / "aztp.db").resolve(), None)
    if authority is not None:
        with contextlib.suppress(Exception):  # closing is hygiene, never a test failure
            authority.store.close()


@pytest.fixture
def aztp_isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An embedded authority folder of this test only (it does not exist yet)."""
    home = tmp_path / "aztp-home"
    monkeypatch.setenv("AZTP_HOME", str(home))
    monkeypatch.delenv("AZTP_URL", raising=False)
    monkeypatch.delenv("AZTP_API_KEY", raising=False)
    yield home
    _close_home(home)


@pytest.fixture
def aztp_isolated(aztp_isolated_home: Path) -> Iterator[Aztp]:
    """An embedded ``Aztp`` client on this test's own authority."""
    client = Aztp(home=aztp_isolated_home)
    try:
        yield client
    finally:
        client.close()
