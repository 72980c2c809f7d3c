"""Redis stops mid-test and comes back: the API keeps serving by its documented policies and
recovers by itself; each incident is logged once, not per request."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import ROLE_CACHE_IDS, ROLE_CACHE_SECONDS, create_account
from tests.services import until


@pytest.fixture(params=ROLE_CACHE_SECONDS, ids=ROLE_CACHE_IDS)
def user_cache_seconds(request) -> float:
    """Every test here runs with the role cache off (tests) and on (production)."""
    return request.param


RECOVERY_DEADLINE_SECONDS = 15.0


def _incidents(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "taskapi.infra.redis.pool"]


async def test_outage_with_the_default_policies_then_recovery(make_apps, redis_server, caplog):
    (app,) = await make_apps(1, ratelimit_enabled=True, ratelimit_default="1000 per minute")
    account = await create_account(app)
    client = app.test_client()
    created = await client.post("/api/tasks/", headers=account.headers, json={"title": "kept"})
    url = f"/api/tasks/{(await created.get_json())['data']['id']}"
    await client.get(url, headers=account.headers)

    caplog.set_level(logging.WARNING, logger="taskapi.infra.redis.pool")
    redis_server.stop()

    assert (await client.get("/health")).status_code == 200
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert (await ready.get_json())["checks"] == {
        "database": "ok",
        "redis": "error",
        "outbox": "ok",
    }
    for _ in range(20):
        # revocation is checked against the database: protected routes keep answering
        served = await client.get(url, headers=account.headers)
        assert served.status_code == 200
        assert served.headers["X-Cache"] == "MISS"
    # the rate limiter fails open: a login (no token to check) still works
    login = await client.post(
        "/auth/login", json={"username": account.username, "password": account.password}
    )
    assert login.status_code == 200
    assert len(_incidents(caplog)) == 1, _incidents(caplog)

    redis_server.start()

    async def cached_again() -> bool:  # served all along: the cache tells Redis is back
        await client.get(url, headers=account.headers)
        response = await client.get(url, headers=account.headers)
        return response.headers.get("X-Cache") == "HIT"

    await until(
        cached_again, "the cache to work again after Redis restarted", RECOVERY_DEADLINE_SECONDS
    )

    async def ready() -> bool:  # readiness answers are reused for a second
        return (await client.get("/health/ready")).status_code == 200

    await until(ready, "/health/ready to see Redis again", RECOVERY_DEADLINE_SECONDS)
    messages = _incidents(caplog)
    assert len(messages) == 2 and "available again" in messages[1], messages
    assert (await client.post("/auth/logout", headers=account.headers)).status_code == 204
    assert (await client.get(url, headers=account.headers)).status_code == 401


async def test_outage_serves_reads_and_writes_from_the_database(make_apps, redis_server):
    (app,) = await make_apps(1)
    account = await create_account(app)
    client = app.test_client()
    created = await client.post("/api/tasks/", headers=account.headers, json={"title": "v1"})
    url = f"/api/tasks/{(await created.get_json())['data']['id']}"

    redis_server.stop()
    read = await client.get(url, headers=account.headers)
    assert read.status_code == 200
    assert read.headers["X-Cache"] == "MISS"
    patched = await client.patch(url, headers=account.headers, json={"title": "v2"})
    assert patched.status_code == 200
    assert (await (await client.get(url, headers=account.headers)).get_json())["data"][
        "title"
    ] == "v2"

    redis_server.start()

    async def cached_again() -> bool:
        await client.get(url, headers=account.headers)
        response = await client.get(url, headers=account.headers)
        return response.headers.get("X-Cache") == "HIT"

    await until(
        cached_again, "the cache to work again after Redis restarted", RECOVERY_DEADLINE_SECONDS
    )
