"""Password hashing and verification run off the event loop: every argon2 call is observed in
a thread where no event loop runs (bench/nonblocking.py measures what that buys)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path
from typing import Any

import argon2
import pytest
from click.testing import CliRunner

from taskapi import cli
from tests.conftest import PASSWORD, make_settings, migrate_to_head


@dataclasses.dataclass(frozen=True)
class Argon2Call:
    method: str
    thread: threading.Thread
    on_a_loop: bool


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.fixture
def argon2_calls(monkeypatch: pytest.MonkeyPatch) -> list[Argon2Call]:
    """Every argon2 `hash` and `verify` from now on: which method, in which thread."""
    calls: list[Argon2Call] = []

    def observed(method: str) -> Any:
        original = getattr(argon2.PasswordHasher, method)

        def wrapper(self: argon2.PasswordHasher, *args: Any, **kwargs: Any) -> Any:
            calls.append(Argon2Call(method, threading.current_thread(), _loop_running()))
            return original(self, *args, **kwargs)

        return wrapper

    for method in ("hash", "verify"):
        monkeypatch.setattr(argon2.PasswordHasher, method, observed(method))
    return calls


def _all_off_the_loop(calls: list[Argon2Call], loop_thread: threading.Thread) -> bool:
    return all(call.thread is not loop_thread and not call.on_a_loop for call in calls)


async def test_registration_hashes_off_the_event_loop(client, argon2_calls):
    response = await client.post(
        "/auth/register",
        json={"username": "hashed", "email": "hashed@example.com", "password": PASSWORD},
    )
    assert response.status_code == 201
    assert [call.method for call in argon2_calls] == ["hash"]
    assert _all_off_the_loop(argon2_calls, threading.current_thread()), argon2_calls


@pytest.mark.parametrize("who", ["existing", "unknown"])
async def test_login_verifies_off_the_event_loop(client, make_account, argon2_calls, who):
    account = await make_account()
    argon2_calls.clear()  # the account's own hashing is not the login's
    username = account.username if who == "existing" else "no-such-user"
    response = await client.post("/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == (200 if who == "existing" else 401)
    assert "verify" in [call.method for call in argon2_calls]
    assert _all_off_the_loop(argon2_calls, threading.current_thread()), argon2_calls


def test_the_create_user_command_hashes_off_its_event_loop(tmp_path: Path, argon2_calls):
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    migrate_to_head(make_settings(url))
    argon2_calls.clear()
    result = CliRunner().invoke(
        cli.main,
        ["create-user", "--username", "cli-user", "--email", "cli@example.com"],
        env={"TASKAPI_ENV": "testing", "DATABASE_URL": url, "TASKAPI_NEW_USER_PASSWORD": PASSWORD},
    )
    assert result.exit_code == 0, result.output
    assert [call.method for call in argon2_calls] == ["hash"]
    # asyncio.run ran the command's loop in this thread
    assert _all_off_the_loop(argon2_calls, threading.current_thread()), argon2_calls
