"""The AZTP clients: the official ``aztp-client`` API, embedded or remote.

``Aztp()`` runs the authority in-process on a SQLite file under ``home`` (else
``$AZTP_HOME``, else ``~/.aztp``). ``Aztp(api_key=..., base_url=...)`` talks to an
``aztp-agents serve`` server. Same methods, same answers.

:class:`Aztp` has coroutine methods, :class:`SyncAztp` the same methods blocking (also as
``Aztp(...).sync``); both run one set of plans (``_base``) over a :class:`Backend`:
:class:`EmbeddedBackend` (``_embedded``) or :class:`~aztp_agents.remote.RemoteBackend`
(``_remote``: ``_routes``, ``_transport``, ``_replica``).
"""

from __future__ import annotations

import threading
from typing import Any

from ..config import AztpConfig
from ._async import Aztp
from ._backend import Backend
from ._embedded import _AUTHORITIES as _AUTHORITIES  # tests close cached authorities
from ._embedded import _AUTHORITIES_LOCK as _AUTHORITIES_LOCK
from ._embedded import EmbeddedBackend, open_embedded, resolve_home
from ._secured_agent import SecuredAgent
from ._sync import SyncAztp

__all__ = [
    "Aztp",
    "Backend",
    "EmbeddedBackend",
    "RemoteBackend",
    "SecuredAgent",
    "SyncAztp",
    "default_client",
    "open_embedded",
    "resolve_home",
]

_DEFAULTS: dict[AztpConfig, Aztp] = {}
_DEFAULT_LOCK = threading.Lock()


def default_client() -> Aztp:
    """The process-wide client adapters use when given none: for the configuration the
    environment gives now (``AZTP_URL`` / ``AZTP_API_KEY`` / ``AZTP_DATABASE_URL`` /
    ``AZTP_HOME``, read as ``Aztp()`` and the CLI read them), so a test that moves
    ``AZTP_HOME`` gets a client on its own home."""
    config = AztpConfig.from_env()
    with _DEFAULT_LOCK:
        client = _DEFAULTS.get(config)
        if client is None:
            client = _DEFAULTS[config] = (
                Aztp(api_key=config.api_key, base_url=config.url)
                if config.url
                else Aztp(database_url=config.database_url)
                if config.database_url
                else Aztp(home=config.resolved_home())
            )
        return client


def __getattr__(name: str) -> Any:
    # The remote backend pulls in httpx and tenacity: imported when first asked for.
    if name == "RemoteBackend":
        from ._remote import RemoteBackend

        return RemoteBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
