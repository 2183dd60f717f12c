"""The migrations of stores made before Alembic (schema versions 1 to 5, kept in
``meta.schema_version``). A store below version 5 is brought to 5 here, then stamped at the
Alembic baseline (revision ``0005``); nothing here runs for a store made since."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, inspect, text, update

from .. import schema

#: The last version this code migrates to; the Alembic baseline is this schema.
LEGACY_HEAD = 5


def _migrate_2(conn: Connection) -> None:
    """Flow-scoped links: the ``link_flows`` table. Existing links get no row, so they stay
    organization-wide, as they were."""
    schema.link_flows.create(conn, checkfirst=True)


def _migrate_3(conn: Connection) -> None:
    """Operator intent: the ``link_removals`` table (links an operator removed, which
    enrollment must not re-create). A store older than this has none recorded."""
    schema.link_removals.create(conn, checkfirst=True)


def _migrate_4(conn: Connection) -> None:
    """Policy codes unique per organization: ``policies`` keyed by (org_id, code), and
    ``policy_attachments`` by (org_id, code, aztp_id) referencing it. Neither SQLite nor
    this code alters a primary key in place: the two tables are rebuilt, rows copied as
    stored (through plain ``CREATE TABLE ... AS SELECT`` copies, so JSON is not re-encoded)."""
    if "org_id" in inspect(conn).get_pk_constraint("policies")["constrained_columns"]:
        return
    conn.execute(
        text(
            "CREATE TABLE policies_v3 AS SELECT org_id, code, name, document, created_at"
            " FROM policies"
        )
    )
    conn.execute(
        text(
            "CREATE TABLE policy_attachments_v3 AS SELECT org_id, code, aztp_id FROM policy_attachments"
        )
    )
    schema.policy_attachments.drop(conn)
    schema.policies.drop(conn)
    schema.policies.create(conn)
    schema.policy_attachments.create(conn)
    conn.execute(
        text(
            "INSERT INTO policies (org_id, code, name, document, created_at)"
            " SELECT org_id, code, name, document, created_at FROM policies_v3"
        )
    )
    conn.execute(
        text(
            "INSERT INTO policy_attachments (org_id, code, aztp_id)"
            " SELECT org_id, code, aztp_id FROM policy_attachments_v3"
        )
    )
    conn.execute(text("DROP TABLE policy_attachments_v3"))
    conn.execute(text("DROP TABLE policies_v3"))


def _migrate_5(conn: Connection) -> None:
    """The change log (``state_changes``, ``change_heads``) and ``store_settings``. Existing
    organizations start at position 0 with no rows: a follower loads their whole state once."""
    schema.state_changes.create(conn, checkfirst=True)
    schema.change_heads.create(conn, checkfirst=True)
    schema.store_settings.create(conn, checkfirst=True)


MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    2: _migrate_2,
    3: _migrate_3,
    4: _migrate_4,
    5: _migrate_5,
}


def migrate_to_baseline(conn: Connection, version: int) -> None:
    """Bring a pre-Alembic store at ``version`` (1 to 5) to version 5, in the caller's
    transaction."""
    for v in range(version + 1, LEGACY_HEAD + 1):
        MIGRATIONS[v](conn)
    if version < LEGACY_HEAD:
        conn.execute(
            update(schema.meta)
            .where(schema.meta.c.key == "schema_version")
            .values(value=LEGACY_HEAD)
        )
