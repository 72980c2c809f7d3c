"""The gauges read when metrics are scraped: the database pool's counts and the outbox's
backlog (the figures /health/ready reports), in the API and in the worker alike."""

from __future__ import annotations

import asyncio
import logging

from taskapi.domain import outbox
from taskapi.infra import metrics
from taskapi.infra.db import Database

log = logging.getLogger(__name__)
SAMPLE_TIMEOUT_SECONDS = 2.0


async def sample_gauges(db: Database) -> None:
    """Set the pool and outbox gauges from the database now; a database that does not answer
    leaves the outbox's at their last value (the pool's are read without it)."""
    status = db.pool_status()
    if status is not None:
        metrics.pool_sampled(*status)
    try:
        async with asyncio.timeout(SAMPLE_TIMEOUT_SECONDS), db.connection() as connection:
            backlog = await outbox.backlog(connection)
    except Exception as error:  # a scrape still answers; the reason goes to the log
        log.warning("metrics: outbox backlog not read: %s", type(error).__name__)
        return
    metrics.outbox_sampled(backlog.pending, backlog.oldest_seconds)
