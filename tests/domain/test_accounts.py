"""A deleted account's id, tokens and cached answers never pass to another account."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import select, text

from taskapi.app import create_app
from taskapi.domain import work
from taskapi.domain.accounts import delete_user
from taskapi.domain.models import User
from taskapi.settings import Settings
from tests.conftest import PASSWORD, create_account, empty_tables, replaced, state_of
from tests.lookalikes import fullwidth
from tests.services import RedisServer
from tests.test_cli import run


@dataclasses.dataclass
class Session:
    id: int
    access: str
    refresh: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _register_and_login(client: Any, name: str) -> Session:
    body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
    registered = await client.post("/auth/register", json=body)
    assert registered.status_code == 201, await registered.get_data(as_text=True)
    return await _login(client, name, (await registered.get_json())["user_id"])


async def _login(client: Any, name: str, user_id: int) -> Session:
    response = await client.post("/auth/login", json={"username": name, "password": PASSWORD})
    assert response.status_code == 200, await response.get_data(as_text=True)
    tokens = await response.get_json()
    return Session(user_id, tokens["access_token"], tokens["refresh_token"])


async def _delete(app: Quart, user_id: int) -> None:
    state = state_of(app)
    async with work.transaction(state.db, state.effects) as unit:
        assert await delete_user(unit, user_id)


async def _listed_titles_and_cache_flag(client: Any, who: Session) -> tuple[list[str], str]:
    response = await client.get("/api/tasks/", headers=who.headers)
    assert response.status_code == 200
    return [t["title"] for t in (await response.get_json())["data"]], response.headers["X-Cache"]


async def _refused(client: Any, who: Session) -> None:
    """Both of the account's tokens are answered 401 `token_invalid`."""
    me = await client.get("/auth/me", headers=who.headers)
    assert me.status_code == 401
    assert (await me.get_json())["error"]["code"] == "token_invalid"
    refreshed = await client.post("/auth/refresh", headers=_bearer(who.refresh))
    assert refreshed.status_code == 401
    assert (await refreshed.get_json())["error"]["code"] == "token_invalid"


@pytest.fixture
async def redis_app(settings: Settings, redis_server: RedisServer) -> AsyncIterator[Quart]:
    """The app on each database with the shared (Redis) cache, on empty tables and Redis."""
    redis_server.flush()
    application = create_app(replaced(settings, redis_url=redis_server.url))
    async with application.test_app():
        await empty_tables(application)
        yield application


async def _leaver_with_a_cached_list(client: Any) -> Session:
    """An account with one task whose list is in the cache."""
    leaver = await _register_and_login(client, "leaver")
    created = await client.post("/api/tasks/", headers=leaver.headers, json={"title": "secret"})
    assert created.status_code == 201
    await _listed_titles_and_cache_flag(client, leaver)
    assert await _listed_titles_and_cache_flag(client, leaver) == (["secret"], "HIT")
    return leaver


async def test_a_newcomer_after_a_deletion_gets_a_new_id_and_none_of_the_old_tokens_or_cache(
    redis_app,
):
    client = redis_app.test_client()
    leaver = await _leaver_with_a_cached_list(client)
    await _delete(redis_app, leaver.id)

    newcomer = await _register_and_login(client, "newcomer")

    assert newcomer.id > leaver.id
    await _refused(client, leaver)
    assert await _listed_titles_and_cache_flag(client, newcomer) == ([], "MISS")


async def test_an_account_forced_onto_a_deleted_id_accepts_none_of_the_old_tokens_or_cache(
    redis_app,
):
    client = redis_app.test_client()
    leaver = await _leaver_with_a_cached_list(client)
    await _delete(redis_app, leaver.id)
    state = state_of(redis_app)
    async with state.db.engine.begin() as connection:  # as a database that reuses ids would
        await connection.execute(
            text(
                "INSERT INTO users (id, username, username_canonical, email, email_canonical, "
                "password_hash) VALUES (:id, 'squatter', 'squatter', 'squatter@example.com', "
                "'squatter@example.com', :hash)"
            ),
            {"id": leaver.id, "hash": await state.passwords.hash(PASSWORD)},
        )
    squatter = await _login(client, "squatter", leaver.id)

    await _refused(client, leaver)
    assert await _listed_titles_and_cache_flag(client, squatter) == ([], "MISS")


async def test_a_cached_role_answers_only_tokens_of_the_accounts_current_generation(settings):
    """With the per-process user cache on, an entry refreshed by the account's new tokens does
    not pass a token of its old generation."""
    application = create_app(replaced(settings, user_cache_seconds=600))
    async with application.test_app():
        await empty_tables(application)
        client = application.test_client()
        old = await _register_and_login(client, "holder")
        assert (await client.get("/auth/me", headers=old.headers)).status_code == 200
        async with state_of(application).db.engine.begin() as connection:
            await connection.execute(
                text("UPDATE users SET token_generation = token_generation + 1 WHERE id = :id"),
                {"id": old.id},
            )
        new = await _login(client, "holder", old.id)
        assert (await client.get("/auth/me", headers=new.headers)).status_code == 200

        await _refused(client, old)


async def test_user_and_task_ids_are_never_reused(app, client, make_account):
    kept, last = await make_account(), await make_account()
    task = await client.post("/api/tasks/", headers=kept.headers, json={"title": "t"})
    task_id = (await task.get_json())["data"]["id"]
    assert (await client.delete(f"/api/tasks/{task_id}", headers=kept.headers)).status_code == 204
    await _delete(app, last.id)

    newer = await create_account(app)
    task = await client.post("/api/tasks/", headers=kept.headers, json={"title": "t"})

    assert newer.id > last.id
    assert (await task.get_json())["data"]["id"] > task_id


async def test_delete_user_command_removes_the_account_and_its_tasks(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert run("db", "upgrade", DATABASE_URL=url).returncode == 0
    created = run(
        "create-user",
        "--username",
        "leaver",
        "--email",
        "leaver@example.com",
        DATABASE_URL=url,
        TASKAPI_NEW_USER_PASSWORD=PASSWORD,
    )
    assert created.returncode == 0, created.stderr

    typed = fullwidth("LEAVER")  # matched by its canonical form, as at login
    deleted = run("delete-user", "--username", typed, "--yes", DATABASE_URL=url)
    again = run("delete-user", "--username", "leaver", "--yes", DATABASE_URL=url)

    assert deleted.returncode == 0, deleted.stderr
    assert f"deleted user {typed!r}" in deleted.stdout
    assert again.returncode != 0
    assert "no user 'leaver'" in again.stderr


async def test_delete_user_returns_false_for_a_missing_account(app, clean_db):
    state = state_of(app)
    async with work.transaction(state.db, state.effects) as unit:
        assert not await delete_user(unit, 10**9)
        assert await unit.connection.scalar(select(User.id).limit(1)) is None
