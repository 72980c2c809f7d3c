"""Revocations survive Redis: the database is the record and Redis the fast path, so a token
revoked before or during an outage stays refused during it and after, whether Redis comes
back paused, restarted empty or flushed; and the API keeps serving meanwhile."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, insert, select

from taskapi.domain.revocations import (
    CHUNK,
    PRUNE_BATCH,
    PRUNE_MARGIN_SECONDS,
    REVOCATIONS,
    RevocationRecord,
    is_recorded,
    mark_pushed,
    record_revocations,
    unexpired_after,
    unpushed,
)
from taskapi.errors import APIError
from taskapi.http.tokens import verify_token
from taskapi.infra.db import Database
from taskapi.infra.memory.state import MemoryRevocations
from taskapi.infra.redis.state import LOADED, RELOAD_LOCK, REVOKED_KEY
from tests.conftest import (
    ROLE_CACHE_IDS,
    ROLE_CACHE_SECONDS,
    Account,
    create_account,
    make_settings,
    redis_of,
    state_of,
)
from tests.services import RedisServer, free_port, until


@pytest.fixture(params=ROLE_CACHE_SECONDS, ids=ROLE_CACHE_IDS)
def user_cache_seconds(request) -> float:
    """Every test here runs with the role cache off (tests) and on (production)."""
    return request.param


DEADLINE_SECONDS = 15.0


@contextlib.contextmanager
def paused(redis_server: RedisServer) -> Iterator[None]:
    """Redis stopped (SIGSTOP) and resumed (SIGCONT) with everything it held."""
    process = redis_server.process
    assert process is not None
    process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.send_signal(signal.SIGCONT)


async def _refused(app, account: Account) -> None:
    """Both of the account's tokens are refused as revoked."""
    client = app.test_client()
    me = await client.get("/auth/me", headers=account.headers)
    assert me.status_code == 401, await me.get_data(as_text=True)
    assert (await me.get_json())["error"]["code"] == "token_revoked"
    bearer = {"Authorization": f"Bearer {account.refresh_token}"}
    refresh = await client.post("/auth/refresh", headers=bearer)
    assert refresh.status_code == 401, await refresh.get_data(as_text=True)
    assert (await refresh.get_json())["error"]["code"] == "token_revoked"


async def _served(app, account: Account) -> None:
    me = await app.test_client().get("/auth/me", headers=account.headers)
    assert me.status_code == 200, await me.get_data(as_text=True)


async def _jti(app, account: Account) -> str:
    async with app.app_context():
        return verify_token(account.access_token).jti


async def _in_the_copy(app, jti: str) -> bool:
    """Whether Redis's copy is whole and holds the jti."""
    async with redis_of(app) as redis:
        return (
            await redis.zscore(REVOKED_KEY, LOADED) is not None
            and await redis.zscore(REVOKED_KEY, jti) is not None
        )


async def test_logout_during_an_outage_succeeds_and_the_token_stays_refused(
    make_apps, redis_server
):
    (app,) = await make_apps(1)
    account, other = await create_account(app), await create_account(app)
    redis_server.stop()

    logout = await app.test_client().post("/auth/logout", headers=account.headers)
    assert logout.status_code == 204
    await _refused(app, account)
    await _served(app, other)  # the API keeps serving the others

    redis_server.start()  # empty: the logout reached only the database
    jti = await _jti(app, account)

    async def copied() -> bool:
        await _refused(app, account)  # at every step, never accepted again
        await _served(app, other)  # whose token the copy cannot vouch for until reloaded
        return await _in_the_copy(app, jti)

    await until(copied, "the revocation to reach Redis from the record", DEADLINE_SECONDS)
    await _refused(app, account)
    await _served(app, other)


async def test_a_token_revoked_before_the_outage_is_refused_during_it(make_apps, redis_server):
    first, second = await make_apps(2)
    account, other = await create_account(first), await create_account(first)
    assert (
        await first.test_client().post("/auth/logout", headers=account.headers)
    ).status_code == 204
    redis_server.stop()
    for app in (first, second):
        for _ in range(3):
            await _refused(app, account)
            await _served(app, other)


@pytest.mark.parametrize("loss", ["restart", "flushall"])
async def test_redis_losing_its_data_does_not_bring_a_revoked_token_back(
    make_apps, redis_server, loss
):
    first, second = await make_apps(2)
    account, other = await create_account(first), await create_account(first)
    assert (
        await first.test_client().post("/auth/logout", headers=account.headers)
    ).status_code == 204
    jti = await _jti(first, account)
    if loss == "restart":  # --save '': it comes back empty
        redis_server.stop()
        redis_server.start()
    else:
        redis_server.flush()

    for _ in range(3):
        for app in (first, second):
            await _refused(app, account)
            await _served(app, other)

    async def reloaded() -> bool:
        await _refused(second, account)
        return await _in_the_copy(second, jti)

    await until(reloaded, "Redis's copy to be reloaded from the record", DEADLINE_SECONDS)
    for app in (first, second):
        await _refused(app, account)
        await _served(app, other)


async def test_a_logout_during_a_pause_is_refused_by_every_instance_and_reaches_redis(
    make_apps, redis_server
):
    """Redis keeps its data through a pause. A logout while the breaker still skips Redis
    reaches only the database, so Redis's copy, whole, lacks it: every instance that saw the
    outage asks the record until its sync has pushed what the copy lacked."""
    first, second = await make_apps(2, redis_retry_after_ms=5000)
    account, other = await create_account(first), await create_account(first)
    jti = await _jti(first, account)
    with paused(redis_server):
        await _served(first, account)  # from the database; both breakers open
        await _served(second, account)
    logout = await first.test_client().post("/auth/logout", headers=account.headers)
    assert logout.status_code == 204
    async with state_of(first).db.connection() as connection:
        pushed = await connection.scalar(
            select(REVOCATIONS.c.pushed).where(REVOCATIONS.c.jti == jti)
        )
    assert pushed is False  # recorded; Redis, skipped, has not got it
    assert not await _in_the_copy(first, jti)

    async def copied() -> bool:
        await _refused(second, account)
        await _refused(first, account)
        await _served(second, other)
        return await _in_the_copy(first, jti)

    await until(copied, "the record's sync to push the revocation", DEADLINE_SECONDS)
    await _refused(second, account)
    await _served(second, other)


async def test_volatile_ttl_eviction_leaves_the_revocations_alone(make_apps):
    """README's `maxmemory` with `volatile-ttl`: Redis evicts the keys nearest their expiry
    first, and the revocations' set has none."""
    (app,) = await make_apps(1)
    account = await create_account(app)
    assert (await app.test_client().post("/auth/logout", headers=account.headers)).status_code == (
        204
    )
    async with redis_of(app) as redis:
        used = (await redis.info("memory"))["used_memory"]
        await redis.config_set("maxmemory", used + 2_000_000)
        await redis.config_set("maxmemory-policy", "volatile-ttl")
        try:
            filler = b"x" * 1000
            for batch in range(8):  # longer-lived than the access token's revocation
                async with redis.pipeline(transaction=False) as pipe:
                    for i in range(500):
                        pipe.set(f"filler:{batch}:{i}", filler, ex=7200)
                    await pipe.execute()
            assert (await redis.info("stats"))["evicted_keys"] > 0
        finally:
            await redis.config_set("maxmemory", 0)
            await redis.config_set("maxmemory-policy", "noeviction")
    await _refused(app, account)


async def test_the_rate_limit_keeps_its_own_policy_during_an_outage(make_apps, redis_server):
    closed, open_ = await make_apps(
        1, ratelimit_enabled=True, ratelimit_default="1000 per minute", ratelimit_fail_open=False
    ) + await make_apps(1, ratelimit_enabled=True, ratelimit_default="1000 per minute")
    account = await create_account(closed)
    redis_server.stop()
    refused = await closed.test_client().get("/auth/me", headers=account.headers)
    assert refused.status_code == 503
    assert "Rate limiting" in (await refused.get_json())["error"]["message"]
    await _served(open_, account)


async def test_a_copy_that_is_not_whole_is_reloaded_from_the_record_in_chunks(
    make_apps, redis_server
):
    (app,) = await make_apps(1)
    account = await create_account(app)
    state = state_of(app)
    expires = int(time.time()) + 3600
    count = 2 * CHUNK + 5
    async with state.db.connection() as connection:
        await connection.execute(
            insert(REVOCATIONS),
            [{"jti": f"old-{i:05}", "expires_at": expires, "pushed": True} for i in range(count)],
        )
    redis_server.flush()

    await _served(app, account)  # the copy says "unknown": the record answers, and reloads it

    async def reloaded() -> bool:
        async with redis_of(app) as redis:
            return await redis.zscore(REVOKED_KEY, LOADED) is not None

    await until(reloaded, "the copy to be reloaded", DEADLINE_SECONDS)
    async with redis_of(app) as redis:
        assert await redis.zcard(REVOKED_KEY) == count + 1  # and LOADED
        assert await redis.zscore(REVOKED_KEY, f"old-{count - 1:05}") == expires


async def test_while_the_copy_is_not_whole_the_record_decides_and_the_rest_still_works(
    make_apps, redis_server
):
    """Another process holds the reload: the copy stays "unknown", so each request asks the
    record, then the store again for what it skipped (the cached answer, the idempotency
    claim)."""
    (app,) = await make_apps(1)
    account, revoked = await create_account(app), await create_account(app)
    client = app.test_client()
    assert (await client.post("/auth/logout", headers=revoked.headers)).status_code == 204
    redis_server.flush()
    async with redis_of(app) as redis:
        await redis.set(RELOAD_LOCK, b"another process", ex=60)
    try:
        await _refused(app, revoked)
        created = await client.post(
            "/api/tasks/",
            headers={**account.headers, "Idempotency-Key": "k1"},
            json={"title": "t"},
        )
        assert created.status_code == 201
        again = await client.post(
            "/api/tasks/",
            headers={**account.headers, "Idempotency-Key": "k1"},
            json={"title": "t"},
        )
        assert (again.status_code, again.headers["Idempotent-Replayed"]) == (201, "true")
        url = created.headers["Location"]
        assert (await client.get(url, headers=account.headers)).headers["X-Cache"] == "MISS"
        assert (await client.get(url, headers=account.headers)).headers["X-Cache"] == "HIT"
        async with redis_of(app) as redis:
            assert await redis.zscore(REVOKED_KEY, LOADED) is None  # still not whole
    finally:
        async with redis_of(app) as redis:
            await redis.delete(RELOAD_LOCK)


async def test_one_process_at_a_time_reloads_the_copy(make_apps):
    first, second = await make_apps(2)
    one, two = state_of(first).revocations, state_of(second).revocations
    assert await one.claim_reload()
    assert not await two.claim_reload()
    assert await one.claim_reload()  # its own: a reload cut off by a failure resumes
    await one.mark_loaded()
    assert await two.claim_reload()


async def test_the_embedded_default_keeps_revocations_across_a_restart(make_apps):
    """Without Redis the copy is the process's own: a new process loads it from the record
    (before, a restart brought every logged-out token back)."""
    (app,) = await make_apps(1, backend="memory")
    account = await create_account(app)
    assert (await app.test_client().post("/auth/logout", headers=account.headers)).status_code == (
        204
    )
    await _refused(app, account)
    (restarted,) = await make_apps(1, backend="memory")
    await _refused(restarted, account)


# --- the record itself, on SQLite and PostgreSQL -----------------------------------------------


async def test_the_record_keeps_each_jti_once_and_prunes_a_bounded_batch(app, clean_db):
    state = state_of(app)
    now = int(time.time())
    expired = now - PRUNE_MARGIN_SECONDS - 10
    async with state.db.connection() as connection:
        await connection.execute(
            insert(REVOCATIONS),
            [{"jti": f"gone-{i:04}", "expires_at": expired} for i in range(PRUNE_BATCH + 20)]
            + [{"jti": "lately", "expires_at": now - 1}],  # within the margin: kept
        )
        await record_revocations(connection, {"a": now + 60, "b": now + 120})
        left = await connection.scalar(
            select(func.count()).where(REVOCATIONS.c.expires_at == expired)
        )
        assert left == 20  # one logout deletes at most PRUNE_BATCH expired rows
        await record_revocations(connection, {"a": now + 60})  # again: kept once
        assert await is_recorded(connection, "a") and await is_recorded(connection, "lately")
        assert not await is_recorded(connection, "c")
        assert await connection.scalar(select(func.count()).select_from(REVOCATIONS)) == 3
        assert (
            await connection.scalar(
                select(REVOCATIONS.c.expires_at).where(REVOCATIONS.c.jti == "a")
            )
            == now + 60
        )


async def test_the_record_tells_what_the_copy_lacks_and_what_a_reload_reads(app, clean_db):
    state = state_of(app)
    now = int(time.time())
    async with state.db.connection() as connection:
        await record_revocations(connection, {"b": now + 60, "a": now + 60})
        await connection.execute(
            insert(REVOCATIONS), [{"jti": "old", "expires_at": now - PRUNE_MARGIN_SECONDS - 10}]
        )
        assert set(await unpushed(connection)) == {"a", "b", "old"}
        await mark_pushed(connection, ["a", "old"])
        assert await unpushed(connection) == {"b": now + 60}
        assert list(await unexpired_after(connection, "")) == ["a", "b"]  # by jti, unexpired
        assert list(await unexpired_after(connection, "a")) == ["b"]


async def test_with_the_database_down_too_a_token_the_copy_cannot_vouch_for_is_503():
    """Neither Redis nor the record can say: refused with 503, never accepted unchecked."""
    database = Database(make_settings(f"postgresql://nobody@127.0.0.1:{free_port()}/none"))
    await database.connect()
    try:
        record = RevocationRecord(database, MemoryRevocations(), interval=None)
        with pytest.raises(APIError) as refused:
            await record.revoked_in_record("any", copy_incomplete=False)
        assert (refused.value.status, refused.value.code) == (503, "service_unavailable")
    finally:
        await database.dispose()
