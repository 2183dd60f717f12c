"""``aztp-agents db``: the store's schema migrations (Alembic).

A SQLite store upgrades itself when opened; a database URL (PostgreSQL, shared by replicas)
only through ``db upgrade``, run once per deploy before the replicas start (the rule is
:mod:`aztp_agents.store.migrations`'s).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._app import sub_app
from ._errors import EXIT_NEGATIVE, EXIT_OK, refuse_remote
from ._options import JsonOpt
from ._output import emit, say
from ._state import state_of

if TYPE_CHECKING:  # the store (SQLAlchemy, Alembic) is imported when a command runs
    from ..store.migrations import SchemaState

db_app = sub_app("db", "The store's schema: migrations (PostgreSQL: before starting servers).")

DatabaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        metavar="URL",
        show_default=False,
        help="The database (postgresql://...), as the global --database-url; else --home's file.",
    ),
]


def _target(ctx: typer.Context, database_url: str | None) -> tuple[str, str | None]:
    """(what to show, database URL or None for the SQLite file under --home)."""
    state = state_of(ctx)
    url = database_url or state.embedded_database()
    if not url:  # a database URL names the store outright; else --home's, never a server's
        refuse_remote(
            state,
            "'db' works on a store, not a server: use --database-url URL or --home DIR, not --url",
            home_explicit=state.home_explicit,
        )
    if url:
        from ..store import Store

        url = Store.normalize_url(url)
        return Store.describe_url(url), url
    from ..client import resolve_home

    return str(resolve_home(state.home) / "aztp.db"), None


def _sqlite_url(path: str) -> str:
    return f"sqlite+pysqlite:///{path}"


def _report(where: str, state: SchemaState) -> dict[str, Any]:
    from ..store import migrations

    return {
        "database": where,
        "revision": state.revision,
        "head": migrations.head(),
        "up_to_date": state.up_to_date,
        "describe": state.describe(),
    }


@db_app.command("current")
def db_current(
    ctx: typer.Context, database_url: DatabaseUrlOpt = None, as_json: JsonOpt = False
) -> None:
    """Show the schema revision of the store and whether it is the one this aztp-agents
    needs (exit code 1 when it is not: run 'db upgrade')."""
    from ..store import migrations

    where, url = _target(ctx, database_url)
    if url is None:
        if not Path(where).exists():
            state = migrations.SchemaState(None, 0, False)
        else:
            state = migrations.database_state(_sqlite_url(where))
    else:
        state = migrations.database_state(url)
    report = _report(where, state)

    def human() -> None:
        if state.up_to_date:
            say(f"{where}: {state.revision} (head)", "green")
        else:
            say(f"{where}: {state.describe()}; this aztp-agents needs {report['head']}", "yellow")
            say("run: aztp-agents db upgrade" + _url_flag(url))

    emit(ctx, as_json, report, human)
    raise typer.Exit(EXIT_OK if state.up_to_date else EXIT_NEGATIVE)


@db_app.command("upgrade")
def db_upgrade(
    ctx: typer.Context, database_url: DatabaseUrlOpt = None, as_json: JsonOpt = False
) -> None:
    """Bring the store's schema to this aztp-agents' revision, in one transaction (a store
    made before Alembic is migrated and stamped). Run it once per deploy, before servers on
    the database start; running it again changes nothing."""
    from ..store import Store, migrations

    where, url = _target(ctx, database_url)
    if url is not None:
        before, after = migrations.upgrade_database(url)
    else:
        # A SQLite store upgrades itself when opened (under its write lock, with its master
        # key check): opening it is the upgrade.
        path = Path(where)
        before = (
            migrations.database_state(_sqlite_url(where))
            if path.exists()
            else migrations.SchemaState(None, 0, False)
        )
        Store.open_sqlite(path).close()
        after = migrations.database_state(_sqlite_url(where))
    report = {**_report(where, after), "before": before.describe()}

    def human() -> None:
        if before.revision == after.revision:
            say(f"{where}: already at {after.revision} (head)", "green")
        else:
            say(f"{where}: upgraded from {before.describe()} to {after.revision} (head)", "green")

    emit(ctx, as_json, report, human)


def _url_flag(url: str | None) -> str:
    from ..store import migrations

    return f" --database-url '{migrations.display_url(url)}'" if url else ""
