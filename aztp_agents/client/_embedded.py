"""The embedded backend: operations on an in-process :class:`~aztp_agents.authority.Authority`.

``Aztp()`` without ``base_url`` opens (once per process and database file) an authority on a
SQLite file under ``home`` (else ``$AZTP_HOME``, else ``~/.aztp``) and acts as one principal
of it: the local organization's user, the owner of an API key, or a named user.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio.to_thread

from ..authority import Authority, Principal
from ..decisions import Decision
from ..errors import AuthenticationError
from ..store import Store

__all__ = ["EmbeddedBackend", "open_embedded", "resolve_home"]

#: One authority per database (file or URL) in a process: clients on the same home or
#: database share its decision state and change detection.
_AUTHORITIES: dict[Path | str, Authority] = {}
_AUTHORITIES_LOCK = threading.Lock()


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """``home``, else ``$AZTP_HOME``, else ``~/.aztp``."""
    return Path(home or os.environ.get("AZTP_HOME") or Path.home() / ".aztp").expanduser()


def _authority_for(home: Path, trust_domain: str | None) -> Authority:
    path = (home / "aztp.db").resolve()
    with _AUTHORITIES_LOCK:
        authority = _AUTHORITIES.get(path)
        if authority is None:
            authority = Authority(
                Store.open_sqlite(path), default_trust_domain=trust_domain or "aztp.local"
            )
            _AUTHORITIES[path] = authority
        return authority


def _authority_for_url(url: str, trust_domain: str | None) -> Authority:
    with _AUTHORITIES_LOCK:
        authority = _AUTHORITIES.get(url)
        if authority is None:
            authority = Authority(
                Store.open_url(url), default_trust_domain=trust_domain or "aztp.local"
            )
            _AUTHORITIES[url] = authority
        return authority


def open_embedded(
    home: Path,
    trust_domain: str | None,
    *,
    api_key: str | None,
    user: str | None,
    database_url: str | None = None,
) -> EmbeddedBackend:
    """The backend of ``Aztp(home=..., api_key=..., user=...)``: the owner of ``api_key`` if
    given, else ``user`` of the local organization, else the local principal. With
    ``database_url`` the store is that database (e.g. PostgreSQL shared by several
    processes), not the SQLite file under ``home``."""
    authority = (
        _authority_for_url(database_url, trust_domain)
        if database_url
        else _authority_for(home, trust_domain)
    )
    where = Store.describe_url(database_url) if database_url else str(home)
    if api_key:
        try:
            principal = authority.authenticate(api_key)
        except AuthenticationError as exc:
            raise AuthenticationError(
                f"{exc.message} for the embedded authority at {where}: omit api_key for the "
                "local organization, use a live key made with 'aztp-agents keys create', or pass "
                "base_url= to talk to a server"
            ) from None
    elif user:
        principal = authority.principal_for(authority.org_by_name("local"), user)
    else:
        principal = authority.local_principal()
    return EmbeddedBackend(authority, principal)


class EmbeddedBackend:
    """Operations on an in-process :class:`Authority`, as one principal."""

    is_remote = False
    #: Decisions are taken in memory (no network): the Guard may call :meth:`decide` directly.
    bounded_decisions = True

    def __init__(self, authority: Authority, principal: Principal) -> None:
        self.authority = authority
        self.principal = principal
        #: Where the guard's decisions go (no I/O while the state is in memory).
        self.decision_point = authority.decision_point(principal)

    def call(self, op: str, /, **kwargs: Any) -> Any:
        return getattr(self.authority, op)(self.principal, **kwargs)

    async def acall(self, op: str, /, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(functools.partial(self.call, op, **kwargs))

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Blocking :meth:`call` s made in this thread inside commit together (see
        :meth:`Authority.batch`)."""
        return self.authority.batch()

    def decide(
        self,
        *,
        flow_id: str,
        agent: str,
        tool: str,
        tool_name: str | None = None,
        context: Mapping[str, Any] | None = None,
        enforce: bool = True,
    ) -> Decision:
        return self.decision_point.decide(
            flow_id=flow_id,
            agent=agent,
            tool=tool,
            tool_name=tool_name,
            context=context,
            enforce=enforce,
        )

    async def adecide(self, **kwargs: Any) -> Decision:
        # No I/O on the loop: the state is in memory (change detection notices other
        # processes' writes) and the audit record is queued. A reload runs in a thread.
        return await self.decision_point.adecide(**kwargs)

    def record_decision(self, decision: Decision, context: Mapping[str, Any] | None = None) -> None:
        """Audit a decision the enforcement point took itself (a fail-closed denial)."""
        self.decision_point.record_decision(decision, context)

    def close(self) -> None:
        return None
