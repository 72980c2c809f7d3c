"""Units of work: a write's connection and the changes it made. The changes go to the effects
when the unit commits, and are dropped when it rolls back.

Two kinds: `single_statement` on an autocommit connection, for a write that is one statement
(it has committed when the statement returns, so the unit then only hands the change over),
and `transaction`, for several statements that commit together."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncConnection

from taskapi.domain.effects import Change, TaskEffects
from taskapi.infra.db import Database


class UnitOfWork:
    def __init__(self, connection: AsyncConnection, *, single_statement: bool) -> None:
        self.connection = connection
        self.single_statement = single_statement
        self.changes: list[Change] = []

    def changed(self, change: Change) -> None:
        """Record a change made in this unit (the service calls it after its statement)."""
        if self.single_statement and self.changes:
            raise RuntimeError("a single-statement unit of work holds one write")
        self.changes.append(change)


@contextlib.asynccontextmanager
async def single_statement(
    connection: AsyncConnection, effects: TaskEffects
) -> AsyncIterator[UnitOfWork]:
    """A unit for one write statement on an autocommit `connection`: a recorded change has
    committed with its statement, so it is handed to `effects` when the block ends, even by an
    exception after it; a statement that failed recorded nothing."""
    unit = UnitOfWork(connection, single_statement=True)
    try:
        yield unit
    finally:
        await effects.apply(unit.changes)


@contextlib.asynccontextmanager
async def transaction(database: Database, effects: TaskEffects) -> AsyncIterator[UnitOfWork]:
    """A unit in one transaction: committed when the block ends, and then its changes are
    handed to `effects`; rolled back (and its changes dropped) when the block raises."""
    async with database.transaction() as connection:
        unit = UnitOfWork(connection, single_statement=False)
        yield unit
    await effects.apply(unit.changes)
