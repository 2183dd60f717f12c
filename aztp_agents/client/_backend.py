"""The backend seam: where a client's operations and tool-call decisions go.

Two implementations: :class:`~aztp_agents.client.EmbeddedBackend` (an in-process authority)
and :class:`~aztp_agents.remote.RemoteBackend` (an ``aztp-agents serve`` server, decisions
from a local replica). Operations are named as the authority's methods (``secure_connect``,
``revoke_identity``, ...), keyword arguments as theirs; the answers are the authority's
(plain dicts and lists, the wire documents).

A backend may also declare ``bounded_decisions = True``: its :meth:`Backend.decide` never waits
on the network longer than a small bound (both built-in backends do), so an enforcement point
may call it directly rather than under its own timeout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ..decisions import Decision

__all__ = ["Backend"]


class Backend(Protocol):
    """Where operations go: the in-process authority or a remote server."""

    def call(self, op: str, /, **kwargs: Any) -> Any: ...
    async def acall(self, op: str, /, **kwargs: Any) -> Any: ...
    def decide(
        self,
        *,
        flow_id: str,
        agent: str,
        tool: str,
        tool_name: str | None,
        context: Mapping[str, Any] | None,
        enforce: bool,
    ) -> Decision: ...
    async def adecide(
        self,
        *,
        flow_id: str,
        agent: str,
        tool: str,
        tool_name: str | None,
        context: Mapping[str, Any] | None,
        enforce: bool,
    ) -> Decision: ...
    @property
    def is_remote(self) -> bool: ...
    def close(self) -> None: ...
