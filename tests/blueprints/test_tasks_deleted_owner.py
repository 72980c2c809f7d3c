"""Writes by a token whose account was deleted a moment ago, while the role cache (on, as in
production) still lets the token through: 401 or 404, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from quart import Quart
from sqlalchemy import delete

from taskapi.app import create_app
from taskapi.domain.models import User
from taskapi.http.tokens import verify_token
from tests.conftest import ApiClient, create_account, empty_tables, replaced, state_of


@pytest.fixture
async def cached_roles_app(settings) -> AsyncIterator[Quart]:
    """The test app on each database with production's role cache (a role is reused a while)."""
    application = create_app(replaced(settings, user_cache_seconds=60))
    async with application.test_app():
        await empty_tables(application)
        yield application


async def _deleted_while_cached(app: Quart) -> tuple[ApiClient, int]:
    """A user with one task whose role is in the cache, then deleted straight in the database."""
    api = ApiClient(app.test_client(), await create_account(app))
    task = await api.create_task(title="before")
    assert (await api.get("/api/tasks/")).status_code == 200
    async with state_of(app).db.transaction() as connection:
        await connection.execute(delete(User).where(User.id == api.account.id))
    assert (await api.get("/auth/me")).status_code == 401  # the account is gone...
    async with app.app_context():
        claims = verify_token(api.account.access_token)
    assert (
        state_of(app).roles.cached_role(claims.user_id, claims.generation) is not None
    )  # ...its role still cached
    return api, task["id"]


async def test_a_create_by_a_just_deleted_account_is_401_token_invalid(cached_roles_app):
    api, _ = await _deleted_while_cached(cached_roles_app)

    response = await api.post("/api/tasks/", json={"title": "after"})

    assert response.status_code == 401, await response.get_data(as_text=True)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    error = (await response.get_json())["error"]
    assert error == {"message": "The token's user no longer exists.", "code": "token_invalid"}


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("put", "", {"title": "after", "status": "pending"}),
        ("patch", "", {"title": "after"}),
        ("delete", "", None),
        ("post", "/process", None),
    ],
)
async def test_other_writes_by_a_just_deleted_account_find_its_task_gone(
    cached_roles_app, method, suffix, body
):
    """The account's tasks went with it: a write to one is 404, as for any missing task."""
    api, task_id = await _deleted_while_cached(cached_roles_app)

    response = await getattr(api, method)(f"/api/tasks/{task_id}{suffix}", json=body)

    assert response.status_code == 404, await response.get_data(as_text=True)
    assert (await response.get_json())["error"]["code"] == "not_found"
