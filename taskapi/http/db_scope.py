"""The database connection of the current request: one per request, opened on first use and
closed at teardown; and the unit of work of the request's one write."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from quart import g
from sqlalchemy.ext.asyncio import AsyncConnection

from taskapi.domain import outbox, work
from taskapi.http.state import current_parts


async def request_connection() -> AsyncConnection:
    """The current request's autocommit connection: every statement a request makes is atomic
    on its own (ownership in the WHERE clause, INSERT/UPDATE/DELETE ... RETURNING)."""
    connection: AsyncConnection | None = g.get("_db_connection")
    if connection is None:
        connection = await current_parts().db.connection()
        g._db_connection = connection
    return connection


@contextlib.asynccontextmanager
async def request_unit(*, with_intents: bool = False) -> AsyncIterator[work.UnitOfWork]:
    """The unit of work of the request's write: one statement on the request's connection,
    its effects handed over once it has committed. `with_intents`: a write that also writes
    outbox entries, which SQLite (no INSERT inside WITH) does in a transaction."""
    parts = current_parts()
    connection = await request_connection()
    if with_intents and not outbox.writes_in_one_statement(connection):
        async with work.transaction_on(connection, parts.effects) as unit:
            yield unit
        return
    async with work.single_statement(connection, parts.effects) as unit:
        yield unit


async def close_request_connection(_exc: BaseException | None = None) -> None:
    """Teardown: return the request's connection to the pool, if it opened one."""
    connection: AsyncConnection | None = g.pop("_db_connection", None)
    if connection is not None:
        await connection.close()
