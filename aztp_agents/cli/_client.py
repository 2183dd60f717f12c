"""How commands reach the authority.

Every AZTP operation goes through the public :class:`~aztp_agents.Aztp` facade (:func:`run`),
so the embedded store and a server behave the same. Two things the facade does not offer yet
have one named door each, so the next step can replace them by a typed client API without
touching any command:

* :func:`embedded_authority`: the admin commands (organizations, users, API keys) work on the
  embedded store's :class:`~aztp_agents.authority.Authority` itself, through the typed
  :func:`~aztp_agents.client.open_embedded` backend;
* :func:`authorize_connection`: ``verify --to`` needs the whole answer (reason and message) of
  the connection check, not just the boolean of ``verify_authorize_identity_connection``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from ..errors import AuthorityUnavailableError
from ._errors import refuse_remote
from ._state import State, state_of

if TYPE_CHECKING:
    from ..authority import Authority, Principal
    from ..client import Aztp

__all__ = ["authorize_connection", "client_for", "embedded_authority", "run"]

T = TypeVar("T")


def client_for(state: State) -> Aztp:
    """A fresh client: remote with ``--url``, else embedded on ``--home``."""
    from ..client import Aztp

    if state.url:
        try:
            return Aztp(api_key=state.api_key, base_url=state.url)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("aztp_agents"):
                raise AuthorityUnavailableError(
                    "remote mode is not available in this installation (aztp_agents.remote is missing)"
                ) from None
            raise
    database_url = state.embedded_database()
    if database_url:
        return Aztp(api_key=state.api_key, database_url=database_url)
    return Aztp(api_key=state.api_key, home=state.home)


def run(ctx: typer.Context, fn: Callable[[Aztp], Awaitable[T]]) -> T:
    """Run one command's coroutine against a fresh client (the CLI is not inside a loop)."""
    import asyncio  # here, not at the top: `aztp-agents --help` never runs a loop

    client = client_for(state_of(ctx))

    async def go() -> T:
        try:
            return await fn(client)
        finally:
            client.close()

    return asyncio.run(go())


def embedded_authority(ctx: typer.Context, what: str) -> tuple[Authority, Principal]:
    """The embedded store's authority and its default principal, for the admin command ``what``."""
    state = state_of(ctx)
    refuse_remote(
        state,
        f"'{what}' manages the embedded store directly: run it on the server's host with "
        "--home DIR and without --url",
        home_explicit=state.home_explicit,
    )
    from ..client import open_embedded, resolve_home

    api_key = None if state.url else state.api_key
    backend = open_embedded(
        resolve_home(state.home),
        None,
        api_key=api_key,
        user=None,
        database_url=state.embedded_database(),
    )
    return backend.authority, backend.principal


async def authorize_connection(
    client: Aztp, source: str, target: str, policy_code: str | None
) -> dict[str, Any]:
    """The full answer of "may ``source`` connect to ``target``" (``valid``, reason, message)."""
    return dict(
        await client.backend.acall(
            "authorize_connection", source=source, target=target, policy_code=policy_code
        )
    )
