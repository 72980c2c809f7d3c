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

from taskapi.db import Base
from taskapi.migrate import alembic_config
from tests.conftest import make_settings


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
