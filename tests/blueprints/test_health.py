"""/health/ready is public and unlimited: each process runs its checks (a database query, a
Redis PING) at most once a second, and callers that come while a check runs share it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import pytest
from quart import Quart
from sqlalchemy import event

from taskapi.blueprints.health import READINESS, READY_CACHE_SECONDS, ReadinessCache
from tests.conftest import state_of
from tests.services import redis_commands_during, until

BURST = 50


class Clock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fresh_cache(monkeypatch):
    """Factory: give an app an empty readiness cache (on this clock) for this test only."""

    def install(app: Quart, clock: Clock | None = None) -> None:
        cache = ReadinessCache(clock=clock or time.monotonic)
        monkeypatch.setitem(app.extensions, READINESS, cache)

    return install


@contextlib.contextmanager
def _database_checks(app: Quart) -> Iterator[list[str]]:
    """The readiness queries (`SELECT 1`) the app's engine runs inside the block."""
    seen: list[str] = []
    engine = state_of(app).db.engine.sync_engine

    def count(_conn, _cursor, statement, _params, _context, _many) -> None:
        if statement.strip().upper() == "SELECT 1":
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def _burst(app: Quart) -> list[int]:
    client = app.test_client()
    responses = await asyncio.gather(*(client.get("/health/ready") for _ in range(BURST)))
    return [response.status_code for response in responses]


async def test_a_burst_of_probes_runs_one_database_check(app, fresh_cache):
    """On both databases; the clock stands still, so only the sharing and the reuse count."""
    fresh_cache(app, Clock())
    with _database_checks(app) as checks:
        statuses = await _burst(app)
    assert statuses == [200] * BURST
    assert len(checks) == 1


async def test_a_burst_of_probes_sends_redis_one_ping(make_apps, redis_server, fresh_cache):
    (app,) = await make_apps(1)
    # a new connection PINGs once before its first command (redis-py's health check): open it
    assert (await app.test_client().get("/health/ready")).status_code == 200
    fresh_cache(app, Clock())
    statuses: list[int] = []

    async def burst() -> None:
        statuses.extend(await _burst(app))

    with _database_checks(app) as checks:
        commands = await redis_commands_during(redis_server.url, burst)
    assert statuses == [200] * BURST
    assert commands.count("PING") == 1, commands
    assert len(checks) == 1


async def test_callers_during_a_check_share_it():
    cache = ReadinessCache(clock=Clock())
    release = asyncio.Event()
    runs = 0

    async def slow_check() -> dict[str, str]:
        nonlocal runs
        runs += 1
        await release.wait()
        return {"database": "ok", "redis": "disabled"}

    callers = [asyncio.ensure_future(cache.checks(slow_check)) for _ in range(BURST)]
    await until(lambda: runs == 1, "the first check to start", 5)
    callers[0].cancel()  # a caller that goes away does not cancel the shared check
    release.set()
    answers = await asyncio.gather(*callers[1:])
    assert runs == 1
    assert answers == [{"database": "ok", "redis": "disabled"}] * (BURST - 1)


async def test_an_answer_is_reused_for_a_second_and_not_longer(app, fresh_cache):
    clock = Clock()
    fresh_cache(app, clock)
    client = app.test_client()
    with _database_checks(app) as checks:
        assert (await client.get("/health/ready")).status_code == 200
        clock.now += READY_CACHE_SECONDS - 0.01
        assert (await client.get("/health/ready")).status_code == 200
        assert len(checks) == 1
        clock.now += 0.01
        assert (await client.get("/health/ready")).status_code == 200
        assert len(checks) == 2


async def test_a_failure_shows_within_about_a_second(make_apps, redis_server, fresh_cache):
    """Real time: Redis stops right after a good answer was cached; the probe says so as soon
    as that answer is a second old (polled with a deadline)."""
    (app,) = await make_apps(1)
    fresh_cache(app)
    client = app.test_client()
    assert (await client.get("/health/ready")).status_code == 200
    redis_server.stop()
    stopped = time.monotonic()

    async def failing() -> bool:
        return (await client.get("/health/ready")).status_code == 503

    await until(failing, "/health/ready to report Redis down", READY_CACHE_SECONDS + 4)
    answer = await (await client.get("/health/ready")).get_json()
    assert answer["checks"] == {"database": "ok", "redis": "error", "outbox": "ok"}
    assert time.monotonic() - stopped < READY_CACHE_SECONDS + 4
