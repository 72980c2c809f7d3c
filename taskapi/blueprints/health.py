"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel
from quart import Blueprint, Response, current_app
from quart.blueprints import BlueprintSetupState
from quart_schema import document_response, tag
from sqlalchemy import text

from taskapi.domain import outbox
from taskapi.http.policy import exempt
from taskapi.http.responses import json_response
from taskapi.http.state import current_parts

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)
READY_TIMEOUT_SECONDS = 2.0
# /health/ready is public and unlimited: its checks run at most once a second per process.
READY_CACHE_SECONDS = 1.0
READINESS = "taskapi.readiness"
Answer = dict[str, Any]  # "checks": check name → ok, error, disabled or lagging; "outbox"


class ReadinessCache:
    """The readiness checks' last answer, reused for `ttl` seconds from the start of the check
    that gave it; callers that come while a check runs share that check."""

    def __init__(
        self, ttl: float = READY_CACHE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self._clock = clock
        self._answer: Answer | None = None
        self._fresh_until = 0.0
        self._running: asyncio.Future[Answer] | None = None

    async def checks(self, run: Callable[[], Awaitable[Answer]]) -> Answer:
        if self._answer is not None and self._clock() < self._fresh_until:
            return self._answer
        if self._running is None:
            self._running = asyncio.ensure_future(self._check(run))
        # a caller that goes away does not cancel the check the others wait for
        return await asyncio.shield(self._running)

    def clear(self) -> None:
        """Forget the last answer (what a fresh process knows)."""
        self._answer, self._fresh_until = None, 0.0

    async def _check(self, run: Callable[[], Awaitable[Answer]]) -> Answer:
        started = self._clock()
        try:
            answer = await run()
        finally:
            self._running = None
        self._answer, self._fresh_until = answer, started + self.ttl
        return answer


@bp.record_once
def _cache_per_app(setup: BlueprintSetupState) -> None:
    setup.app.extensions[READINESS] = ReadinessCache()


class Liveness(BaseModel):
    """Alive."""

    status: Literal["ok"]


class Checks(BaseModel):
    database: Literal["ok", "error"]
    redis: Literal["ok", "error", "disabled"]
    outbox: Literal["ok", "lagging", "error"]


class OutboxBacklog(BaseModel):
    pending: int | None  # None: the database did not answer
    oldest_seconds: float | None


class Readiness(BaseModel):
    """Ready: the database (and Redis, where configured) answer, and the outbox's oldest
    pending job is younger than `TASKAPI_OUTBOX_MAX_LAG_SECONDS`."""

    status: Literal["ok"]
    checks: Checks
    outbox: OutboxBacklog


class NotReady(BaseModel):
    """Not ready: a check failed."""

    status: Literal["error"]
    checks: Checks
    outbox: OutboxBacklog


@bp.get("/health")
@exempt
@tag(["health"])
@document_response(Liveness, 200)
async def health() -> Response:
    """Liveness: the process answers. Touches nothing else."""
    return json_response({"status": "ok"})


@bp.get("/health/ready")
@exempt
@tag(["health"])
@document_response(Readiness, 200)
@document_response(NotReady, 503)
async def ready() -> Response:
    """Readiness: the database (and Redis, where configured) answer.

    Each process runs the checks at most once a second and shares that answer."""
    cache: ReadinessCache = current_app.extensions[READINESS]
    answer = await cache.checks(_run_checks)
    checks = answer["checks"]
    healthy = all(value in ("ok", "disabled") for value in checks.values())
    return json_response(
        {"status": "ok" if healthy else "error", "checks": checks, "outbox": answer["outbox"]},
        200 if healthy else 503,
    )


async def _run_checks() -> Answer:
    database = await _check_database()
    lag, backlog = await _check_outbox() if database == "ok" else ("error", None)
    checks = {"database": database, "redis": await _check_redis(), "outbox": lag}
    if backlog is None:
        return {"checks": checks, "outbox": {"pending": None, "oldest_seconds": None}}
    numbers = {"pending": backlog.pending, "oldest_seconds": round(backlog.oldest_seconds, 3)}
    return {"checks": checks, "outbox": numbers}


async def _check_outbox() -> tuple[str, outbox.Backlog | None]:
    """The outbox's backlog; `lagging` when its oldest entry is older than allowed."""
    parts = current_parts()
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            async with parts.db.connection() as connection:
                backlog = await outbox.backlog(connection)
    except Exception as error:
        log.warning("readiness: outbox check failed: %s", type(error).__name__)
        return "error", None
    late = backlog.oldest_seconds > parts.settings.outbox_max_lag_seconds
    return ("lagging" if late else "ok"), backlog


async def _check_database() -> str:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            async with current_parts().db.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    except Exception as error:  # any failure means "not ready"; the reason goes to the log
        log.warning("readiness: database check failed: %s", type(error).__name__)
        return "error"
    return "ok"


async def _check_redis() -> str:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            return await current_parts().health.check()
    except TimeoutError:
        return "error"
