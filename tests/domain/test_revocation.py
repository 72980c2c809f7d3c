"""Logout: revoked tokens are refused by every instance until they would have expired."""

from __future__ import annotations

import time

import jwt
import pytest

from taskapi.domain.cache import CachePolicy
from taskapi.domain.viewer import Viewer
from taskapi.http.tokens import issue_access_token, verify_token
from taskapi.infra.redis.state import LOADED, REVOKED_KEY
from taskapi.infra.stores import Entry, GateQuery
from tests.conftest import ROLE_CACHE_IDS, ROLE_CACHE_SECONDS, create_account, redis_of


@pytest.fixture(params=ROLE_CACHE_SECONDS, ids=ROLE_CACHE_IDS)
def user_cache_seconds(request) -> float:
    """Every test here runs with the role cache off (tests) and on (production)."""
    return request.param


BACKENDS = ["redis", "memory"]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_logout_revokes_the_access_token(make_apps, backend):
    (app,) = await make_apps(1, backend=backend)
    account = await create_account(app)
    client = app.test_client()
    response = await client.post("/auth/logout", headers=account.headers)
    assert response.status_code == 204
    assert await response.get_data() == b""
    for path in ("/auth/me", "/api/tasks/"):
        refused = await client.get(path, headers=account.headers)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        assert (await refused.get_json())["error"]["code"] == "token_revoked"


async def _refresh(client, refresh_token: str):
    return await client.post("/auth/refresh", headers={"Authorization": f"Bearer {refresh_token}"})


async def _refused_as_revoked(response) -> None:
    assert response.status_code == 401, await response.get_data(as_text=True)
    assert (await response.get_json())["error"]["code"] == "token_revoked"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_logout_with_the_access_token_alone_revokes_its_refresh_token(make_apps, backend):
    """The access token names the refresh token it was issued with: logging out with the
    access token alone revokes the pair."""
    (app,) = await make_apps(1, backend=backend)
    client = app.test_client()
    account = await create_account(app)
    assert (await client.post("/auth/logout", headers=account.headers)).status_code == 204
    await _refused_as_revoked(await _refresh(client, account.refresh_token))


@pytest.mark.parametrize("backend", BACKENDS)
async def test_logout_with_a_refreshed_access_token_revokes_the_refresh_token(make_apps, backend):
    """An access token from /auth/refresh names the refresh token that made it."""
    (app,) = await make_apps(1, backend=backend)
    client = app.test_client()
    account = await create_account(app)
    refreshed = await _refresh(client, account.refresh_token)
    access = (await refreshed.get_json())["access_token"]
    logout = await client.post("/auth/logout", headers={"Authorization": f"Bearer {access}"})
    assert logout.status_code == 204
    await _refused_as_revoked(await _refresh(client, account.refresh_token))


async def test_logout_on_one_instance_revokes_the_refresh_token_on_the_other(make_apps):
    first, second = await make_apps(2)
    account = await create_account(first)
    assert (
        await first.test_client().post("/auth/logout", headers=account.headers)
    ).status_code == 204
    await _refused_as_revoked(await _refresh(second.test_client(), account.refresh_token))


async def test_each_revocation_lives_as_long_as_its_token(make_apps):
    """In Redis, one sorted set without TTL (no volatile-* policy evicts it): each jti with its
    token's expiry as its score."""
    (app,) = await make_apps(1)
    account = await create_account(app)
    assert (
        await app.test_client().post("/auth/logout", headers=account.headers)
    ).status_code == 204
    state = app.extensions["taskapi"]
    now = time.time()
    async with redis_of(app) as redis:
        assert await redis.ttl(REVOKED_KEY) == -1
        members = await redis.zrange(REVOKED_KEY, 0, -1, withscores=True)
    expiries = sorted(score - now for member, score in members if member != LOADED)
    access, refresh = state.settings.access_token_expires, state.settings.refresh_token_expires
    assert len(expiries) == 2
    assert access - 5 <= expiries[0] <= access
    assert refresh - 5 <= expiries[1] <= refresh


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_access_token_that_names_no_refresh_token_revokes_only_itself(make_apps, backend):
    """Access tokens issued before the claim existed: logout works as it did."""
    (app,) = await make_apps(1, backend=backend)
    client = app.test_client()
    account = await create_account(app)
    async with app.app_context():
        claims = verify_token(account.access_token)
        old = issue_access_token(account.id, account.role, claims.generation)
    assert "rjti" not in jwt.decode(old, options={"verify_signature": False})
    assert (
        await client.post("/auth/logout", headers={"Authorization": f"Bearer {old}"})
    ).status_code == 204
    assert (
        await client.get("/auth/me", headers={"Authorization": f"Bearer {old}"})
    ).status_code == 401
    assert (await _refresh(client, account.refresh_token)).status_code == 200


@pytest.mark.parametrize("backend", BACKENDS)
async def test_logout_with_the_refresh_token_revokes_it_too(make_apps, backend):
    (app,) = await make_apps(1, backend=backend)
    account = await create_account(app)
    client = app.test_client()
    response = await client.post(
        "/auth/logout", headers=account.headers, json={"refresh_token": account.refresh_token}
    )
    assert response.status_code == 204
    refresh = await client.post(
        "/auth/refresh", headers={"Authorization": f"Bearer {account.refresh_token}"}
    )
    assert refresh.status_code == 401


async def test_a_refresh_token_logged_out_is_refused_as_revoked_at_refresh(make_apps):
    """The refresh token sent in the logout's body, presented again at /auth/refresh."""
    (app,) = await make_apps(1)
    account = await create_account(app)
    client = app.test_client()
    logout = await client.post(
        "/auth/logout", headers=account.headers, json={"refresh_token": account.refresh_token}
    )
    assert logout.status_code == 204
    again = await client.post(
        "/auth/refresh", headers={"Authorization": f"Bearer {account.refresh_token}"}
    )
    assert again.status_code == 401
    assert again.headers["WWW-Authenticate"] == "Bearer"
    assert (await again.get_json())["error"]["code"] == "token_revoked"


async def test_logout_on_one_instance_is_honoured_by_the_other(make_apps):
    first, second = await make_apps(2)
    account = await create_account(first)
    assert (await second.test_client().get("/auth/me", headers=account.headers)).status_code == 200
    await first.test_client().post("/auth/logout", headers=account.headers)
    assert (await second.test_client().get("/auth/me", headers=account.headers)).status_code == 401


@pytest.mark.parametrize(
    "body",
    [{"refresh_token": "garbage"}, {"refresh_token": 5}, [], {"refresh_token": "use-access"}],
)
async def test_logout_with_a_bad_refresh_token_is_400_and_revokes_nothing(make_apps, body):
    (app,) = await make_apps(1)
    account = await create_account(app)
    if body == {"refresh_token": "use-access"}:
        body = {"refresh_token": account.access_token}
    client = app.test_client()
    response = await client.post("/auth/logout", headers=account.headers, json=body)
    assert response.status_code == 400
    assert (await client.get("/auth/me", headers=account.headers)).status_code == 200


async def test_another_users_refresh_token_cannot_be_revoked(make_apps):
    (app,) = await make_apps(1)
    alice, bob = await create_account(app), await create_account(app)
    client = app.test_client()
    response = await client.post(
        "/auth/logout", headers=alice.headers, json={"refresh_token": bob.refresh_token}
    )
    assert response.status_code == 400
    bearer = {"Authorization": f"Bearer {bob.refresh_token}"}
    assert (await client.post("/auth/refresh", headers=bearer)).status_code == 200


def test_memory_revocations_expire_with_the_token():
    import asyncio

    from taskapi.infra.memory.state import MemoryRevocations

    async def scenario() -> tuple[bool, bool]:
        store = MemoryRevocations()
        await store.mark_loaded()
        now = int(time.time())
        await store.revoke({"live": now + 60, "dead": now - 1}, now - 60)
        return store.is_revoked("live"), store.is_revoked("dead")

    assert asyncio.run(scenario()) == (True, False)


async def test_revocation_holds_when_the_rate_limiter_asks_for_it(make_apps):
    """With limits on, the limiter's Redis step also reads the token's revocation (one round
    trip); every route must still refuse the revoked token and accept a fresh one."""
    (app,) = await make_apps(1, ratelimit_enabled=True, ratelimit_default="1000 per minute")
    account, other = await create_account(app), await create_account(app)
    client = app.test_client()
    created = await client.post("/api/tasks/", headers=account.headers, json={"title": "t"})
    url = f"/api/tasks/{(await created.get_json())['data']['id']}"
    assert (await client.post("/auth/logout", headers=account.headers)).status_code == 204
    for method, path in (("get", "/auth/me"), ("get", url), ("get", "/api/tasks/"), ("patch", url)):
        response = await getattr(client, method)(path, headers=account.headers, json={"title": "x"})
        assert response.status_code == 401, (method, path)
        assert (await response.get_json())["error"]["code"] == "token_revoked"
    assert (await client.get("/auth/me", headers=other.headers)).status_code == 200


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("limits", [False, True], ids=["limits-off", "limits-on"])
async def test_a_revoked_token_is_refused_before_its_cached_answers(make_apps, backend, limits):
    """The token's answers are cached (and, with the role cache on, its role remembered) when
    it is logged out: it gets 401, never a HIT, while a fresh token of the same user does hit."""
    (app,) = await make_apps(
        1, backend=backend, ratelimit_enabled=limits, ratelimit_default="1000 per minute"
    )
    account = await create_account(app)
    client = app.test_client()
    created = await client.post("/api/tasks/", headers=account.headers, json={"title": "t"})
    urls = [f"/api/tasks/{(await created.get_json())['data']['id']}", "/api/tasks/"]
    for url in urls:
        await client.get(url, headers=account.headers)
        assert (await client.get(url, headers=account.headers)).headers["X-Cache"] == "HIT"
    assert (await client.post("/auth/logout", headers=account.headers)).status_code == 204
    for url in urls:
        refused = await client.get(url, headers=account.headers)
        assert refused.status_code == 401, url
        assert "X-Cache" not in refused.headers
        assert (await refused.get_json())["error"]["code"] == "token_revoked"
    login = await client.post(
        "/auth/login", json={"username": account.username, "password": account.password}
    )
    fresh = {"Authorization": f"Bearer {(await login.get_json())['access_token']}"}
    for url in urls:  # the cached answers are still there: the refusal came first
        assert (await client.get(url, headers=fresh)).headers["X-Cache"] == "HIT"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_gatekeeper_skips_the_cached_answer_of_a_revoked_token(make_apps, backend):
    """The gate's shared-state step on its own (no HTTP): revocation is asked first, and a
    revoked token's cache lookup reads nothing, although the entry is there."""
    (app,) = await make_apps(1, backend=backend)
    state = app.extensions["taskapi"]
    slot = CachePolicy(state.settings).slot("list", Viewer(7, "user"), None, "http://x", "")
    assert slot is not None
    await state.answers.put(slot.key(0), Entry(200, {}, b"cached"), slot.ttl)
    await state.revocations.mark_loaded()  # the copy is whole (empty, as the record is)

    live = await state.gatekeeper.admit(GateQuery(jti="live", slot=slot))
    assert not live.revoked
    assert live.lookup is not None and live.lookup.entry == Entry(200, {}, b"cached")
    await state.revocations.revoke({"dead": int(time.time()) + 60}, 0)
    dead = await state.gatekeeper.admit(GateQuery(jti="dead", slot=slot))
    assert dead.revoked
    assert dead.lookup is None
