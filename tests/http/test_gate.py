"""Rate limits: atomic, shared by every app instance through Redis, keyed by user or real IP."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import delete

from taskapi.domain.limits import limits_from
from taskapi.domain.models import User
from taskapi.http.policy import LIMITS_ATTRIBUTE
from taskapi.settings import parse_rate_limits
from tests.conftest import ROLE_CACHE_IDS, ROLE_CACHE_SECONDS, create_account, session_on
from tests.domain.test_limits import StillClock, hold_clock
from tests.services import redis_commands_during


@pytest.fixture(params=ROLE_CACHE_SECONDS, ids=ROLE_CACHE_IDS)
def user_cache_seconds(request) -> float:
    """Every test here runs with the role cache off (tests) and on (production)."""
    return request.param


LIMITED = {"ratelimit_enabled": True}


async def test_two_instances_share_one_budget_exactly(make_apps):
    first, second = await make_apps(2, ratelimit_default="3 per minute", **LIMITED)
    account = await create_account(first)
    clients = [first.test_client(), second.test_client()]
    responses = await asyncio.gather(
        *(clients[i % 2].get("/auth/me", headers=account.headers) for i in range(30))
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 3, statuses
    assert statuses.count(429) == 27


@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_429_is_the_envelope_with_retry_after(make_apps, backend):
    (app,) = await make_apps(1, backend=backend, ratelimit_default="2 per minute", **LIMITED)
    account = await create_account(app)
    client = app.test_client()
    first = await client.get("/auth/me", headers=account.headers)
    assert first.status_code == 200
    assert first.headers["RateLimit-Limit"] == "2"
    assert first.headers["RateLimit-Remaining"] == "1"
    assert int(first.headers["RateLimit-Reset"]) > 0
    assert (await client.get("/auth/me", headers=account.headers)).status_code == 200
    refused = await client.get("/auth/me", headers=account.headers)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Remaining"] == "0"
    body = await refused.get_json()
    assert body["status"] == "error"
    assert body["error"]["code"] == "rate_limited"


@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_login_allows_five_per_minute_per_client(make_apps, backend):
    (app,) = await make_apps(1, backend=backend, **LIMITED)
    client = app.test_client()
    attempt = {"username": "nobody", "password": "wrong-password"}
    here = {"client": ("198.51.100.7", 40000)}
    statuses = [
        (await client.post("/auth/login", json=attempt, scope_base=here)).status_code
        for _ in range(6)
    ]
    assert statuses == [401] * 5 + [429]
    elsewhere = {"client": ("198.51.100.8", 40000)}
    assert (await client.post("/auth/login", json=attempt, scope_base=elsewhere)).status_code == 401


async def test_authenticated_requests_are_keyed_by_user_not_address(make_apps):
    (app,) = await make_apps(1, ratelimit_default="2 per minute", **LIMITED)
    alice, bob = await create_account(app), await create_account(app)
    client = app.test_client()
    for _ in range(2):
        assert (await client.get("/auth/me", headers=alice.headers)).status_code == 200
    assert (await client.get("/auth/me", headers=alice.headers)).status_code == 429
    assert (await client.get("/auth/me", headers=bob.headers)).status_code == 200


@pytest.mark.parametrize("role_reuse", [0, 60], ids=["role-from-db", "role-remembered"])
async def test_cached_reads_share_one_budget_exactly(make_apps, role_reuse):
    """A cached GET's limit runs inside the cache lookup's script (or alone, first, when the
    caller's role must come from the database): exact across processes either way."""
    first, second = await make_apps(
        2, ratelimit_default="4 per minute", user_cache_seconds=role_reuse, **LIMITED
    )
    account = await create_account(first)
    clients = [first.test_client(), second.test_client()]
    created = await clients[0].post("/api/tasks/", headers=account.headers, json={"title": "t"})
    url = f"/api/tasks/{(await created.get_json())['data']['id']}"
    warm = await clients[0].get(url, headers=account.headers)
    assert warm.status_code == 200  # the cache holds the answer; 1 of this route's 4 spent
    responses = await asyncio.gather(
        *(clients[i % 2].get(url, headers=account.headers) for i in range(30))
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 3, statuses
    assert statuses.count(429) == 27
    refused = next(r for r in responses if r.status_code == 429)
    assert (await refused.get_json())["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1


async def test_a_cached_hit_with_limits_on_is_one_redis_round_trip(make_apps, redis_server):
    (app,) = await make_apps(1, ratelimit_default="1000 per day", user_cache_seconds=60, **LIMITED)
    account = await create_account(app)
    client = app.test_client()
    created = await client.post("/api/tasks/", headers=account.headers, json={"title": "t"})
    url = f"/api/tasks/{(await created.get_json())['data']['id']}"
    miss = await client.get(url, headers=account.headers)  # and the role is now remembered
    responses = []

    async def read() -> None:
        responses.append(await client.get(url, headers=account.headers))

    commands = await redis_commands_during(redis_server.url, read)
    (hit,) = responses
    assert hit.headers["X-Cache"] == "HIT"
    assert commands == ["EVALSHA"]  # limit, revocation and cached answer together
    remaining = [int(r.headers["RateLimit-Remaining"]) for r in (miss, hit)]
    assert remaining[1] < remaining[0], remaining  # and the limit step did run


async def test_a_deleted_users_token_is_limited_on_cached_routes_too(make_apps):
    """The guard refuses a deleted user (401) before any cache lookup: the limit still runs
    first, so the token cannot make unlimited database lookups."""
    (app,) = await make_apps(1, ratelimit_default="2 per minute", **LIMITED)
    account = await create_account(app)
    async with session_on(app.extensions["taskapi"].db) as session:
        await session.execute(delete(User).where(User.id == account.id))
        await session.commit()
    client = app.test_client()
    statuses = [
        (await client.get("/api/tasks/", headers=account.headers)).status_code for _ in range(4)
    ]
    assert statuses == [401, 401, 429, 429]


async def test_options_on_a_cached_route_is_limited(make_apps):
    (app,) = await make_apps(1, ratelimit_default="2 per minute", **LIMITED)
    account = await create_account(app)
    client = app.test_client()
    statuses = [
        (await client.options("/api/tasks/", headers=account.headers)).status_code for _ in range(3)
    ]
    assert statuses == [204, 204, 429]


async def test_a_client_cannot_choose_its_key_with_x_forwarded_for(make_apps):
    (app,) = await make_apps(1, **LIMITED)  # no trusted proxies configured
    client = app.test_client()
    attempt = {"username": "nobody", "password": "wrong-password"}
    here = {"client": ("198.51.100.7", 40000)}
    statuses = [
        (
            await client.post(
                "/auth/login",
                json=attempt,
                scope_base=here,
                headers={"X-Forwarded-For": f"203.0.113.{i}"},
            )
        ).status_code
        for i in range(6)
    ]
    assert statuses[-1] == 429


async def test_behind_a_trusted_proxy_the_forwarded_client_is_the_key(make_apps):
    (app,) = await make_apps(1, trusted_proxies="10.0.0.0/8", **LIMITED)
    client = app.test_client()
    attempt = {"username": "nobody", "password": "wrong-password"}
    proxy = {"client": ("10.1.2.3", 40000)}

    async def login_as(forwarded: str) -> int:
        response = await client.post(
            "/auth/login", json=attempt, scope_base=proxy, headers={"X-Forwarded-For": forwarded}
        )
        return response.status_code

    # The client spoofs a left-most entry; the proxy appended the real address on the right.
    assert [await login_as(f"1.2.3.{i}, 203.0.113.9") for i in range(6)][-1] == 429
    assert await login_as("203.0.113.10") == 401


async def test_health_and_docs_are_not_limited(make_apps):
    (app,) = await make_apps(1, ratelimit_default="1 per minute", **LIMITED)
    client = app.test_client()
    for _ in range(3):
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/openapi.json")).status_code == 200


async def test_every_route_states_its_rate_limit_decision(app):
    undecided = [
        endpoint
        for endpoint, view in app.view_functions.items()
        if not isinstance(getattr(view, LIMITS_ATTRIBUTE, None), tuple)
    ]
    assert undecided == []


def test_limit_strings_parse_like_the_seeds():
    day, hour = limits_from(parse_rate_limits("200 per day;50 per hour"))
    assert (day.count, day.seconds) == (200, 86400)
    assert (hour.count, hour.seconds) == (50, 3600)
    (short,) = limits_from(parse_rate_limits("10 per 30 seconds"))
    assert (short.count, short.seconds) == (10, 30)
    with pytest.raises(ValueError, match="not a rate limit"):
        limits_from(parse_rate_limits("lots per day"))


@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_a_valid_token_does_not_move_login_or_register_to_another_budget(make_apps, backend):
    """The anonymous routes are keyed by address only: a bearer token changes nothing."""
    (app,) = await make_apps(1, backend=backend, ratelimit_default="3 per minute", **LIMITED)
    account = await create_account(app)
    client = app.test_client()
    here = {"client": ("198.51.100.20", 40000)}
    attempt = {"username": account.username, "password": "wrong-password"}
    statuses = [
        (await client.post("/auth/login", json=attempt, scope_base=here)).status_code
        for _ in range(3)
    ]
    assert statuses == [401, 401, 401]  # 3 of the default's 3 spent
    with_token = await client.post(
        "/auth/login", json=attempt, scope_base=here, headers=account.headers
    )
    assert with_token.status_code == 429
    signups = [
        (
            await client.post(
                "/auth/register",
                json={"username": f"n{i}", "email": f"n{i}@example.com", "password": "x" * 12},
                scope_base={"client": ("198.51.100.21", 40000)},
                headers=account.headers,
            )
        ).status_code
        for i in range(4)
    ]
    assert signups[-1] == 429, signups


@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_a_revoked_token_spends_its_address_budget_not_the_users(make_apps, backend):
    (app,) = await make_apps(1, backend=backend, ratelimit_default="2 per minute", **LIMITED)
    account = await create_account(app)
    client = app.test_client()
    here = {"client": ("198.51.100.30", 40000)}
    logout = await client.post("/auth/logout", headers=account.headers, scope_base=here)
    assert logout.status_code == 204
    statuses = [
        (await client.get("/auth/me", headers=account.headers, scope_base=here)).status_code
        for _ in range(3)
    ]
    assert statuses == [401, 401, 429]  # the address's 2 are spent
    login = await client.post(
        "/auth/login",
        json={"username": account.username, "password": account.password},
        scope_base={"client": ("198.51.100.31", 40000)},
    )
    fresh = {"Authorization": f"Bearer {(await login.get_json())['access_token']}"}
    statuses = [
        (await client.get("/auth/me", headers=fresh, scope_base=here)).status_code for _ in range(3)
    ]
    assert statuses == [200, 200, 429]  # the user's own 2 were untouched by the revoked token


async def _apps(make_apps, backend: str, **overrides):
    """Two instances sharing Redis, or the one process of the embedded default."""
    return await make_apps(2 if backend == "redis" else 1, backend=backend, **overrides)


def _login(apps, i: int, body: dict[str, str], address: str):
    """A login through the i-th request's instance, from `address`."""
    client = apps[i % len(apps)].test_client()
    return client.post("/auth/login", json=body, scope_base={"client": (address, 40000)})


@pytest.mark.parametrize("backend", ["redis", "memory"])
@pytest.mark.parametrize("guesses", [10, 100])
async def test_guesses_from_rotating_addresses_never_lock_the_owner_out(
    make_apps, backend, guesses
):
    """The owner keeps logging in from an address they have logged in from; the guesser gets
    at most TASKAPI_RATELIMIT_LOGIN_FAILURES_PER_ACCOUNT's 20 guesses (across instances)."""
    apps = await _apps(make_apps, backend, **LIMITED)
    account = await create_account(apps[0])
    right = {"username": account.username, "password": account.password}
    wrong = {"username": account.username, "password": "wrong-password"}
    usual = "192.0.2.10"
    assert (await _login(apps, 0, right, usual)).status_code == 200
    statuses = [
        (await _login(apps, i, wrong, f"203.0.113.{i}")).status_code for i in range(guesses)
    ]
    assert set(statuses) <= {401, 429}
    assert len(statuses) - statuses.count(429) == min(guesses, 20)  # passwords checked
    for i in range(2):  # on each instance
        assert (await _login(apps, 1 + i, right, usual)).status_code == 200
    # an address new to the account waits while the guessers have spent its budget
    first_time = await _login(apps, 0, right, "198.51.100.77")
    assert first_time.status_code == (429 if guesses >= 20 else 200)


async def test_a_day_of_guessing_gets_at_most_twice_the_daily_budget(make_apps, monkeypatch):
    """'20 per day': 20 at once, then one every 72 minutes, so at most 40 in any 24 hours (a
    guess every 10 minutes for a day, on the in-process limiter's clock)."""
    clock = StillClock()
    hold_clock(monkeypatch, clock)
    (app,) = await make_apps(1, backend="memory", **LIMITED)
    account = await create_account(app)
    wrong = {"username": account.username, "password": "wrong-password"}
    statuses = []
    for i in range(24 * 6 + 1):
        statuses.append((await _login([app], 0, wrong, f"10.0.{i // 256}.{i % 256}")).status_code)
        clock.now += 600
    assert 20 < statuses.count(401) <= 40, statuses.count(401)


@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_failures_lock_only_that_address_for_that_account(make_apps, backend):
    apps = await _apps(make_apps, backend, ratelimit_login="100 per minute", **LIMITED)
    alice, bob = await create_account(apps[0]), await create_account(apps[0])
    wrong = {"username": alice.username, "password": "wrong-password"}
    here = "198.51.100.40"
    assert [(await _login(apps, i, wrong, here)).status_code for i in range(5)] == [401] * 5
    right = {"username": alice.username, "password": alice.password}
    refused = await _login(apps, 5, right, here)
    assert refused.status_code == 429  # this address's 5 per 15 minutes are spent
    assert 1 <= int(refused.headers["Retry-After"]) <= 180
    error = (await refused.get_json())["error"]
    assert error["code"] == "rate_limited"
    assert error["message"].startswith("Too many failed logins for this username")
    assert (await _login(apps, 6, right, "198.51.100.41")).status_code == 200
    bobs = {"username": bob.username, "password": bob.password}
    assert (await _login(apps, 7, bobs, here)).status_code == 200


async def test_the_failed_login_budgets_are_settings(make_apps):
    apps = await make_apps(
        2,
        ratelimit_login_failures_per_address="2 per minute",
        ratelimit_login_failures_per_account="3 per day",
        **LIMITED,
    )
    wrong = {"username": "someone", "password": "wrong-password"}
    here = [(await _login(apps, i, wrong, "198.51.100.50")).status_code for i in range(3)]
    assert here == [401, 401, 429]
    elsewhere = [(await _login(apps, i, wrong, f"203.0.113.{i}")).status_code for i in range(3)]
    assert elsewhere == [401, 429, 429]  # 2 of the account's 3 were spent above


@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_unknown_and_existing_usernames_are_limited_alike(make_apps, backend):
    apps = await _apps(make_apps, backend, **LIMITED)
    account = await create_account(apps[0])
    answers = {}
    for name in (account.username, "no-such-user"):
        body = {"username": name, "password": "wrong-password"}
        responses = [await _login(apps, i, body, f"203.0.113.{i}") for i in range(25)]
        answers[name] = [(r.status_code, (await r.get_json())["error"]) for r in responses]
    assert answers[account.username] == answers["no-such-user"]
    assert [status for status, _ in answers["no-such-user"]] == [401] * 20 + [429] * 5


async def test_concurrent_guesses_cannot_overdraw_the_account_budget(make_apps):
    apps = await make_apps(2, **LIMITED)
    account = await create_account(apps[0])
    wrong = {"username": account.username, "password": "wrong-password"}
    responses = await asyncio.gather(*(_login(apps, i, wrong, f"203.0.113.{i}") for i in range(40)))
    statuses = [r.status_code for r in responses]
    assert (statuses.count(401), statuses.count(429)) == (20, 20)


@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_an_ipv6_client_has_one_budget_per_64_behind_a_trusted_proxy(make_apps, backend):
    (app,) = await make_apps(
        1,
        backend=backend,
        trusted_proxies="10.0.0.0/8",
        ratelimit_default="3 per minute",
        **LIMITED,
    )
    client = app.test_client()

    async def status_from(forwarded: str) -> int:
        response = await client.get(
            "/auth/me",
            scope_base={"client": ("10.1.2.3", 40000)},
            headers={"X-Forwarded-For": forwarded},
        )
        return response.status_code

    assert [await status_from(f"2001:db8:1:2::{i}") for i in range(1, 4)] == [401] * 3
    assert [await status_from(f"2001:db8:1:2:{i}::9") for i in range(1, 4)] == [429] * 3
    assert await status_from("2001:db8:1:3::1") == 401  # the next /64
    # an IPv4-mapped address is its IPv4 address
    assert [await status_from("203.0.113.9") for _ in range(3)] == [401] * 3
    assert await status_from("::ffff:203.0.113.9") == 429
    assert await status_from("203.0.113.10") == 401


async def test_the_ipv6_prefix_is_a_setting(make_apps):
    (app,) = await make_apps(
        1,
        trusted_proxies="10.0.0.0/8",
        ratelimit_default="1 per minute",
        ratelimit_ipv6_prefix=128,
        **LIMITED,
    )
    client = app.test_client()
    for i in range(1, 4):
        response = await client.get(
            "/auth/me",
            scope_base={"client": ("10.1.2.3", 40000)},
            headers={"X-Forwarded-For": f"2001:db8:1:2::{i}"},
        )
        assert response.status_code == 401


@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_login_failures_are_counted_per_ipv6_64_too(make_apps, backend):
    (app,) = await make_apps(
        1,
        backend=backend,
        trusted_proxies="10.0.0.0/8",
        ratelimit_login="100 per minute",
        **LIMITED,
    )
    account = await create_account(app)
    client = app.test_client()

    async def login(password: str, forwarded: str) -> int:
        response = await client.post(
            "/auth/login",
            json={"username": account.username, "password": password},
            scope_base={"client": ("10.1.2.3", 40000)},
            headers={"X-Forwarded-For": forwarded},
        )
        return response.status_code

    wrong = [await login("wrong-password", f"2001:db8:5:6::{i}") for i in range(1, 6)]
    assert wrong == [401] * 5
    assert await login(account.password, "2001:db8:5:6::99") == 429  # the same /64
    assert await login(account.password, "2001:db8:5:7::1") == 200
