"""`taskapi users set-role|deactivate|activate|logout-everywhere`, run through click against
the real PostgreSQL and Redis that running app instances share; each effect is checked through
the HTTP API, with the role cache off and on (then within its time, polled)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from click.testing import CliRunner, Result

from taskapi.cli import main
from tests.conftest import ROLE_CACHE_IDS, ROLE_CACHE_SECONDS, create_account


@pytest.fixture(params=ROLE_CACHE_SECONDS, ids=ROLE_CACHE_IDS)
def user_cache_seconds(request: pytest.FixtureRequest) -> float:
    return float(request.param)


@pytest.fixture
def taskapi(shared_settings, redis_server) -> Any:
    """Run `taskapi ARGS...` in this process, configured as the apps are (their database and
    Redis), in a thread of its own (the command runs its own event loop)."""
    env = {
        "TASKAPI_ENV": "testing",
        "TASKAPI_DATABASE_URL": shared_settings.database_url,
        "TASKAPI_REDIS_URL": redis_server.url,
    }

    async def invoke(*args: str) -> Result:
        return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=env)

    return invoke


async def status_of(app: Any, method: str, path: str, token: str) -> int:
    response = await app.test_client().open(
        path, method=method, headers={"Authorization": f"Bearer {token}"}
    )
    return int(response.status_code)


async def eventually(app: Any, method: str, path: str, token: str, status: int) -> None:
    """Poll until the request answers `status` (the role cache's time, at most, plus slack)."""
    deadline = time.monotonic() + 15
    while (found := await status_of(app, method, path, token)) != status:
        assert time.monotonic() < deadline, f"{method} {path}: still {found}, not {status}"
        await asyncio.sleep(0.1)


async def login_status(app: Any, account: Any) -> tuple[int, Any]:
    body = {"username": account.username, "password": account.password}
    response = await app.test_client().post("/auth/login", json=body)
    return response.status_code, await response.get_json()


async def test_set_role_makes_a_user_an_admin_and_back(make_apps, taskapi):
    app, other = await make_apps(2)
    owner, account = await create_account(app), await create_account(app)
    response = await app.test_client().post(
        "/api/tasks/", json={"title": "not yours"}, headers=owner.headers
    )
    task = f"/api/tasks/{(await response.get_json())['data']['id']}"
    assert await status_of(other, "GET", task, account.access_token) == 403

    result = await taskapi("users", "set-role", account.username.upper(), "admin")
    assert result.exit_code == 0, result.output
    assert result.output == f"{account.username.upper()!r} is now an admin\n"
    for instance in (app, other):  # the same token: the gate reads the database's role
        await eventually(instance, "GET", task, account.access_token, 200)

    result = await taskapi("users", "set-role", account.username, "user")
    assert result.exit_code == 0, result.output
    for instance in (app, other):
        await eventually(instance, "GET", task, account.access_token, 403)


async def test_deactivate_refuses_logins_and_every_token_then_activate_allows_logins(
    make_apps, taskapi
):
    app, other = await make_apps(2)
    account = await create_account(app)
    second = (await login_status(other, account))[1]

    result = await taskapi("users", "deactivate", account.username)
    assert result.exit_code == 0, result.output
    for instance in (app, other):
        for token in (account.access_token, second["access_token"]):
            await eventually(instance, "GET", "/api/tasks/", token, 401)
        for token in (account.refresh_token, second["refresh_token"]):
            await eventually(instance, "POST", "/auth/refresh", token, 401)
        status, body = await login_status(instance, account)  # as for a wrong password
        assert (status, body["error"]["code"]) == (401, "invalid_credentials")

    result = await taskapi("users", "activate", account.username)
    assert result.exit_code == 0, result.output
    status, tokens = await login_status(other, account)
    assert status == 200
    assert await status_of(app, "GET", "/api/tasks/", tokens["access_token"]) == 200
    assert await status_of(app, "GET", "/api/tasks/", account.access_token) == 401


async def test_logout_everywhere_revokes_every_token_even_once_redis_is_emptied(
    make_apps, taskapi, redis_server
):
    app, other = await make_apps(2)
    account, bystander = await create_account(app), await create_account(app)
    second = (await login_status(other, account))[1]
    pairs = [(account.access_token, account.refresh_token)]
    pairs.append((second["access_token"], second["refresh_token"]))

    result = await taskapi("users", "logout-everywhere", account.username)
    assert result.exit_code == 0, result.output
    redis_server.flush()  # the revocation is the account's, in the database
    for instance in (app, other):
        for access, refresh in pairs:
            await eventually(instance, "GET", "/api/tasks/", access, 401)
            await eventually(instance, "POST", "/auth/refresh", refresh, 401)
    assert await status_of(app, "GET", "/api/tasks/", bystander.access_token) == 200
    status, tokens = await login_status(app, account)
    assert status == 200
    assert await status_of(other, "GET", "/api/tasks/", tokens["access_token"]) == 200


@pytest.mark.parametrize(
    "command", ["set-role nobody admin", "deactivate nobody", "logout-everywhere nobody"]
)
async def test_an_unknown_username_is_an_error(make_apps, taskapi, command):
    await make_apps(1)
    result = await taskapi("users", *command.split())
    assert result.exit_code == 1
    assert result.output == "Error: no user 'nobody'\n"


async def test_set_role_takes_only_the_two_roles(make_apps, taskapi):
    (app,) = await make_apps(1)
    account = await create_account(app)
    result = await taskapi("users", "set-role", account.username, "root")
    assert result.exit_code == 2
    assert "'root' is not one of 'admin', 'user'" in result.output
