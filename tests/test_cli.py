"""The `taskapi` command, run as a user would run it."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from taskapi.infra.migrate import alembic_config
from taskapi.settings import PROJECT_ROOT

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
