"""The failed-login budgets (taskapi.domain.limits), in process and in Redis: guessing an
account is bounded across any number of addresses, and a guesser cannot lock its owner out of
an address the owner has logged in from."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from taskapi.domain.limits import PREFIX, login_keys
from taskapi.domain.ports import LoginFailures
from taskapi.infra.memory.login_failures import MemoryLoginFailures
from taskapi.infra.redis.login_failures import RedisLoginFailures
from taskapi.infra.redis.pool import RedisPool
from taskapi.infra.stores import Limit, LoginBudgets, LoginCharge
from tests.domain.test_limits import StillClock, hold_clock

# the defaults of TASKAPI_RATELIMIT_LOGIN_FAILURES_PER_ADDRESS, _PER_ACCOUNT, _KNOWN_ADDRESS_DAYS
BUDGETS = LoginBudgets(Limit(5, 15 * 60), Limit(20, 86400), 30 * 86400)
OWNER_ADDRESS = "ip:192.0.2.10"
NEW_ADDRESS = "ip:192.0.2.99"


class ByName:
    """A failed-login store asked by username and address (the keys worked out as login does)."""

    def __init__(self, store: LoginFailures) -> None:
        self.store = store

    async def charge(self, username: str, address: str) -> LoginCharge:
        return await self.store.charge(login_keys(username, address))

    async def succeeded(self, charge: LoginCharge) -> None:
        await self.store.succeeded(charge)


Build = Callable[..., Coroutine[Any, Any, ByName]]


def guesser(i: int) -> str:
    """The i-th of many addresses, none of which has logged in to the account."""
    return f"ip:10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"


async def log_in(failures: ByName, username: str, address: str) -> LoginCharge:
    """An attempt with the right password: charged, then (when admitted) succeeded."""
    charge = await failures.charge(username, address)
    if not charge.retry_after:
        await failures.succeeded(charge)
    return charge


async def guesses_admitted(failures: ByName, username: str, count: int, first: int = 0) -> int:
    """How many of `count` wrong guesses from fresh addresses got to have their password checked."""
    charges = [await failures.charge(username, guesser(first + i)) for i in range(count)]
    return sum(not charge.retry_after for charge in charges)


@pytest.fixture
async def redis_pools(redis_server) -> AsyncIterator[Callable[[], Coroutine[Any, Any, RedisPool]]]:
    """Factory of Redis pools on one emptied server: one pool per simulated process."""
    redis_server.flush()
    pools: list[RedisPool] = []

    async def open_pool() -> RedisPool:
        pool = RedisPool(redis_server.url, timeout_ms=500, retry_after_ms=1000)
        await pool.open()
        pools.append(pool)
        return pool

    yield open_pool
    for pool in pools:
        await pool.close()


@pytest.fixture(params=["memory", "redis"])
def build(request, redis_pools) -> Build:
    """Factory of failed-login budgets on the parametrized backend."""

    async def factory(budgets: LoginBudgets = BUDGETS) -> ByName:
        if request.param == "memory":
            return ByName(MemoryLoginFailures(budgets))
        return ByName(RedisLoginFailures(budgets, await redis_pools()))

    return factory


@pytest.mark.parametrize("count", [10, 100])
async def test_guesses_from_rotating_addresses_are_bounded_and_the_owner_still_logs_in(
    build, count
):
    failures = await build()
    assert not (await log_in(failures, "alice", OWNER_ADDRESS)).retry_after
    assert await guesses_admitted(failures, "alice", count) == min(count, 20)
    assert not (await log_in(failures, "alice", OWNER_ADDRESS)).retry_after
    # an address new to the account waits while the budget of unknown addresses is spent
    assert bool((await failures.charge("alice", NEW_ADDRESS)).retry_after) == (count >= 20)


async def test_the_pair_lock_refuses_only_that_address_for_that_account(build):
    failures = await build()
    assert not (await log_in(failures, "alice", OWNER_ADDRESS)).retry_after
    for _ in range(5):  # the owner's own address: its failures lock it (and nothing else)
        assert not (await failures.charge("alice", OWNER_ADDRESS)).retry_after
    refused = await failures.charge("alice", OWNER_ADDRESS)
    assert 1 <= refused.retry_after <= 180  # one failure's worth of 5 per 15 minutes
    assert not (await failures.charge("alice", NEW_ADDRESS)).retry_after
    assert not (await failures.charge("bob", OWNER_ADDRESS)).retry_after


async def test_a_right_password_refunds_its_charge(build):
    failures = await build()
    for _ in range(10):  # ten logins from one address: none counts as a failure
        assert not (await log_in(failures, "alice", NEW_ADDRESS)).retry_after
    assert await guesses_admitted(failures, "alice", 19) == 19
    new = "ip:198.51.100.1"  # a first login from another address spends nothing either
    assert not (await log_in(failures, "alice", new)).retry_after
    assert await guesses_admitted(failures, "alice", 5, first=100) == 1  # the 20th, then none


async def test_usernames_share_a_budget_by_their_canonical_form(build):
    failures = await build()
    full_width = "\uff41\uff4c\uff49\uff43\uff45"  # "alice" in full-width letters
    for name in ("alice", "ALICE", full_width, "Alice", "aLiCe"):
        assert not (await failures.charge(name, OWNER_ADDRESS)).retry_after
    assert (await failures.charge("alice", OWNER_ADDRESS)).retry_after


async def test_a_day_of_guessing_lets_at_most_twice_the_daily_budget_through(monkeypatch):
    """'20 per day' admits 20 at once, then one every 72 minutes: at most 40 in any 24 hours,
    and 20 a day after that (the in-process budgets, on a clock the test moves)."""
    clock = StillClock()
    hold_clock(monkeypatch, clock)
    failures = ByName(MemoryLoginFailures(BUDGETS))
    days = []
    for day in range(3):
        admitted = 0
        for minute in range(24 * 60):  # a guess a minute, each from a fresh address
            charge = await failures.charge("alice", guesser(day * 1440 + minute))
            admitted += not charge.retry_after
            clock.now += 60
        days.append(admitted)
    assert days[0] <= 40
    assert days[1:] == [20, 20]
    assert not (await log_in(failures, "alice", OWNER_ADDRESS)).retry_after  # not locked out


async def test_redis_admits_no_more_than_the_budget_and_its_refill(redis_pools):
    """Redis's own clock: over a short period, a guesser gets the burst plus one per interval."""
    budgets = LoginBudgets(Limit(100, 900), Limit(3, 1), 86400)
    failures = ByName(RedisLoginFailures(budgets, await redis_pools()))
    started, admitted, i = time.monotonic(), 0, 0
    while time.monotonic() - started < 1.5:
        admitted += not (await failures.charge("alice", guesser(i))).retry_after
        i += 1
    elapsed = time.monotonic() - started
    assert 3 < admitted <= 3 + elapsed * 3 + 1, (admitted, elapsed, i)


async def test_two_processes_share_the_budgets_and_the_known_addresses(redis_pools):
    first = ByName(RedisLoginFailures(BUDGETS, await redis_pools()))
    second = ByName(RedisLoginFailures(BUDGETS, await redis_pools()))
    assert not (await log_in(first, "alice", OWNER_ADDRESS)).retry_after
    assert await guesses_admitted(first, "alice", 12) == 12
    assert await guesses_admitted(second, "alice", 12, first=12) == 8
    assert not (await log_in(second, "alice", OWNER_ADDRESS)).retry_after
    for _ in range(5):
        assert not (await first.charge("bob", NEW_ADDRESS)).retry_after
    assert (await second.charge("bob", NEW_ADDRESS)).retry_after


async def test_concurrent_guesses_cannot_overdraw_the_budget(redis_pools):
    """Each attempt is charged before its password is checked, in one atomic script."""
    processes = [ByName(RedisLoginFailures(BUDGETS, await redis_pools())) for _ in range(2)]
    charges = await asyncio.gather(
        *(processes[i % 2].charge("alice", guesser(i)) for i in range(60))
    )
    assert sum(not charge.retry_after for charge in charges) == 20


async def test_redis_keys_expire(redis_pools, redis_server):
    pool = await redis_pools()
    failures = ByName(RedisLoginFailures(BUDGETS, pool))
    await failures.charge("alice", NEW_ADDRESS)
    await log_in(failures, "alice", OWNER_ADDRESS)
    keys = sorted(key.decode() for key in await pool.client.keys(PREFIX + "login:*"))
    assert keys == [
        f"{PREFIX}login:account:alice",
        f"{PREFIX}login:known:{OWNER_ADDRESS}|alice",
        f"{PREFIX}login:pair:{NEW_ADDRESS}|alice",
    ]
    ttls = {key: await pool.client.pttl(key) for key in keys}
    assert 0 < ttls[keys[0]] <= 86400 * 1000 / 20
    assert 29 * 86400 * 1000 < ttls[keys[1]] <= 30 * 86400 * 1000
    assert 0 < ttls[keys[2]] <= 15 * 60 * 1000 / 5


async def test_no_budgets_when_rate_limiting_is_off(build):
    failures = await build(None)
    for _ in range(50):
        assert not (await failures.charge("alice", NEW_ADDRESS)).retry_after


async def test_the_in_process_budgets_can_be_cleared():
    store = MemoryLoginFailures(BUDGETS)
    failures = ByName(store)
    await log_in(failures, "alice", OWNER_ADDRESS)
    assert await guesses_admitted(failures, "alice", 25) == 20
    store.clear()  # budgets and known addresses alike
    assert await guesses_admitted(failures, "alice", 25, first=25) == 20
    assert (await failures.charge("alice", OWNER_ADDRESS)).retry_after  # no longer known
