"""The per-process caches of token and user state that the hot path relies on, and their
documented limits: verified tokens until they expire (revocation still checked every time),
roles for `TASKAPI_USER_CACHE_SECONDS`."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import delete, select, update

from taskapi.domain.accounts import RoleCache
from taskapi.domain.models import User
from taskapi.http.tokens import TokenClaims, VerifiedTokens
from tests.conftest import create_account, session_on
from tests.services import within_turns


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


class CountedConnections:
    """`connection_of` for RoleCache.role_of: real autocommit connections from the app's pool,
    counted; `hold` keeps the next caller waiting before it gets one."""

    def __init__(self, app) -> None:
        self.db = app.extensions["taskapi"].db
        self.asked = 0
        self.hold: asyncio.Event | None = None
        self.opened: list = []

    async def __call__(self):
        self.asked += 1
        hold, self.hold = self.hold, None
        if hold is not None:
            await hold.wait()
        connection = await self.db.connection()
        self.opened.append(connection)
        return connection

    async def close(self) -> None:
        for connection in self.opened:
            await connection.close()


async def _generation(app, user_id: int) -> int:
    async with app.extensions["taskapi"].db.connection() as connection:
        return int(await connection.scalar(select(User.token_generation).where(User.id == user_id)))


async def test_requests_that_miss_one_users_role_together_ask_the_database_once(make_apps):
    """The entry of a client with many requests in flight expires: one lookup, not one each."""
    (app,) = await make_apps(1, backend="memory", user_cache_seconds=30)
    account, admin = await create_account(app), await create_account(app, "admin")
    mine, theirs = await _generation(app, account.id), await _generation(app, admin.id)
    roles, connections = RoleCache(30), CountedConnections(app)
    try:
        found = await asyncio.gather(
            *(roles.role_of(connections, account.id, mine) for _ in range(50)),
            *(roles.role_of(connections, admin.id, theirs) for _ in range(50)),
        )
    finally:
        await connections.close()
    assert found == ["user"] * 50 + ["admin"] * 50
    assert connections.asked == 2  # one per user
    assert roles.cached_role(account.id, mine) == "user"


async def test_the_waiting_requests_of_a_cancelled_lookup_ask_themselves(make_apps):
    """The request whose lookup the others wait for goes away (its client left): they are
    answered all the same, by one more lookup."""
    (app,) = await make_apps(1, backend="memory", user_cache_seconds=30)
    account = await create_account(app)
    generation = await _generation(app, account.id)
    roles, connections = RoleCache(30), CountedConnections(app)
    connections.hold = released = asyncio.Event()
    try:
        first = asyncio.create_task(roles.role_of(connections, account.id, generation))
        await within_turns(lambda: connections.asked == 1)
        waiting = [
            asyncio.create_task(roles.role_of(connections, account.id, generation))
            for _ in range(20)
        ]
        await within_turns(lambda: all(not t.done() for t in waiting))  # they have started
        assert connections.asked == 1
        first.cancel()
        assert await asyncio.gather(*waiting) == ["user"] * 20
        assert first.cancelled()
        released.set()
    finally:
        await connections.close()
    assert connections.asked == 2


async def test_a_waiting_request_that_is_cancelled_leaves_the_lookup_running(make_apps):
    (app,) = await make_apps(1, backend="memory", user_cache_seconds=30)
    account = await create_account(app)
    generation = await _generation(app, account.id)
    roles, connections = RoleCache(30), CountedConnections(app)
    connections.hold = released = asyncio.Event()
    try:
        first = asyncio.create_task(roles.role_of(connections, account.id, generation))
        await within_turns(lambda: connections.asked == 1)
        second = asyncio.create_task(roles.role_of(connections, account.id, generation))
        await asyncio.sleep(0)
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        released.set()
        assert await first == "user"
    finally:
        await connections.close()
    assert connections.asked == 1


async def test_without_a_role_cache_every_request_asks_the_database(make_apps):
    """TASKAPI_USER_CACHE_SECONDS=0: a role change applies to the very next request, so no
    request takes the answer of a lookup that started before it."""
    (app,) = await make_apps(1, backend="memory", user_cache_seconds=0)
    account = await create_account(app)
    generation = await _generation(app, account.id)
    roles, connections = RoleCache(0), CountedConnections(app)
    try:
        found = await asyncio.gather(
            *(roles.role_of(connections, account.id, generation) for _ in range(10))
        )
    finally:
        await connections.close()
    assert found == ["user"] * 10
    assert connections.asked == 10
