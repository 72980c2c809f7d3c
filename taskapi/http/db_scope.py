"""The database connection of the current request: one per request, opened on first use and
closed at teardown."""

from __future__ import annotations

from quart import current_app, g
from sqlalchemy.ext.asyncio import AsyncConnection


async def request_connection() -> AsyncConnection:
    """The current request's autocommit connection: every statement a request makes is atomic
    on its own (ownership in the WHERE clause, INSERT/UPDATE/DELETE ... RETURNING)."""
    connection: AsyncConnection | None = g.get("_db_connection")
    if connection is None:
        connection = await current_app.extensions["taskapi"].db.connection()
        g._db_connection = connection
    return connection


async def close_request_connection(_exc: BaseException | None = None) -> None:
    """Teardown: return the request's connection to the pool, if it opened one."""
    connection: AsyncConnection | None = g.pop("_db_connection", None)
    if connection is not None:
        await connection.close()
