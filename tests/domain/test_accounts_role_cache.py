"""The per-process caches of token and user state that the hot path relies on, and their
documented limits: verified tokens until they expire (revocation still checked every time),
roles for `TASKAPI_USER_CACHE_SECONDS`."""

from __future__ import annotations

import time

from sqlalchemy import delete, update

from taskapi.domain.accounts import RoleCache
from taskapi.domain.models import User
from taskapi.http.tokens import TokenClaims, VerifiedTokens
from tests.conftest import create_account, session_on


def _claims(expires_at: float) -> TokenClaims:
    return TokenClaims(user_id=1, kind="access", jti="j", expires_at=int(expires_at))


def test_a_verified_token_is_forgotten_when_it_expires():
    tokens = VerifiedTokens()
    tokens.put("live", _claims(time.time() + 60))
    tokens.put("dead", _claims(time.time() - 1))
    assert tokens.get("live") is not None
    assert tokens.get("dead") is None


def test_the_verified_tokens_are_bounded():
    tokens = VerifiedTokens(capacity=2)
    for name in ("a", "b", "c"):
        tokens.put(name, _claims(time.time() + 60))
    assert tokens.get("a") is None
    assert tokens.get("b") is not None and tokens.get("c") is not None


async def test_a_token_verified_before_is_still_revocable(make_apps):
    (app,) = await make_apps(1)
    account = await create_account(app)
    client = app.test_client()
    assert (await client.get("/api/tasks/", headers=account.headers)).status_code == 200
    assert (await client.post("/auth/logout", headers=account.headers)).status_code == 204
    assert (await client.get("/api/tasks/", headers=account.headers)).status_code == 401


async def test_a_tampered_copy_of_a_verified_token_is_refused(make_apps):
    (app,) = await make_apps(1)
    account = await create_account(app)
    client = app.test_client()
    assert (await client.get("/auth/me", headers=account.headers)).status_code == 200
    head, payload, signature = account.access_token.split(".")
    forged = f"{head}.{payload}.{signature[:-2]}AA"
    response = await client.get("/auth/me", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


class Clock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _roles_on(app, clock: Clock) -> None:
    state = app.extensions["taskapi"]
    state.roles = RoleCache(state.settings.user_cache_seconds, clock=clock)


async def test_a_demoted_admin_loses_admin_rights_within_the_role_cache_time(make_apps):
    (app,) = await make_apps(1, backend="memory", user_cache_seconds=30)
    clock = Clock()
    _roles_on(app, clock)
    admin, owner = await create_account(app, "admin"), await create_account(app)
    client = app.test_client()
    task = await client.post("/api/tasks/", headers=owner.headers, json={"title": "t"})
    url = f"/api/tasks/{(await task.get_json())['data']['id']}"
    assert (await client.get(url, headers=admin.headers)).status_code == 200
    state = app.extensions["taskapi"]
    async with session_on(state.db) as session:
        await session.execute(update(User).where(User.id == admin.id).values(role="user"))
        await session.commit()
    clock.now += 29.5  # the old role is reused until the cache time is up...
    assert (await client.get(url, headers=admin.headers)).status_code == 200
    clock.now += 0.5  # ...and not a moment longer
    assert (await client.get(url, headers=admin.headers)).status_code == 403


async def test_a_deleted_user_is_refused_within_the_role_cache_time(make_apps):
    (app,) = await make_apps(1, backend="memory", user_cache_seconds=30)
    clock = Clock()
    _roles_on(app, clock)
    account = await create_account(app)
    client = app.test_client()
    assert (await client.get("/auth/me", headers=account.headers)).status_code == 200
    state = app.extensions["taskapi"]
    async with session_on(state.db) as session:
        await session.execute(delete(User).where(User.id == account.id))
        await session.commit()
    clock.now += 29.5
    assert (await client.get("/api/tasks/", headers=account.headers)).status_code == 200
    clock.now += 0.5
    assert (await client.get("/api/tasks/", headers=account.headers)).status_code == 401


async def test_a_deactivated_user_is_refused_within_the_role_cache_time(make_apps):
    """Whatever wrote the flag (the generation left as it was): the gate asks for active ones."""
    (app,) = await make_apps(1, backend="memory", user_cache_seconds=30)
    clock = Clock()
    _roles_on(app, clock)
    account = await create_account(app)
    client = app.test_client()
    assert (await client.get("/auth/me", headers=account.headers)).status_code == 200
    state = app.extensions["taskapi"]
    async with session_on(state.db) as session:
        await session.execute(update(User).where(User.id == account.id).values(is_active=False))
        await session.commit()
    clock.now += 29.5
    assert (await client.get("/api/tasks/", headers=account.headers)).status_code == 200
    clock.now += 0.5
    assert (await client.get("/api/tasks/", headers=account.headers)).status_code == 401
