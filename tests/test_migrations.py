"""Alembic on both databases: up, down, up again, and no drift between models and migrations."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from taskapi.infra.db import Base
from taskapi.infra.migrate import alembic_config
from tests.conftest import make_settings

# SQLAlchemy cannot reflect SQLite's expression indexes (lower(username)): it says so, and so
# does autogenerate, which then leaves them out of the comparison.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index"),
    pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based"),
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
                            "INSERT INTO users (username, email, password_hash) "
                            "VALUES ('u', 'u@example.com', 'x')"
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
        "ix uq_users_username_lower",
        "ix uq_users_email_lower",
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
        command.upgrade(config, "head")

    assert _run_sql(fresh_database_url, "SELECT count(*) FROM users") == [(2,)]
