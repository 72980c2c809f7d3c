"""Alembic on both databases: up, down, up again, and no drift between models and migrations."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from taskapi.domain.names import canonical
from taskapi.infra.db import Base
from taskapi.infra.migrate import alembic_config
from tests.conftest import make_settings
from tests.lookalikes import fullwidth

# SQLAlchemy cannot reflect SQLite's expression indexes (lower(username), revision 0004): it
# says so, whenever a test inspects a database at that revision.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index"),
]


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_database_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
    server = request.getfixturevalue("postgres_server")
    name = f"migrations_{request.node.name.split('[')[0][-20:]}_{id(request) % 100000}"
    return server.create_database(name.lower())


async def _inspect(url: str) -> tuple[list[object], set[str], set[str]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:

            def look(sync_connection):
                context = MigrationContext.configure(sync_connection, opts={"compare_type": True})
                diff = compare_metadata(context, Base.metadata)
                inspector = inspect(sync_connection)
                tables = set(inspector.get_table_names())
                columns = (
                    {c["name"] for c in inspector.get_columns("tasks")}
                    if "tasks" in tables
                    else set()
                )
                return diff, tables, columns

            return await connection.run_sync(look)
    finally:
        await engine.dispose()


def test_upgrade_downgrade_upgrade_then_no_autogenerate_difference(fresh_database_url):
    config = alembic_config(make_settings(fresh_database_url))

    command.upgrade(config, "0001")
    _, tables, columns = asyncio.run(_inspect(fresh_database_url))
    assert {"users", "tasks"} <= tables
    assert "due_date" not in columns

    command.upgrade(config, "head")
    _, _, columns = asyncio.run(_inspect(fresh_database_url))
    assert "due_date" in columns

    command.downgrade(config, "base")
    _, tables, _ = asyncio.run(_inspect(fresh_database_url))
    assert tables <= {"alembic_version"}

    command.upgrade(config, "head")
    diff, _, _ = asyncio.run(_inspect(fresh_database_url))
    assert diff == []


def test_downgrade_to_0001_keeps_existing_rows(fresh_database_url):
    config = alembic_config(make_settings(fresh_database_url))
    command.upgrade(config, "head")

    async def insert_and_count(insert: bool) -> int:
        engine = create_async_engine(fresh_database_url)
        try:
            async with engine.begin() as connection:
                if insert:
                    await connection.execute(
                        text(
                            "INSERT INTO users (username, username_canonical, email, "
                            "email_canonical, password_hash) "
                            "VALUES ('u', 'u', 'u@example.com', 'u@example.com', 'x')"
                        )
                    )
                    await connection.execute(
                        text("INSERT INTO tasks (title, owner_id) SELECT 'kept', id FROM users")
                    )
                return (await connection.execute(text("SELECT count(*) FROM tasks"))).scalar_one()
        finally:
            await engine.dispose()

    assert asyncio.run(insert_and_count(True)) == 1
    command.downgrade(config, "0001")
    assert asyncio.run(insert_and_count(False)) == 1
    command.upgrade(config, "head")
    assert asyncio.run(insert_and_count(False)) == 1


def _run_sql(url: str, *statements: str) -> list[tuple]:
    """Run statements in one transaction; the rows of the last one."""

    async def go() -> list[tuple]:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                result = None
                for statement in statements:
                    result = await connection.execute(text(statement))
                return [tuple(row) for row in result] if result and result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _index_names(sync_connection, table: str) -> list[str]:
    """Index names (SQLAlchemy does not reflect SQLite's expression indexes: ask SQLite)."""
    if sync_connection.dialect.name != "sqlite":
        return [index["name"] for index in inspect(sync_connection).get_indexes(table)]
    query = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t AND sql != ''"
    return list(sync_connection.execute(text(query), {"t": table}).scalars())


def _schema_names(url: str) -> dict[str, set[str]]:
    """Every named constraint, index and foreign key (with its ON DELETE) of both tables."""

    async def go() -> dict[str, set[str]]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:

                def look(sync_connection) -> dict[str, set[str]]:
                    inspector = inspect(sync_connection)
                    names: dict[str, set[str]] = {}
                    for table in ("users", "tasks"):
                        names[table] = {
                            *(f"uq {u['name']}" for u in inspector.get_unique_constraints(table)),
                            *(f"ck {c['name']}" for c in inspector.get_check_constraints(table)),
                            *(f"ix {name}" for name in _index_names(sync_connection, table)),
                            *(
                                f"fk {f['name']} {f['options'].get('ondelete')}"
                                for f in inspector.get_foreign_keys(table)
                            ),
                        }
                    return names

                return await connection.run_sync(look)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_upgrade_from_0002_keeps_rows_and_every_name(fresh_database_url):
    config = alembic_config(make_settings(fresh_database_url))
    command.upgrade(config, "0002")
    before = _schema_names(fresh_database_url)
    _run_sql(
        fresh_database_url,
        "INSERT INTO users (username, email, password_hash) VALUES ('u', 'u@example.com', 'x')",
        "INSERT INTO tasks (title, owner_id) SELECT 'kept', id FROM users",
    )

    command.upgrade(config, "head")

    after = _schema_names(fresh_database_url)
    assert after["tasks"] == before["tasks"]
    assert after["users"] == before["users"] | {
        "ix uq_users_username_canonical",
        "ix uq_users_email_canonical",
    }
    rows = _run_sql(
        fresh_database_url,
        "SELECT u.username, u.token_generation, t.title FROM users u JOIN tasks t "
        "ON t.owner_id = u.id",
    )
    assert rows == [("u", 0, "kept")]


def test_upgrade_stops_on_accounts_that_differ_only_by_case(fresh_database_url):
    config = alembic_config(make_settings(fresh_database_url))
    command.upgrade(config, "0003")
    _run_sql(
        fresh_database_url,
        "INSERT INTO users (username, email, password_hash) VALUES ('alice', 'a@example.com', 'x')",
        "INSERT INTO users (username, email, password_hash) VALUES ('Alice', 'b@example.com', 'x')",
    )

    with pytest.raises(RuntimeError, match=r"differ only by case.*username: 'alice' \(2 rows\)"):
        command.upgrade(config, "0004")

    assert _run_sql(fresh_database_url, "SELECT count(*) FROM users") == [(2,)]


# --- 0005: canonical usernames and e-mail addresses --------------------------------------------

LOOK_ALIKES = [  # id, username, e-mail: distinct under 0004's lower() on both databases
    (1, "alice", "a@example.org"),
    (2, fullwidth("alice"), fullwidth("u") + "ser@example.org"),  # canonically those of 1 and 3
    (3, "bob", "user@example.org"),
]


def _insert_users(url: str, rows: list[tuple[int, str, str]], canonical_columns: bool) -> None:
    """Insert (id, username, email) rows as raw SQL, with their canonical forms if asked."""

    async def go() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                for user_id, username, email in rows:
                    values = {"id": user_id, "username": username, "email": email}
                    if canonical_columns:
                        values |= {
                            "username_canonical": canonical(username),
                            "email_canonical": canonical(email),
                        }
                    names = ", ".join(values)
                    marks = ", ".join(f":{name}" for name in values)
                    await connection.execute(
                        text(f"INSERT INTO users ({names}, password_hash) VALUES ({marks}, 'x')"),
                        values,
                    )
        finally:
            await engine.dispose()

    asyncio.run(go())


def _users_columns_and_ids(url: str) -> tuple[set[str], bool | None]:
    """The users table's column names, and on SQLite whether its ids are AUTOINCREMENT."""

    async def go() -> tuple[set[str], bool | None]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:

                def look(sync_connection) -> tuple[set[str], bool | None]:
                    columns = {c["name"] for c in inspect(sync_connection).get_columns("users")}
                    if sync_connection.dialect.name != "sqlite":
                        return columns, None
                    query = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'users'"
                    return columns, "AUTOINCREMENT" in sync_connection.execute(text(query)).scalar()

                return await connection.run_sync(look)
        finally:
            await engine.dispose()

    return asyncio.run(go())


HEAD = "0009"


def _revision(url: str) -> str:
    return _run_sql(url, "SELECT version_num FROM alembic_version")[0][0]


def test_upgrade_stores_each_accounts_canonical_forms(fresh_database_url):
    config = alembic_config(make_settings(fresh_database_url))
    command.upgrade(config, "0004")
    rows = [
        (1, "Straße", "Mixed.Case@example.org"),
        (2, "\N{LATIN SMALL LIGATURE FI}nn", fullwidth("FULL") + "@example.org"),
        (3, "İnfo", "İnfo@x.org"),
        (4, "Ümlaut", "Ümlaut@x.org"),
    ]
    _insert_users(fresh_database_url, rows, canonical_columns=False)

    command.upgrade(config, "head")

    stored = _run_sql(
        fresh_database_url,
        "SELECT id, username_canonical, email_canonical FROM users ORDER BY id",
    )
    assert stored == [(i, canonical(name), canonical(email)) for i, name, email in rows]
    assert stored[0][1:] == ("strasse", "mixed.case@example.org")
    assert stored[1][1:] == ("finn", "full@example.org")
    assert _users_columns_and_ids(fresh_database_url)[1] is not False  # SQLite: AUTOINCREMENT
    with pytest.raises(IntegrityError, match=r"(?i)not.null"):  # no row without them from now on
        _insert_users(fresh_database_url, [(5, "eve", "eve@x.org")], canonical_columns=False)


def test_upgrade_stops_on_accounts_whose_canonical_forms_collide(fresh_database_url):
    """Nothing is changed: the revision, the schema and the rows are those of 0004, until an
    operator removes the look-alike; then the upgrade goes through."""
    config = alembic_config(make_settings(fresh_database_url))
    command.upgrade(config, "0004")
    _insert_users(fresh_database_url, LOOK_ALIKES, canonical_columns=False)
    names, columns = _schema_names(fresh_database_url), _users_columns_and_ids(fresh_database_url)

    with pytest.raises(RuntimeError) as refused:
        command.upgrade(config, "head")

    message = str(refused.value)
    assert "canonical form" in message
    (_, alice, _), (_, alike, user), (_, _, email) = LOOK_ALIKES
    assert f"username: id 1 {alice!r} and id 2 {alike!r}" in message
    assert f"email: id 2 {user!r} and id 3 {email!r}" in message
    assert _revision(fresh_database_url) == "0004"
    assert _schema_names(fresh_database_url) == names
    assert _users_columns_and_ids(fresh_database_url) == columns
    assert _run_sql(fresh_database_url, "SELECT id, username, email FROM users ORDER BY id") == [
        *LOOK_ALIKES
    ]
    _run_sql(fresh_database_url, "DELETE FROM users WHERE id = 2")
    command.upgrade(config, "head")
    assert _revision(fresh_database_url) == HEAD


def test_downgrade_from_0005_restores_0004_and_keeps_the_rows(fresh_database_url):
    config = alembic_config(make_settings(fresh_database_url))
    command.upgrade(config, "0004")
    names, columns = _schema_names(fresh_database_url), _users_columns_and_ids(fresh_database_url)
    command.upgrade(config, "head")
    _insert_users(fresh_database_url, [(1, "Alice", "Alice@example.org")], canonical_columns=True)

    command.downgrade(config, "0004")

    assert _schema_names(fresh_database_url) == names  # the lower() indexes are back
    assert _users_columns_and_ids(fresh_database_url) == columns  # SQLite: AUTOINCREMENT too
    assert _run_sql(fresh_database_url, "SELECT id, username, email FROM users") == [
        (1, "Alice", "Alice@example.org")
    ]
    command.upgrade(config, "head")
    assert _run_sql(fresh_database_url, "SELECT username_canonical FROM users") == [("alice",)]


def test_downgrade_stops_exactly_when_lower_would_fold_two_accounts_together(fresh_database_url):
    """`İnfo@x.org` and `info@x.org` are distinct canonically; PostgreSQL's lower() (in this
    suite's C.UTF-8 database) folds `İ` to `i`, SQLite's folds ASCII only."""
    config = alembic_config(make_settings(fresh_database_url))
    command.upgrade(config, "0005")
    rows = [(1, "eve", "İnfo@x.org"), (2, "mallory", "info@x.org")]
    _insert_users(fresh_database_url, rows, canonical_columns=True)
    [(folds,)] = _run_sql(fresh_database_url, "SELECT lower('İnfo@x.org') = 'info@x.org'")

    columns = _users_columns_and_ids(fresh_database_url)

    if folds:
        with pytest.raises(RuntimeError, match=r"email: id 1 'İnfo@x\.org' and id 2 'info@x\.org'"):
            command.downgrade(config, "0004")
        assert _revision(fresh_database_url) == "0005"
        assert _users_columns_and_ids(fresh_database_url) == columns
    else:
        command.downgrade(config, "0004")
        assert _revision(fresh_database_url) == "0004"
    assert _run_sql(fresh_database_url, "SELECT id, username, email FROM users ORDER BY id") == rows


# --- 0006: task versions -----------------------------------------------------------------------


def _tasks_table(url: str) -> tuple[set[str], bool | None]:
    """The tasks table's column names, and on SQLite whether its ids are AUTOINCREMENT."""

    async def go() -> tuple[set[str], bool | None]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:

                def look(sync_connection) -> tuple[set[str], bool | None]:
                    columns = {c["name"] for c in inspect(sync_connection).get_columns("tasks")}
                    if sync_connection.dialect.name != "sqlite":
                        return columns, None
                    query = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'tasks'"
                    return columns, "AUTOINCREMENT" in sync_connection.execute(text(query)).scalar()

                return await connection.run_sync(look)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_0006_starts_existing_tasks_at_version_1_and_downgrades_keeping_them(fresh_database_url):
    config = alembic_config(make_settings(fresh_database_url))
    command.upgrade(config, "0005")
    names, (columns, autoincrement) = (
        _schema_names(fresh_database_url),
        _tasks_table(fresh_database_url),
    )
    _insert_users(fresh_database_url, [(1, "u", "u@example.com")], canonical_columns=True)
    _run_sql(fresh_database_url, "INSERT INTO tasks (title, owner_id) VALUES ('old', 1)")

    command.upgrade(config, "0006")

    assert _run_sql(fresh_database_url, "SELECT title, version FROM tasks") == [("old", 1)]
    _run_sql(fresh_database_url, "INSERT INTO tasks (title, owner_id) VALUES ('new', 1)")
    assert _run_sql(fresh_database_url, "SELECT version FROM tasks WHERE title = 'new'") == [(1,)]
    assert _schema_names(fresh_database_url) == names
    assert _tasks_table(fresh_database_url) == (columns | {"version"}, autoincrement)

    command.downgrade(config, "0005")

    assert _tasks_table(fresh_database_url) == (columns, autoincrement)
    assert _schema_names(fresh_database_url) == names
    assert _run_sql(fresh_database_url, "SELECT title FROM tasks ORDER BY id") == [
        ("old",),
        ("new",),
    ]


# --- 0008: the record of revocations --------------------------------------------------------------


def _tables(url: str) -> set[str]:
    async def go() -> set[str]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_0008_adds_the_revocations_table_and_downgrades_keeping_the_rest(fresh_database_url):
    config = alembic_config(make_settings(fresh_database_url))
    command.upgrade(config, "0007")
    names = _schema_names(fresh_database_url)
    _insert_users(fresh_database_url, [(1, "u", "u@example.com")], canonical_columns=True)
    _run_sql(fresh_database_url, "INSERT INTO tasks (title, owner_id) VALUES ('kept', 1)")
    assert "revocations" not in _tables(fresh_database_url)

    command.upgrade(config, "0008")

    _run_sql(
        fresh_database_url, "INSERT INTO revocations (jti, expires_at) VALUES ('a', 4102444800)"
    )
    assert _run_sql(fresh_database_url, "SELECT jti, expires_at, pushed FROM revocations") == [
        ("a", 4102444800, False)
    ]
    with pytest.raises(IntegrityError):  # one row per jti
        _run_sql(fresh_database_url, "INSERT INTO revocations (jti, expires_at) VALUES ('a', 1)")
    assert _schema_names(fresh_database_url) == names

    command.downgrade(config, "0007")

    assert "revocations" not in _tables(fresh_database_url)
    assert _schema_names(fresh_database_url) == names
    assert _run_sql(fresh_database_url, "SELECT title FROM tasks") == [("kept",)]


# --- 0009: active accounts ----------------------------------------------------------------------


def test_0009_starts_existing_accounts_active_and_downgrades_keeping_them(fresh_database_url):
    config = alembic_config(make_settings(fresh_database_url))
    command.upgrade(config, "0008")
    names, (columns, autoincrement) = (
        _schema_names(fresh_database_url),
        _users_columns_and_ids(fresh_database_url),
    )
    _insert_users(fresh_database_url, [(1, "u", "u@example.com")], canonical_columns=True)

    command.upgrade(config, "0009")

    assert _run_sql(fresh_database_url, "SELECT username, is_active FROM users") == [("u", True)]
    assert _schema_names(fresh_database_url) == names
    assert _users_columns_and_ids(fresh_database_url) == (columns | {"is_active"}, autoincrement)

    command.downgrade(config, "0008")

    assert _users_columns_and_ids(fresh_database_url) == (columns, autoincrement)
    assert _schema_names(fresh_database_url) == names
    assert _run_sql(fresh_database_url, "SELECT username FROM users") == [("u",)]
