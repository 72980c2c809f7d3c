"""The relay: moves the outbox's pending entries into the queue, oldest first, in batches, and
marks them sent in the same transaction; bumps the cache versions a write could not. It runs
in every arq worker (and, in the embedded default, in the app's own process); on PostgreSQL
several relays take different rows (`FOR UPDATE SKIP LOCKED`), and each wakes at once on a
committed entry (LISTEN/NOTIFY), else polls every `poll_seconds`.

A hand-over that fails (the queue is down) leaves the entries pending, counts the attempt and
tries again after a backoff; a relay killed between the queue's write and its commit hands the
same entries over again, which the queue ignores (their ids are known to it)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable

from taskapi.domain import outbox
from taskapi.domain.ports import JobQueue, Publisher
from taskapi.infra import metrics
from taskapi.infra.db import Database
from taskapi.infra.incidents import Incident
from taskapi.infra.stores import StoreUnavailable

log = logging.getLogger(__name__)
CHANNEL = "taskapi_outbox"  # NOTIFY'd by the outbox's trigger on PostgreSQL (migration 0007)
BATCH = 100
PRUNE_EVERY_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 10.0


class Relay:
    def __init__(
        self,
        db: Database,
        queue: JobQueue,
        publisher: Publisher,
        *,
        poll_seconds: float | None,
        retention_seconds: float,
        listen: bool = True,
    ) -> None:
        self.db = db
        self.listen = listen
        self.queue = queue
        self.publisher = publisher
        self.poll_seconds = poll_seconds
        self.retention = dt.timedelta(seconds=retention_seconds)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pruned_at = 0.0
        self._listener = contextlib.AsyncExitStack()
        self._listening: Callable[[], bool] = lambda: True
        self._database = Incident(log, "outbox relay: database", "relaying again when it answers")

    def wake(self) -> None:
        """New entries were committed: relay them now."""
        self._wake.set()

    async def start(self) -> None:
        """Listen (so that no commit from now on goes unnoticed), relay what is pending now
        (entries left by a process that stopped), then go on in the background."""
        if self._task is None:
            await self._listen()
            try:
                await self.drain()
            except StoreUnavailable:  # the loop tries again after its backoff
                self._wake.set()
            except Exception as error:  # the database: logged once per outage
                self._database.failed(error)
                self._wake.set()
            self._task = asyncio.get_running_loop().create_task(self.run(), name="outbox relay")

    async def _listen(self) -> None:
        """(Again) listen for commits, when this relay listens at all."""
        await self._listener.aclose()
        if self.listen:
            listening = self.db.listening(CHANNEL, self.wake)
            self._listening = await self._listener.enter_async_context(listening)

    async def drain(self) -> None:
        """Relay batches until none is full."""
        while await self.relay_once() == BATCH:
            pass

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._listener.aclose()

    async def run(self) -> None:
        """Relay until cancelled: wait for a wake-up or the poll interval (None: for a wake-up
        only, or the backoff after a failure), then drain (`start` has drained once)."""
        backoff: float | None = self.poll_seconds
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), backoff)
            self._wake.clear()
            try:
                if not self._listening():  # its connection was lost (e.g. a restart)
                    await self._listen()
                await self.drain()
                await self._prune()
                self._database.recovered()
                backoff = self.poll_seconds
            except StoreUnavailable:  # the queue is down: its pool logs the incident
                backoff = min(MAX_BACKOFF_SECONDS, 2 * (backoff or 0.5))
            except Exception as error:  # the database is unreachable: try again later
                self._database.failed(error)
                backoff = min(MAX_BACKOFF_SECONDS, 2 * (backoff or 0.5))

    async def relay_once(self) -> int:
        """One batch: handed over and marked sent together; how many entries. StoreUnavailable
        when the queue (or the cache) cannot take them: they stay pending, the try counted."""
        unavailable = None
        async with self.db.transaction() as connection:
            entries = await outbox.pending(connection, BATCH)
            if not entries:
                return 0
            ids = [entry.id for entry in entries]
            jobs = [entry.request() for entry in entries if entry.job != outbox.CACHE_VERSIONS]
            bumps = [entry for entry in entries if entry.job == outbox.CACHE_VERSIONS]
            versions = list(dict.fromkeys(v for entry in bumps for v in entry.versions))
            try:
                if versions:
                    await self.publisher.publish(versions)
                await self.queue.hand_over(jobs)
            except StoreUnavailable as error:
                await outbox.count_attempt(connection, ids)  # committed with the block
                unavailable = error
            else:
                await outbox.mark_sent(connection, ids)
        if unavailable is not None:
            raise unavailable
        metrics.jobs_enqueued(job.function for job in jobs)
        now = dt.datetime.now(dt.UTC)
        lag = max((now - entry.created_at).total_seconds() for entry in entries)
        log.info("outbox relayed %d (oldest %.3f s after its commit)", len(entries), lag)
        return len(entries)

    async def _prune(self) -> None:
        now = time.monotonic()
        if now - self._pruned_at < PRUNE_EVERY_SECONDS:
            return
        self._pruned_at = now
        async with self.db.connection() as connection:
            removed = await outbox.prune(connection, dt.datetime.now(dt.UTC) - self.retention)
        if removed:
            log.info("outbox pruned %d sent entries", removed)
