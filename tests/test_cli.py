"""The `taskapi` command, run as a user would run it."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from taskapi.infra.migrate import alembic_config
from taskapi.settings import PROJECT_ROOT
from tests.services import free_port, poll, unavailable

TASKAPI = str(Path(sys.executable).parent / "taskapi")


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TASKAPI_", "DATABASE_URL"))}
    return subprocess.run(
        [TASKAPI, *args],
        cwd=PROJECT_ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_init_db_demo_seeds_once_and_is_safe_to_repeat(sqlite_url):
    first = run("init-db", "--demo", DATABASE_URL=sqlite_url)
    assert first.returncode == 0, first.stderr
    assert "admin 'admin', user 'user', 3 tasks" in first.stdout
    second = run("init-db", "--demo", DATABASE_URL=sqlite_url)
    assert second.returncode == 0, second.stderr
    assert "already present" in second.stdout
    current = run("db", "current", DATABASE_URL=sqlite_url)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert f"Rev: {head} (head)" in current.stdout


def test_init_db_demo_refuses_in_production(sqlite_url):
    result = run(
        "init-db",
        "--demo",
        TASKAPI_ENV="production",
        DATABASE_URL=sqlite_url,
        TASKAPI_JWT_SECRET_KEY=secrets.token_urlsafe(48),
    )
    assert result.returncode != 0
    assert "refuses" in result.stderr


def test_create_user_takes_the_password_from_the_environment(sqlite_url):
    assert run("db", "upgrade", DATABASE_URL=sqlite_url).returncode == 0
    result = run(
        "create-user",
        "--username",
        "root",
        "--email",
        "root@example.com",
        "--admin",
        DATABASE_URL=sqlite_url,
        TASKAPI_NEW_USER_PASSWORD="a-long-password",
    )
    assert result.returncode == 0, result.stderr
    assert "created admin 'root'" in result.stdout
    again = run(
        "create-user",
        "--username",
        "root",
        "--email",
        "other@example.com",
        DATABASE_URL=sqlite_url,
        TASKAPI_NEW_USER_PASSWORD="a-long-password",
    )
    assert again.returncode != 0
    assert "already exists" in again.stderr


def test_downgrade_and_history(sqlite_url):
    assert run("db", "upgrade", DATABASE_URL=sqlite_url).returncode == 0
    assert run("db", "downgrade", "base", DATABASE_URL=sqlite_url).returncode == 0
    history = run("db", "history", DATABASE_URL=sqlite_url)
    assert "0001" in history.stdout and "0002" in history.stdout


def test_a_configuration_error_is_one_clear_line(sqlite_url):
    result = run("db", "current", TASKAPI_ENV="production")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Error: configuration error: DATABASE_URL: production needs it set (e.g. postgresql://...)"
    ]


def test_worker_needs_redis():
    result = run("worker")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Error: configuration error: REDIS_URL: the worker needs it set (e.g. redis://127.0.0.1:6379/0)"
    ]


@contextlib.contextmanager
def serving(log: Path, **env: str) -> Iterator[Callable[[], str]]:
    """`taskapi serve` with these settings until the block ends; yields its output so far."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TASKAPI_", "DATABASE_URL"))}
    with log.open("wb") as output:
        process = subprocess.Popen(
            [TASKAPI, "serve"],
            cwd=PROJECT_ROOT,
            env={**base, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )

    def healthy() -> bool:
        if process.poll() is not None:
            raise RuntimeError(log.read_text())
        return _status("127.0.0.1", int(env["PORT"]), "GET", "/health") == 200

    try:
        poll(healthy, "taskapi serve")
        yield log.read_text
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def _status(host: str, port: int, method: str, path: str, body: object = None) -> int | None:
    try:
        connection = http.client.HTTPConnection(host, port, timeout=10)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, json.dumps(body) if body is not None else None, headers)
        return connection.getresponse().status
    except OSError:
        return None


def login(host: str, port: int, username: str, password: str) -> int | None:
    return _status(host, port, "POST", "/auth/login", {"username": username, "password": password})


def address_beyond_loopback() -> str:
    """This machine's own address on its network (a UDP socket's route to a documentation
    address; no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))
        except OSError:
            unavailable("this machine has no network address beyond loopback")
        address = str(probe.getsockname()[0])
    if address.startswith("127."):
        unavailable("this machine has no network address beyond loopback")
    return address


DEMO_REPLACED = re.compile(r"demo account '(\w+)' had the published password; .* now (\S+)")


def test_serving_beyond_loopback_replaces_the_published_demo_password(tmp_path, sqlite_url):
    """`HOST=0.0.0.0 make run`: the demo accounts seeded with the README's password get random
    ones, printed once; from another address the published password no longer logs in."""
    assert run("init-db", "--demo", DATABASE_URL=sqlite_url).returncode == 0
    address, port = address_beyond_loopback(), free_port()
    env = {
        "HOST": "0.0.0.0",
        "PORT": str(port),
        "DATABASE_URL": sqlite_url,
        "TASKAPI_JWT_SECRET_KEY": secrets.token_urlsafe(48),
    }
    with serving(tmp_path / "first.log", **env) as output:
        assert login(address, port, "admin", "password") == 401
        assert login(address, port, "user", "password") == 401
        printed = dict(DEMO_REPLACED.findall(output()))
        assert set(printed) == {"admin", "user"}, output()
        assert login(address, port, "admin", printed["admin"]) == 200
    with serving(tmp_path / "again.log", **env) as output:  # nothing left to replace
        assert "demo account" not in output()
        assert login(address, port, "admin", printed["admin"]) == 200


def test_serving_on_loopback_keeps_the_demo_password(tmp_path, sqlite_url):
    assert run("init-db", "--demo", DATABASE_URL=sqlite_url).returncode == 0
    port = free_port()
    with serving(tmp_path / "serve.log", PORT=str(port), DATABASE_URL=sqlite_url) as output:
        assert login("127.0.0.1", port, "admin", "password") == 200
        assert "demo account" not in output()


def test_serving_beyond_loopback_refuses_when_the_demo_accounts_cannot_be_checked():
    result = run(
        "serve",
        HOST="0.0.0.0",
        PORT=str(free_port()),
        DATABASE_URL=f"postgresql://taskapi@127.0.0.1:{free_port()}/taskapi",  # nothing there
        TASKAPI_JWT_SECRET_KEY=secrets.token_urlsafe(48),
    )
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: cannot check the demo accounts before serving on HOST=0.0.0.0")
    assert "serving on http" not in result.stdout
