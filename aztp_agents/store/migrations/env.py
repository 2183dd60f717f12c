"""Alembic environment of the store: always run programmatically, inside the caller's
transaction (see :mod:`aztp_agents.store.migrations`), never from an ``alembic.ini``."""

from __future__ import annotations

from alembic import context

from aztp_agents.store import schema

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=schema.metadata,
    # SQLite cannot ALTER most things: future revisions rebuild tables in batch mode there.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():  # the caller's transaction: nothing commits here
    context.run_migrations()
