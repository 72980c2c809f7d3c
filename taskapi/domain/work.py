"""Units of work: a write's connection, the changes it made and whether it wrote outbox
entries. The changes go to the effects when the unit commits, and are dropped when it rolls
back; cache versions the effects could not bump go into the outbox, for the relay.

Two kinds: `single_statement` on an autocommit connection, for a write that is one statement
(it has committed when the statement returns, so the unit then only hands the change over),
and `transaction`, for several statements that commit together."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from sqlalchemy.ext.asyncio import AsyncConnection

from taskapi.domain import outbox
from taskapi.domain.effects import Change, TaskEffects
from taskapi.infra.db import Database, explicit_transaction

log = logging.getLogger(__name__)


class UnitOfWork:
    def __init__(self, connection: AsyncConnection, *, single_statement: bool) -> None:
        self.connection = connection
        self.single_statement = single_statement
        self.changes: list[Change] = []
        self.intents = False  # an outbox entry was written

    def changed(self, change: Change) -> None:
        """Record a change made in this unit (the service calls it after its statement)."""
        if self.single_statement and self.changes:
            raise RuntimeError("a single-statement unit of work holds one write")
        self.changes.append(change)


async def _hand_over(
    unit: UnitOfWork,
    effects: TaskEffects,
    keep_on: Callable[[], AbstractAsyncContextManager[AsyncConnection]],
) -> None:
    """The committed unit's effects; the cache versions they could not bump, into the outbox
    on `keep_on()`'s connection (the relay bumps them)."""
    unbumped = await effects.apply(unit.changes, intents=unit.intents)
    if not unbumped:
        return
    try:
        async with keep_on() as connection:
            await outbox.insert_cache_versions(connection, unbumped)
    except Exception as error:  # the database is gone too: the entries expire by their TTL
        log.error("cache versions %s not kept: %s: %s", unbumped, type(error).__name__, error)
        return
    effects.wake()


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
        await _hand_over(unit, effects, lambda: contextlib.nullcontext(connection))


@contextlib.asynccontextmanager
async def transaction_on(
    connection: AsyncConnection, effects: TaskEffects
) -> AsyncIterator[UnitOfWork]:
    """A unit in one transaction on an autocommit `connection` (its own BEGIN and COMMIT, so a
    request needs no second connection): committed when the block ends, and then its changes
    are handed to `effects`; rolled back (and its changes dropped) when the block raises."""
    async with explicit_transaction(connection):
        unit = UnitOfWork(connection, single_statement=False)
        yield unit
    await _hand_over(unit, effects, lambda: contextlib.nullcontext(connection))


@contextlib.asynccontextmanager
async def transaction(database: Database, effects: TaskEffects) -> AsyncIterator[UnitOfWork]:
    """A unit in one transaction: committed when the block ends, and then its changes are
    handed to `effects`; rolled back (and its changes dropped) when the block raises."""
    async with database.transaction() as connection:
        unit = UnitOfWork(connection, single_statement=False)
        yield unit
    await _hand_over(unit, effects, database.connection)
