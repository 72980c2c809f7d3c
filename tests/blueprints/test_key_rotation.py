"""JWT key rotation between instances: a token names its key (`kid`), every instance verifies
with any key it has (`TASKAPI_JWT_SECRET_KEY` and `TASKAPI_JWT_ACCEPTED_KEYS`), and a token
of a key no instance has any more is refused with the contract's 401."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import jwt
import pytest

from tests.conftest import create_account

OLD, NEW = secrets.token_urlsafe(48), secrets.token_urlsafe(48)


def kid_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


async def login(app: Any, account: Any) -> dict[str, str]:
    body = {"username": account.username, "password": account.password}
    response = await app.test_client().post("/auth/login", json=body)
    assert response.status_code == 200, await response.get_data(as_text=True)
    tokens: dict[str, str] = await response.get_json()
    return tokens


async def me(app: Any, token: str) -> tuple[int, Any]:
    response = await app.test_client().get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    return response.status_code, await response.get_json()


async def refreshed(app: Any, token: str) -> tuple[int, Any]:
    response = await app.test_client().post(
        "/auth/refresh", headers={"Authorization": f"Bearer {token}"}
    )
    return response.status_code, await response.get_json()


async def test_a_token_names_its_signing_key_by_fingerprint(make_apps):
    (app,) = await make_apps(1, jwt_secret_key=OLD, jwt_accepted_keys=NEW)
    tokens = await login(app, await create_account(app))
    for token in (tokens["access_token"], tokens["refresh_token"]):
        header = jwt.get_unverified_header(token)
        assert header["kid"] == kid_of(OLD)
        assert OLD not in token and NEW not in token
        jwt.decode(token, OLD, algorithms=["HS256"])  # signed with the signing key


async def test_each_rotation_step_accepts_the_other_steps_tokens(make_apps):
    """Step 1 accepts the next key, step 2 signs with it and accepts the old one: tokens of
    either step, access and refresh, pass at the other."""
    (before,) = await make_apps(1, jwt_secret_key=OLD)
    (accepting,) = await make_apps(1, jwt_secret_key=OLD, jwt_accepted_keys=NEW)
    (signing,) = await make_apps(1, jwt_secret_key=NEW, jwt_accepted_keys=OLD)
    account = await create_account(before)
    old_tokens, new_tokens = await login(before, account), await login(signing, account)
    assert jwt.get_unverified_header(new_tokens["access_token"])["kid"] == kid_of(NEW)
    for app in (before, accepting, signing):
        assert (await me(app, old_tokens["access_token"]))[0] == 200
    for app in (accepting, signing):
        assert (await me(app, new_tokens["access_token"]))[0] == 200
        for tokens in (old_tokens, new_tokens):
            status, body = await refreshed(app, tokens["refresh_token"])
            assert status == 200, body
            assert (await me(accepting, body["access_token"]))[0] == 200
    status, body = await refreshed(signing, old_tokens["refresh_token"])
    assert jwt.get_unverified_header(body["access_token"])["kid"] == kid_of(NEW)


async def test_an_instance_refuses_a_key_it_does_not_have(make_apps):
    """Why the next key is accepted everywhere before anyone signs with it."""
    (before,) = await make_apps(1, jwt_secret_key=OLD)
    (signing,) = await make_apps(1, jwt_secret_key=NEW, jwt_accepted_keys=OLD)
    tokens = await login(signing, await create_account(signing))
    status, body = await me(before, tokens["access_token"])
    assert (status, body["error"]["code"]) == (401, "token_invalid")


async def test_a_dropped_keys_tokens_are_refused_with_the_contracts_401(make_apps):
    (old,) = await make_apps(1, jwt_secret_key=OLD)
    (dropped,) = await make_apps(1, jwt_secret_key=NEW)
    tokens = await login(old, await create_account(old))
    requests = [("GET", "/auth/me", "access_token"), ("POST", "/auth/refresh", "refresh_token")]
    for method, path, kind in requests:
        response = await dropped.test_client().open(
            path, method=method, headers={"Authorization": f"Bearer {tokens[kind]}"}
        )
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert await response.get_json() == {
            "status": "error",
            "error": {"message": "Invalid token.", "code": "token_invalid"},
        }


def without_kid(token: str, key: str) -> str:
    """The token as it was issued before tokens carried a `kid`: the same claims, no header."""
    return jwt.encode(jwt.decode(token, options={"verify_signature": False}), key, "HS256")


@pytest.mark.parametrize("signed_with", ["signing", "accepted"])
async def test_a_token_without_kid_passes_with_any_key(make_apps, signed_with):
    (app,) = await make_apps(1, jwt_secret_key=NEW, jwt_accepted_keys=OLD)
    tokens = await login(app, await create_account(app))
    key = NEW if signed_with == "signing" else OLD
    legacy = without_kid(tokens["access_token"], key)
    assert "kid" not in jwt.get_unverified_header(legacy)
    assert (await me(app, legacy))[0] == 200
    status, _ = await refreshed(app, without_kid(tokens["refresh_token"], key))
    assert status == 200


async def test_a_token_without_kid_of_no_key_is_refused(make_apps):
    (app,) = await make_apps(1, jwt_secret_key=NEW, jwt_accepted_keys=OLD)
    tokens = await login(app, await create_account(app))
    status, body = await me(app, without_kid(tokens["access_token"], secrets.token_urlsafe(48)))
    assert (status, body["error"]["code"]) == (401, "token_invalid")


async def test_a_kid_must_name_the_key_that_signed(make_apps):
    """A token whose `kid` names one key but whose signature is another's is refused, though
    the instance has both keys."""
    (app,) = await make_apps(1, jwt_secret_key=NEW, jwt_accepted_keys=OLD)
    tokens = await login(app, await create_account(app))
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    mislabelled = jwt.encode(claims, OLD, "HS256", headers={"kid": kid_of(NEW)})
    status, body = await me(app, mislabelled)
    assert (status, body["error"]["code"]) == (401, "token_invalid")
    unknown = jwt.encode(claims, NEW, "HS256", headers={"kid": "0" * 16})
    status, body = await me(app, unknown)
    assert (status, body["error"]["code"]) == (401, "token_invalid")
