"""What a running server shares between its routes and its middleware: the authority it
serves, the store watcher (change feed, key-table generation) and the API-key cache.

One :class:`ServerContext` is made per application by :func:`~aztp_agents.server.create_app`
and kept on ``app.state.aztp``; routes reach it through the dependencies of
:mod:`.routes.dependencies`, the verify fast path is handed it directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..authority import Authority
from .feed import AuthCache, StoreWatcher

if TYPE_CHECKING:
    from .metrics import ServerMetrics

__all__ = ["ServerContext"]


@dataclass
class ServerContext:
    authority: Authority
    watcher: StoreWatcher
    auth_cache: AuthCache
    #: The Prometheus instruments, when ``/metrics`` is enabled (a token is configured).
    metrics: ServerMetrics | None = None
