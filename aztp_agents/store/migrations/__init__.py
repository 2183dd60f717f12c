"""Schema migrations of the store: Alembic, on SQLite and PostgreSQL alike.

The revisions ship inside the package (``versions/``); the first, ``0005``, is the schema of
store schema version 5, the last one migrated by hand (:mod:`.legacy`). Alembic runs only
programmatically, inside the caller's transaction, so a migration and the check of what it
starts from are one atomic step.

**The rule** (docs/server.md, "Schema migrations"):

* a **SQLite file** (the embedded default, ``aztp-agents serve --home``) upgrades itself when
  it is opened: one host owns it, and the first hour must not start with a migration step;
* a **database URL** (PostgreSQL, shared by replicas) is upgraded only by
  ``aztp-agents db upgrade --database-url URL``, once per deploy; every process that opens it
  (``serve``, the CLI, ``Aztp(database_url=...)``) refuses an empty or outdated schema with a
  message naming that command. Replicas then never race a migration, and a replica of an
  older release never runs on a schema it does not know;
* a schema **newer** than this code knows is refused everywhere (upgrade aztp-agents).

A new schema change is a new file in ``versions/`` (from ``script.py.mako``; the operations can
be generated with Alembic's ``compare_metadata`` against a database at the previous head, as
the baseline was): the next number as its revision, the previous head as ``down_revision``,
forward only, setting ``meta.schema_version`` to its number. Add its id to :data:`REVISIONS`
(a test checks the two agree, and that a migrated database matches ``schema.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, create_engine, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from ...errors import StoreError
from .. import schema
from .legacy import LEGACY_HEAD, migrate_to_baseline

if TYPE_CHECKING:  # Alembic costs ~1 s to import: only when a migration runs
    from alembic.config import Config
    from alembic.script import ScriptDirectory

__all__ = [
    "BASELINE",
    "HEAD",
    "REVISIONS",
    "SchemaState",
    "database_state",
    "head",
    "lock",
    "refuse_unusable",
    "state_of",
    "upgrade",
    "upgrade_database",
]

#: The revision a pre-Alembic store at schema version 5 is stamped at.
BASELINE = "0005"
#: Every revision in ``versions/``, oldest first, and the last one. Kept here so that opening a
#: store at the head (every open but the first after an upgrade) does not import Alembic;
#: tests/store/test_migrations.py checks them against the scripts.
REVISIONS = ("0005",)
HEAD = REVISIONS[-1]
_HERE = Path(__file__).parent
#: Any constant key: opening or migrating a PostgreSQL store holds this advisory lock, so
#: two replicas starting at once (or a ``db upgrade`` beside them) take turns.
_LOCK_KEY = 0x415A5450  # "AZTP"


def _config(conn: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


@functools.lru_cache(maxsize=1)
def scripts() -> ScriptDirectory:
    """The Alembic script directory of the shipped revisions."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The revision this code writes."""
    return HEAD


@dataclass(frozen=True)
class SchemaState:
    """Where a database's schema is: its Alembic ``revision`` (None: not under Alembic), the
    pre-Alembic ``legacy_version`` (0: none), and whether anything of ours is there."""

    revision: str | None
    legacy_version: int
    has_tables: bool

    @property
    def empty(self) -> bool:
        return self.revision is None and self.legacy_version == 0

    @property
    def up_to_date(self) -> bool:
        return self.revision == head()

    @property
    def newer(self) -> bool:
        """Written by a newer aztp-agents (a revision unknown here, or a legacy version above
        the last hand-made one)."""
        if self.revision is None:
            return self.legacy_version > LEGACY_HEAD
        return self.revision not in REVISIONS

    def describe(self) -> str:
        if self.revision is not None:
            return self.revision
        if self.legacy_version:
            return f"schema version {self.legacy_version}, before Alembic"
        return "no aztp-agents schema" + (" (other tables present)" if self.has_tables else "")


def state_of(conn: Connection) -> SchemaState:
    """The schema state, read without writing (and without Alembic's logging)."""
    names = set(inspect(conn).get_table_names())
    revision = None
    if "alembic_version" in names:
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    legacy = 0
    if "meta" in names:
        row = conn.execute(
            select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")
        ).scalar()
        legacy = int(row) if row is not None else 0
    return SchemaState(revision, legacy, bool(names))


def lock(conn: Connection) -> None:
    """Serialize openers and migrators of one PostgreSQL database (released at commit).
    SQLite needs none: the caller's ``BEGIN IMMEDIATE`` already takes the write lock."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})


def refuse_unusable(state: SchemaState, where: str, *, url: str | None = None) -> None:
    """Refuse a schema this code cannot use as it is: newer (always); outdated or empty (when
    ``url`` is given, i.e. a database URL, which only ``db upgrade`` migrates)."""
    if state.newer:
        raise StoreError(
            f"the store at {where} has schema {state.describe()}, newer than this "
            f"aztp-agents understands ({head()}); upgrade aztp-agents"
        )
    if url is not None and not state.up_to_date:
        raise StoreError(
            f"the database at {where} has {state.describe()}; this aztp-agents needs "
            f"{head()}: run 'aztp-agents db upgrade --database-url {display_url(url)}' "
            "once (a database URL is never migrated implicitly), then start again"
        )


def display_url(url: str) -> str:
    """``url`` as it may be shown (password masked), in the form users type."""
    try:
        parsed = make_url(url)
    except Exception:
        return "URL"
    if parsed.drivername.startswith("postgresql"):
        parsed = parsed.set(drivername="postgresql")
    return parsed.render_as_string(hide_password=True)


def upgrade(conn: Connection) -> tuple[SchemaState, SchemaState]:
    """Bring the schema to :func:`head` inside the caller's transaction: a pre-Alembic store
    through :mod:`.legacy` to version 5 and stamped at the baseline, then Alembic. Returns
    the state before and after."""
    from alembic import command

    before = state_of(conn)
    if before.newer:
        refuse_unusable(before, "this database")
    if before.revision is None and before.legacy_version:
        migrate_to_baseline(conn, before.legacy_version)
        command.stamp(_config(conn), BASELINE)
    if not state_of(conn).up_to_date:
        command.upgrade(_config(conn), "head")
    return before, state_of(conn)


@contextmanager
def _connection(url: str) -> Iterator[Connection]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn, conn.begin():
            lock(conn)
            yield conn
    except SQLAlchemyError as exc:
        raise StoreError(
            f"cannot use the database at {display_url(url)}: "
            f"{exc.__class__.__name__}: {exc.args[0] if exc.args else ''}"
        ) from None
    finally:
        engine.dispose()


def upgrade_database(url: str) -> tuple[SchemaState, SchemaState]:
    """``aztp-agents db upgrade`` on a database URL (one transaction: all or nothing)."""
    with _connection(url) as conn:
        return upgrade(conn)


def database_state(url: str) -> SchemaState:
    """``aztp-agents db current`` on a database URL."""
    with _connection(url) as conn:
        return state_of(conn)
