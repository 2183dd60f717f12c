"""Shared fixtures and test environment.

Environment (set at import, before any test module imports an agent framework):

* agent-framework telemetry and tracing are off (``CREWAI_DISABLE_TELEMETRY``,
  ``OTEL_SDK_DISABLED``, ``CREWAI_TRACING_ENABLED``);
* ``AZTP_HOME`` points to a temporary directory made for this test session, so nothing
  (``Aztp()`` without ``home``, ``default_client()``, the CLI) ever touches ``~/.aztp``.

Fixtures (generic; add more below, one per concern):

* ``aztp_home``   - a fresh, not yet existing embedded-authority folder for this test;
* ``make_client`` - factory ``make_client(home=None, **kwargs) -> Aztp`` (defaults:
  ``home=aztp_home``, ``trust_domain="astha.ai"``); every authority it opened is closed at
  teardown;
* ``client``      - ``Aztp(home=aztp_home, trust_domain="astha.ai")``;
* ``authority`` / ``principal`` - the embedded :class:`~aztp_agents.authority.Authority`
  behind ``client`` and the principal ``client`` acts as;
* ``db_path``     - the SQLite file of ``client`` (``aztp_home / "aztp.db"``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ["CREWAI_DISABLE_TELEMETRY"] = "true"
os.environ["OTEL_SDK_DISABLED"] = "true"
os.environ["CREWAI_TRACING_ENABLED"] = "false"

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="aztp-test-home-"))
os.environ["AZTP_HOME"] = str(_SESSION_HOME)

from aztp_agents import Aztp  # noqa: E402 - after the environment is set
from tests.support.cli import close_embedded  # noqa: E402

TRUST_DOMAIN = "astha.ai"


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def session_aztp_home() -> Path:
    """The session-wide ``AZTP_HOME`` (shared by every test that uses the default home)."""
    return _SESSION_HOME


@pytest.fixture(autouse=True)
def _aztp_home_is_isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with ``AZTP_HOME`` at the session folder, never ``~/.aztp``."""
    monkeypatch.setenv("AZTP_HOME", str(_SESSION_HOME))


@pytest.fixture
def aztp_home(tmp_path: Path) -> Path:
    """A folder for an embedded authority; it does not exist yet (the library makes it)."""
    return tmp_path / "aztp-home"


@pytest.fixture
def make_client(aztp_home: Path) -> Iterator[Callable[..., Aztp]]:
    """``make_client(home=None, **kwargs)``: an embedded client (``trust_domain`` defaults to
    ``astha.ai``); clients on the same home share one authority, as in production."""
    homes: set[Path] = set()

    def make(home: Path | str | None = None, **kwargs: Any) -> Aztp:
        path = Path(home) if home is not None else aztp_home
        kwargs.setdefault("trust_domain", TRUST_DOMAIN)
        homes.add(path)
        return Aztp(home=path, **kwargs)

    yield make
    for home in homes:
        close_embedded(home)


@pytest.fixture
def client(make_client: Callable[..., Aztp]) -> Aztp:
    """The embedded AZTP authority of this test: ``Aztp(home=tmp, trust_domain="astha.ai")``."""
    return make_client()


@pytest.fixture
def authority(client: Aztp) -> Any:
    return client.backend.authority  # type: ignore[attr-defined]


@pytest.fixture
def principal(client: Aztp) -> Any:
    return client.backend.principal  # type: ignore[attr-defined]


@pytest.fixture
def db_path(client: Aztp, aztp_home: Path) -> Path:
    return aztp_home / "aztp.db"


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Any]:
    """One throwaway PostgreSQL cluster for the session (Debian's package; ``.ci/run``
    installs it). Missing PostgreSQL fails the tests that need it: nothing is skipped."""
    from tests.support.postgres import PostgresCluster

    cluster = PostgresCluster.start()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def master_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh ``AZTP_MASTER_KEY`` for this test (a database store needs one)."""
    import base64

    key = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("AZTP_MASTER_KEY", key)
    return key


@pytest.fixture
def pg_empty_url(postgres_cluster: Any, master_key: str) -> str:
    """A fresh, empty PostgreSQL database of the session's cluster (its SQLAlchemy URL), not
    yet migrated: every opener refuses it until ``aztp-agents db upgrade``."""
    return str(postgres_cluster.database())


@pytest.fixture
def pg_url(pg_empty_url: str) -> str:
    """A fresh PostgreSQL database at the schema head (as ``aztp-agents db upgrade`` leaves
    it), ready for any process to open."""
    from aztp_agents.store.migrations import upgrade_database

    upgrade_database(pg_empty_url)
    return pg_empty_url
