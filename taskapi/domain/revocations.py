"""Revocations: the record in the database, and its copy in the fast path (the `Revocations`
port: Redis, or this process), which the gate reads in its one round trip.

The record is written first, so a logout succeeds whenever the database does; the copy is
written next. A revocation the copy did not take stays unpushed in the record, and the sync
(`RevocationRecord.sync`, every second with Redis) pushes it. A copy that lost its contents
says "unknown", and the sync reloads it from the record. While this process has seen the copy
fail and has not synced since, and whenever the copy says "unknown", the gate asks the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

from sqlalchemy import delete, exists, false, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from taskapi.domain.models import Revocation
from taskapi.domain.ports import Revocations
from taskapi.errors import APIError
from taskapi.infra.db import Database
from taskapi.infra.stores import StoreUnavailable

log = logging.getLogger(__name__)

REVOCATIONS = Revocation.__table__
# Kept past its expiry, so that a process whose clock is a little behind still refuses it.
PRUNE_MARGIN_SECONDS = 60
PRUNE_BATCH = 100  # expired rows deleted by one logout, at most
CHUNK = 1000  # rows per round trip of a push or a reload
SYNC_INTERVAL_SECONDS = 1.0  # how often a process with Redis pushes what the copy lacks
START_SYNC_SECONDS = 5.0  # how long start-up waits for the first sync
# What a database that cannot answer raises (the app's handlers answer these with 503 too).
DATABASE_DOWN = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    OSError,
    TimeoutError,
)


async def record_revocations(connection: AsyncConnection, revoked: Mapping[str, int]) -> None:
    """Insert the revocations (a jti already recorded is left as it is), then delete at most
    `PRUNE_BATCH` expired ones."""
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    rows = [{"jti": jti, "expires_at": expires_at} for jti, expires_at in revoked.items()]
    await connection.execute(insert(REVOCATIONS).values(rows).on_conflict_do_nothing())
    expired = (
        select(REVOCATIONS.c.jti)
        .where(REVOCATIONS.c.expires_at < int(time.time()) - PRUNE_MARGIN_SECONDS)
        .limit(PRUNE_BATCH)
    )
    await connection.execute(delete(REVOCATIONS).where(REVOCATIONS.c.jti.in_(expired)))


async def is_recorded(connection: AsyncConnection, jti: str) -> bool:
    """Whether the record holds the jti (an expired token never reaches this question)."""
    found = await connection.scalar(select(exists().where(REVOCATIONS.c.jti == jti)))
    return bool(found)


async def unpushed(connection: AsyncConnection) -> dict[str, int]:
    """Up to `CHUNK` revocations the copy is not known to hold."""
    rows = await connection.execute(
        select(REVOCATIONS.c.jti, REVOCATIONS.c.expires_at)
        .where(REVOCATIONS.c.pushed.is_(false()))  # the partial index's own predicate
        .limit(CHUNK)
    )
    return {jti: expires_at for jti, expires_at in rows}


async def mark_pushed(connection: AsyncConnection, jtis: list[str]) -> None:
    await connection.execute(
        update(REVOCATIONS).where(REVOCATIONS.c.jti.in_(jtis)).values(pushed=True)
    )


async def unexpired_after(connection: AsyncConnection, after: str) -> dict[str, int]:
    """The next `CHUNK` unexpired revocations by jti after `after` (a reload's keyset)."""
    rows = await connection.execute(
        select(REVOCATIONS.c.jti, REVOCATIONS.c.expires_at)
        .where(REVOCATIONS.c.jti > after)
        .where(REVOCATIONS.c.expires_at >= int(time.time()) - PRUNE_MARGIN_SECONDS)
        .order_by(REVOCATIONS.c.jti)
        .limit(CHUNK)
    )
    return {jti: expires_at for jti, expires_at in rows}


class RevocationRecord:
    """Logout's revocations, written to the record and its copy; the gate's question to the
    record when the copy cannot answer; and the sync that keeps the copy whole. `interval`:
    seconds between syncs (None: only when asked, for a copy that cannot fail)."""

    def __init__(self, db: Database, copy: Revocations, *, interval: float | None) -> None:
        self.db = db
        self.copy = copy
        self.interval = interval
        # trusted once a sync has begun after the last failure; a new process has synced none
        self._failed_at = time.monotonic()
        self._synced_at = float("-inf")
        self._reload_wanted = False
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._database_down = False

    @property
    def trusted(self) -> bool:
        """Whether the copy's "not revoked" can be believed without asking the record."""
        return self._synced_at > self._failed_at

    async def revoke(self, connection: AsyncConnection, revoked: Mapping[str, int]) -> None:
        """Record the revocations (jti → expiry), then put them in the copy; a copy that
        cannot take them now gets them from the sync."""
        now = int(time.time())
        live = {jti: expires_at for jti, expires_at in revoked.items() if expires_at > now}
        if not live:
            return
        await record_revocations(connection, live)
        try:
            await self.copy.revoke(live, now - PRUNE_MARGIN_SECONDS)
        except StoreUnavailable:
            self.copy_failed()
            return
        with contextlib.suppress(*DATABASE_DOWN):  # then the sync pushes them again
            await mark_pushed(connection, list(live))

    async def revoked_in_record(self, jti: str, *, copy_incomplete: bool) -> bool:
        """The record's answer for a token the copy could not vouch for (503 when the
        database cannot answer either); `copy_incomplete`: the copy said "unknown", so a
        reload is wanted."""
        if copy_incomplete:
            self._reload_wanted = True
            self._signal()
        try:
            async with self.db.connection() as connection:
                return await is_recorded(connection, jti)
        except DATABASE_DOWN:
            raise APIError(
                503,
                "Cannot check the token right now. Try again shortly.",
                code="service_unavailable",
            ) from None

    def copy_failed(self) -> None:
        """The copy could not be reached: ask the record until a sync has run since."""
        self._failed_at = time.monotonic()
        self._signal()

    def _signal(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def sync(self, *, check_whole: bool = False) -> None:
        """Push what the copy lacks (a chunk), and reload the copy when it is wanted (or,
        `check_whole`, when it is not whole); the copy is trusted again when this finds
        nothing left to push."""
        started = time.monotonic()
        try:
            if check_whole and not await self.copy.is_whole():
                self._reload_wanted = True
            async with self.db.connection() as connection:
                pending = await unpushed(connection)
                if pending:
                    expired_before = int(time.time()) - PRUNE_MARGIN_SECONDS
                    await self.copy.revoke(pending, expired_before)
                    await mark_pushed(connection, list(pending))
                if self._reload_wanted:
                    await self._reload(connection)
                    self._reload_wanted = False
        except StoreUnavailable:  # a reload cut off here resumes at the next sync
            self._failed_at = time.monotonic()
            return
        except DATABASE_DOWN as error:
            if not self._database_down:  # once per incident
                log.warning("revocations not synced: the database: %s", type(error).__name__)
            self._database_down = True
            return
        self._database_down = False
        if len(pending) == CHUNK:  # more to push: not caught up yet
            self._signal()
            return
        self._synced_at = started

    async def _reload(self, connection: AsyncConnection) -> None:
        """Put the record's unexpired revocations in the copy, then mark it whole (one
        process at a time; the others keep asking the record meanwhile)."""
        if not await self.copy.claim_reload():
            return
        after, count = "", 0
        while True:
            chunk = await unexpired_after(connection, after)
            if chunk:
                await self.copy.load(chunk)
                # the last in the database's own order (its collation, not Python's)
                after, count = next(reversed(chunk)), count + len(chunk)
            if len(chunk) < CHUNK:
                break
        await self.copy.mark_loaded()
        log.info("revocations reloaded into the fast path from the database: %d", count)

    async def start(self) -> None:
        """Sync once (reloading a copy that is not whole) for at most `START_SYNC_SECONDS`,
        then keep syncing in the background (before serving)."""
        self._wake, self._stopping = asyncio.Event(), False
        try:  # serving starts anyway: the gate asks the record until a sync has run
            async with asyncio.timeout(START_SYNC_SECONDS):
                await self.sync(check_whole=True)
        except TimeoutError:
            log.warning("revocations: first sync still running; serving meanwhile")
            self._signal()  # a reload cut off here resumes in the background
        except Exception:
            log.exception("revocation sync failed")
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._stopping:  # a cancellation swallowed inside a sync still ends it
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.sync()
            except Exception:  # the loop must outlive any one sync
                log.exception("revocation sync failed")
