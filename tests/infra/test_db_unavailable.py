"""Which database errors mean "unavailable" (503, an outage) and which are a bug (500): by the
SQLSTATE PostgreSQL sent, on real errors of a real server."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from taskapi.infra.db import is_unavailable
from tests.services import free_port, until


async def _error_of(url: str, statement: str) -> DBAPIError:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            with pytest.raises(DBAPIError) as raised:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()
    return raised.value


async def test_a_session_ended_by_the_server_is_unavailable(shared_settings):
    """pg_terminate_backend is what a fast shutdown does to each session (57P01, then 08003
    for the statement in flight)."""
    engine = create_async_engine(shared_settings.database_url)
    try:
        async with engine.connect() as victim, engine.connect() as killer:
            pid = (await victim.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            sleeping = asyncio.ensure_future(victim.execute(text("SELECT pg_sleep(30)")))

            async def sleeping_on_the_server() -> bool:
                query = (
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = :pid AND state = 'active'"
                )
                return bool((await killer.execute(text(query), {"pid": pid})).scalar_one())

            await until(sleeping_on_the_server, "the statement to run")
            await killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with pytest.raises(DBAPIError) as raised:
                await sleeping
    finally:
        await engine.dispose()
    assert raised.value.orig.sqlstate[:2] in {"08", "57"}  # type: ignore[union-attr]
    assert is_unavailable(raised.value)


async def test_a_database_that_does_not_exist_is_not_an_outage(shared_settings):
    """3D000 is a configuration error, not a restart."""
    url = shared_settings.database_url.rsplit("/", 1)[0] + "/no_such_database"
    engine = create_async_engine(url)
    try:
        with pytest.raises(DBAPIError) as raised:
            await engine.connect()
    finally:
        await engine.dispose()
    assert raised.value.orig.sqlstate == "3D000"  # type: ignore[union-attr]
    assert not is_unavailable(raised.value)


async def test_a_bad_statement_is_not_unavailable(shared_settings):
    error = await _error_of(shared_settings.database_url, "SELECT 1 / 0")
    assert error.orig.sqlstate == "22012"  # type: ignore[union-attr]
    assert not is_unavailable(error)


async def test_a_refused_connection_is_unavailable():
    engine = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x")
    try:
        with pytest.raises(OSError) as raised:
            await engine.connect()
    finally:
        await engine.dispose()
    assert is_unavailable(raised.value)
