"""Schema migrations with Alembic on both engines (aztp_agents.store.migrations): a SQLite
store upgrades itself when opened; a database URL is migrated only by ``aztp-agents db
upgrade`` and refused, naming that command, until it is; a newer schema is refused by both."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from aztp_agents import Aztp
from aztp_agents.errors import StoreError
from aztp_agents.store import Store, migrations, schema
from tests.authority.helpers import REPO, run
from tests.support.cli import close_embedded


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aztp_agents.cli", *args],
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def _schema_diff(url: str) -> list[Any]:
    """What differs between the database's tables and schema.py (alembic autogenerate)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    finally:
        engine.dispose()
    return [d for d in diff if not (d[0] == "remove_table" and d[1].name == "alembic_version")]


def _tables(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            from sqlalchemy import inspect

            return sorted(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def _execute(url: str, *statements: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for s in statements:
                conn.execute(text(s))
    finally:
        engine.dispose()


# --- SQLite: upgrades itself --------------------------------------------------------------


def test_a_new_sqlite_store_is_at_the_head_revision_and_matches_the_schema(
    client: Aztp, aztp_home: Path
) -> None:
    run(client.secure_connect({}, "first"))
    url = f"sqlite+pysqlite:///{aztp_home / 'aztp.db'}"
    assert migrations.database_state(url).revision == migrations.head()
    assert _schema_diff(url) == []


def test_a_store_made_before_alembic_is_stamped_at_the_baseline_and_keeps_its_data(
    make_client: Any, aztp_home: Path
) -> None:
    client = make_client()
    (agent,) = [run(client.secure_connect({}, "kept")).identity.aztp_id]
    close_embedded(aztp_home)
    con = sqlite3.connect(aztp_home / "aztp.db")
    with con:  # a schema-5 store as the code before Alembic left it
        con.execute("DROP TABLE alembic_version")
    con.close()

    listed = _cli("--home", str(aztp_home), "--json", "db", "current")
    assert listed.returncode == 1  # not at head: a script can test it
    assert json.loads(listed.stdout)["describe"] == "schema version 5, before Alembic"

    reopened = make_client()  # the embedded store upgrades itself when opened
    assert run(reopened.verify_identity_by_aztp_id(agent)) is True
    con = sqlite3.connect(aztp_home / "aztp.db")
    try:
        assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (migrations.BASELINE,)
        ]
    finally:
        con.close()
    done = _cli("--home", str(aztp_home), "db", "current")
    assert done.returncode == 0 and "(head)" in done.stdout


def test_db_upgrade_on_a_home_makes_the_store_and_is_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = _cli("--home", str(home), "db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert "upgraded from no aztp-agents schema to 0005 (head)" in first.stdout
    again = _cli("--home", str(home), "db", "upgrade")
    assert again.returncode == 0 and "already at 0005 (head)" in again.stdout


def test_a_store_newer_than_this_code_is_refused_on_sqlite(
    make_client: Any, aztp_home: Path
) -> None:
    make_client()
    close_embedded(aztp_home)
    con = sqlite3.connect(aztp_home / "aztp.db")
    with con:
        con.execute("UPDATE alembic_version SET version_num = '9999'")
    con.close()
    with pytest.raises(StoreError, match="newer than this aztp-agents understands"):
        Store.open_sqlite(aztp_home / "aztp.db")


# --- PostgreSQL: only `db upgrade` migrates -----------------------------------------------


def test_an_unmigrated_database_is_refused_naming_db_upgrade_and_nothing_is_written(
    pg_empty_url: str,
) -> None:
    with pytest.raises(StoreError) as err:
        Store.open_url(pg_empty_url)
    message = str(err.value)
    assert "no aztp-agents schema" in message
    assert "aztp-agents db upgrade --database-url postgresql://aztp@127.0.0.1:" in message
    assert _tables(pg_empty_url) == []
    with pytest.raises(StoreError, match="db upgrade"):
        Aztp(database_url=pg_empty_url)


def test_serve_refuses_an_unmigrated_database_then_db_upgrade_lets_every_opener_in(
    pg_empty_url: str, tmp_path: Path
) -> None:
    plain_url = pg_empty_url.replace("postgresql+psycopg://", "postgresql://")
    served = _cli("serve", "--database-url", plain_url, "--port", "1")
    assert served.returncode == 5, served.stderr
    assert f"run 'aztp-agents db upgrade --database-url {plain_url}'" in served.stderr
    assert _tables(pg_empty_url) == []

    current = _cli("db", "current", "--database-url", plain_url)
    assert current.returncode == 1 and "no aztp-agents schema" in current.stdout

    upgraded = _cli("db", "upgrade", "--database-url", plain_url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "upgraded from no aztp-agents schema to 0005 (head)" in upgraded.stdout
    assert _schema_diff(pg_empty_url) == []
    again = _cli("--json", "db", "upgrade", env={"AZTP_DATABASE_URL": plain_url})
    assert again.returncode == 0 and json.loads(again.stdout)["before"] == "0005"
    current = _cli("--json", "db", "current", "--database-url", plain_url)
    assert current.returncode == 0
    assert json.loads(current.stdout) == {
        "database": plain_url.split("@")[-1],
        "revision": "0005",
        "head": "0005",
        "up_to_date": True,
        "describe": "0005",
    }

    client = Aztp(database_url=pg_empty_url, trust_domain="astha.ai")
    try:
        assert run(client.secure_connect({}, "after-upgrade")).identity.aztp_id
    finally:
        from tests.store.test_postgres import _close

        _close(pg_empty_url)


def test_a_database_made_before_alembic_is_refused_then_stamped_by_db_upgrade(
    pg_url: str,
) -> None:
    Store.open_url(pg_url).close()
    _execute(pg_url, "DROP TABLE alembic_version")
    with pytest.raises(StoreError, match=r"schema version 5, before Alembic.*db upgrade"):
        Store.open_url(pg_url)
    before, after = migrations.upgrade_database(pg_url)
    assert (before.legacy_version, after.revision) == (5, migrations.BASELINE)
    Store.open_url(pg_url).close()


def test_a_database_newer_than_this_code_is_refused_and_db_upgrade_leaves_it_alone(
    pg_url: str,
) -> None:
    _execute(pg_url, "UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StoreError, match="newer than this aztp-agents understands"):
        Store.open_url(pg_url)
    with pytest.raises(StoreError, match="newer"):
        migrations.upgrade_database(pg_url)
    assert migrations.database_state(pg_url).revision == "9999"


def test_the_revisions_named_in_code_are_the_shipped_scripts() -> None:
    """Opening a store at the head does not import Alembic: the code names its revisions."""
    shipped = [s.revision for s in reversed(list(migrations.scripts().walk_revisions()))]
    assert list(migrations.REVISIONS) == shipped
    assert migrations.scripts().get_current_head() == migrations.HEAD


def test_opening_a_store_at_the_head_does_not_import_alembic(tmp_path: Path) -> None:
    assert _cli("--home", str(tmp_path / "h"), "db", "upgrade").returncode == 0
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from aztp_agents.store import Store\n"
        "Store.open_sqlite(Path(sys.argv[1])).close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "h" / "aztp.db")],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
