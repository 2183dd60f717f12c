"""The global options of one ``aztp-agents`` run, shared by every command through ``ctx.obj``."""

from __future__ import annotations

from dataclasses import dataclass

import typer

__all__ = ["State", "state_of"]


@dataclass
class State:
    """Global options: where the authority is and how to print."""

    home: str | None = None
    url: str | None = None
    database_url: str | None = None  # may hold a password: never printed
    api_key: str | None = None  # never printed
    json: bool = False
    debug: bool = False
    url_from_env: bool = False
    home_explicit: bool = False
    database_explicit: bool = False  # --database-url on the command line

    def embedded_database(self) -> str | None:
        """The database the embedded store is on (``--database-url`` / ``AZTP_DATABASE_URL``),
        unless ``--home`` was given on the command line (it wins, as ``Aztp(home=...)``)."""
        return None if self.home_explicit else self.database_url

    def __repr__(self) -> str:  # keep the key out of any debug output
        return f"State(home={self.home!r}, url={self.url!r}, json={self.json}, debug={self.debug})"


def state_of(ctx: typer.Context) -> State:
    """The run's :class:`State` (a default one when a command is invoked without the group)."""
    state = ctx.find_object(State)
    if state is None:
        state = ctx.ensure_object(State)
    return state
