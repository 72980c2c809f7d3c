"""Every /auth answer carries a token or account data (or could): `Cache-Control: no-store` on
successes and errors alike, whether or not the request sent `Authorization`."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import create_account

NEW_USER = {
    "username": "newcomer",
    "email": "newcomer@example.com",
    "password": "Quartz-Lantern-48",
}

# (method, path, body, token sent, expected status); "{username}"/"{password}" are the account's
CASES = [
    ("POST", "/auth/register", NEW_USER, None, 201),
    ("POST", "/auth/register", {}, None, 400),
    ("POST", "/auth/login", {"username": "{username}", "password": "{password}"}, None, 200),
    ("POST", "/auth/login", {"username": "{username}", "password": "wrong-pass"}, None, 401),
    ("POST", "/auth/login", {}, None, 400),
    ("POST", "/auth/refresh", None, "refresh", 200),
    ("POST", "/auth/refresh", None, None, 401),
    ("POST", "/auth/refresh", None, "access", 401),
    ("GET", "/auth/me", None, "access", 200),
    ("GET", "/auth/me", None, None, 401),
    ("POST", "/auth/logout", None, "access", 204),
    ("POST", "/auth/logout", {"refresh_token": "not-a-token"}, "access", 400),
    ("POST", "/auth/logout", None, None, 401),
]


def _filled(body: dict[str, str], account: Any) -> dict[str, str]:
    values = {"username": account.username, "password": account.password}
    return {key: value.format(**values) for key, value in body.items()}


@pytest.mark.parametrize(("method", "path", "body", "token", "status"), CASES)
async def test_auth_answers_say_no_store(client, make_account, method, path, body, token, status):
    account = await make_account()
    headers = {}
    if token is not None:
        kind = account.access_token if token == "access" else account.refresh_token
        headers["Authorization"] = f"Bearer {kind}"
    extra = {} if body is None else {"json": _filled(body, account)}
    response = await client.open(path, method=method, headers=headers, **extra)
    assert response.status_code == status, await response.get_data(as_text=True)
    assert response.headers.get("Cache-Control") == "no-store"


async def test_a_rate_limited_login_says_no_store(make_apps):
    (app,) = await make_apps(1, ratelimit_enabled=True)
    account = await create_account(app)
    client = app.test_client()
    attempt = {"username": account.username, "password": "wrong-pass"}
    for _ in range(50):
        response = await client.post("/auth/login", json=attempt)
        if response.status_code == 429:
            break
    assert response.status_code == 429
    assert response.headers.get("Cache-Control") == "no-store"
