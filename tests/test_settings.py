"""Settings: per-environment defaults, environment overrides, production refusals."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from taskapi.settings import PROJECT_ROOT, SettingsError, load_settings

GOOD_SECRET = "x" * 48
PG = "postgresql://taskapi:pw@db.internal:5432/taskapi"


def test_development_defaults_to_a_sqlite_file_under_instance():
    settings = load_settings(environ={})
    assert settings.env == "development"
    assert settings.database_url == f"sqlite+aiosqlite:///{PROJECT_ROOT}/instance/taskapi.db"
    assert settings.access_token_expires == 3600
    assert settings.refresh_token_expires == 7 * 24 * 3600
    assert settings.max_content_length == 1024 * 1024


def test_environment_variables_override_the_files():
    settings = load_settings(
        environ={
            "DATABASE_URL": PG,
            "TASKAPI_ACCESS_TOKEN_EXPIRES": "60",
            "TASKAPI_MAX_CONTENT_LENGTH": "2048",
            "TASKAPI_DB_ECHO": "true",
        }
    )
    assert settings.database_url == "postgresql+asyncpg://taskapi:pw@db.internal:5432/taskapi"
    assert settings.access_token_expires == 60
    assert settings.max_content_length == 2048
    assert settings.db_echo is True


def test_taskapi_database_url_wins_over_database_url():
    settings = load_settings(
        environ={"DATABASE_URL": PG, "TASKAPI_DATABASE_URL": "sqlite:////tmp/x.db"}
    )
    assert settings.database_url == "sqlite+aiosqlite:////tmp/x.db"


@pytest.mark.parametrize(
    ("name", "value"), [("TASKAPI_ACCESS_TOKEN_EXPIRES", "soon"), ("TASKAPI_DB_ECHO", "maybe")]
)
def test_a_malformed_value_is_a_clear_error(name, value):
    with pytest.raises(SettingsError, match=name.removeprefix("TASKAPI_").lower()):
        load_settings(environ={name: value})


def test_unknown_environment_is_refused():
    with pytest.raises(SettingsError, match="TASKAPI_ENV"):
        load_settings(environ={"TASKAPI_ENV": "staging"})


def test_production_starts_with_its_secrets():
    settings = load_settings(
        environ={
            "TASKAPI_ENV": "production",
            "DATABASE_URL": PG,
            "TASKAPI_JWT_SECRET_KEY": GOOD_SECRET,
        }
    )
    assert settings.is_production
    assert settings.jwt_secret_key == GOOD_SECRET


@pytest.mark.parametrize(
    ("environ", "complaint"),
    [
        ({"TASKAPI_JWT_SECRET_KEY": GOOD_SECRET}, "DATABASE_URL"),
        ({"DATABASE_URL": PG}, "TASKAPI_JWT_SECRET_KEY"),
        ({"DATABASE_URL": PG, "TASKAPI_JWT_SECRET_KEY": "short"}, "TASKAPI_JWT_SECRET_KEY"),
        (
            {"DATABASE_URL": PG, "TASKAPI_JWT_SECRET_KEY": "dev-insecure-jwt-secret-change-me"},
            "TASKAPI_JWT_SECRET_KEY",
        ),
    ],
)
def test_production_refuses_missing_or_development_secrets(environ, complaint):
    with pytest.raises(SettingsError, match=complaint):
        load_settings(environ={"TASKAPI_ENV": "production", **environ})


def test_production_refusal_is_one_line_from_the_asgi_entry_point():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKAPI_", "DATABASE_URL"))}
    env["TASKAPI_ENV"] = "production"
    result = subprocess.run(
        [sys.executable, "-c", "import asgi"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("taskapi: configuration error: production needs DATABASE_URL")
