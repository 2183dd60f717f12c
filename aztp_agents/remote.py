"""The remote backend's import path: :class:`RemoteBackend` and its route table.

Defined in :mod:`aztp_agents.client` (``_remote``: the backend; ``_routes``: the route table;
``_transport``: sending and error mapping; ``_replica``: the followed decision state).
"""

from __future__ import annotations

from .client._remote import RemoteBackend
from .client._replica import snapshot_from_state
from .client._routes import ROUTES, Route

__all__ = ["ROUTES", "RemoteBackend", "Route", "snapshot_from_state"]
