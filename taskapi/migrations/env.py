"""Alembic environment (async): the URL comes from the app's settings, never from this file.

Run from the CLI (`taskapi db upgrade`), never inside the serving loop: this module calls
`asyncio.run()`. A caller that already holds a connection (the tests) passes it in
`config.attributes["connection"]`.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

from taskapi.domain import models  # noqa: F401 - registers the tables on Base.metadata
from taskapi.infra.db import Base, ensure_sqlite_directory
from taskapi.settings import load_settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or load_settings().database_url


def _configure(connection: Connection | None = None, offline_url: str | None = None) -> None:
    """Migrate over a connection, or write the SQL for `offline_url` (with literal values)."""
    context.configure(
        connection=connection,
        url=offline_url,
        literal_binds=offline_url is not None,
        dialect_opts={"paramstyle": "named"} if offline_url is not None else None,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters tables by copy-and-move
        compare_type=True,
    )


def run_migrations_offline() -> None:
    _configure(offline_url=_url())
    with context.begin_transaction():
        context.run_migrations()


def _run_with(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    url = _url()
    if url.startswith("sqlite"):
        ensure_sqlite_directory(url)
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_with)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_with(connection)
    else:
        asyncio.run(_run_async())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
