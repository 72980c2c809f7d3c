"""Settings: per-environment defaults, environment overrides, validation, production refusals."""

from __future__ import annotations

import ipaddress
import os
import secrets
import subprocess
import sys
import tomllib

import pytest

import taskapi.settings.loader as settings_loader
from taskapi.secret_policy import (
    CONTEXT_WORDS,
    GENERATE_SECRET,
    MIN_RANDOM_SHARE,
    PLACEHOLDER_MARKERS,
    random_share,
)
from taskapi.settings import (
    CONFIG_DIR,
    PROJECT_ROOT,
    RateLimitSpec,
    SettingsError,
    load_settings,
)
from tests.committed_secrets import committed_secret_values
from tests.conftest import replaced

PG = "postgresql://taskapi:pw@db.internal:5432/taskapi"


def good_secret() -> str:
    """A fresh random secret: a literal one would be a committed value, which production refuses."""
    return secrets.token_urlsafe(48)


def production(**environ: str) -> dict[str, str]:
    return {"TASKAPI_ENV": "production", "DATABASE_URL": PG, **environ}


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


def test_overrides_win_over_the_environment_and_the_files():
    settings = load_settings(
        environ={"DATABASE_URL": PG, "TASKAPI_CACHE_LIST_TTL": "30"},
        database_url="sqlite:////tmp/override.db",
        cache_list_ttl=10,
    )
    assert settings.database_url == "sqlite+aiosqlite:////tmp/override.db"
    assert settings.cache_list_ttl == 10


def test_taskapi_database_url_wins_over_database_url():
    settings = load_settings(
        environ={"DATABASE_URL": PG, "TASKAPI_DATABASE_URL": "sqlite:////tmp/x.db"}
    )
    assert settings.database_url == "sqlite+aiosqlite:////tmp/x.db"


def test_limits_and_networks_are_stored_parsed():
    settings = load_settings(
        environ={
            "TASKAPI_RATELIMIT_DEFAULT": "200 per day; 50 per hour",
            "TASKAPI_RATELIMIT_LOGIN": "10 per 30 seconds",
            "TASKAPI_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8, ::1",
        }
    )
    assert settings.ratelimit_default == (RateLimitSpec(200, 86400), RateLimitSpec(50, 3600))
    assert settings.ratelimit_login == (RateLimitSpec(10, 30),)
    assert settings.trusted_proxies == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        ("TASKAPI_CACHE_LIST_TTL", "-5", "TASKAPI_CACHE_LIST_TTL: must be 1 or more (got -5)"),
        ("TASKAPI_CACHE_DETAIL_TTL", "0", "TASKAPI_CACHE_DETAIL_TTL: must be 1 or more (got 0)"),
        ("TASKAPI_DB_POOL_SIZE", "0", "TASKAPI_DB_POOL_SIZE: must be 1 or more (got 0)"),
        ("TASKAPI_USER_CACHE_SECONDS", "-1", "TASKAPI_USER_CACHE_SECONDS: must be 0 or more"),
        ("TASKAPI_USER_CACHE_SECONDS", "nan", "TASKAPI_USER_CACHE_SECONDS: must be a finite"),
        ("TASKAPI_ACCESS_TOKEN_EXPIRES", "soon", "TASKAPI_ACCESS_TOKEN_EXPIRES: must be a whole"),
        ("TASKAPI_DB_ECHO", "maybe", "TASKAPI_DB_ECHO: must be true or false (got maybe)"),
        ("TASKAPI_LOG_LEVEL", "loud", "TASKAPI_LOG_LEVEL: must be one of DEBUG, INFO,"),
        ("TASKAPI_LOG_FORMAT", "xml", "TASKAPI_LOG_FORMAT: must be 'text' or 'json' (got xml)"),
        ("TASKAPI_RATELIMIT_DEFAULT", "often", "TASKAPI_RATELIMIT_DEFAULT: not a rate limit: "),
        ("TASKAPI_RATELIMIT_LOGIN", "0 per minute", "TASKAPI_RATELIMIT_LOGIN: not a rate limit"),
        (
            "TASKAPI_RATELIMIT_LOGIN_FAILURES_PER_ADDRESS",
            "5/minute;9/hour",
            "TASKAPI_RATELIMIT_LOGIN_FAILURES_PER_ADDRESS: must be exactly one limit",
        ),
        (
            "TASKAPI_RATELIMIT_LOGIN_FAILURES_PER_ACCOUNT",
            "many per day",
            "TASKAPI_RATELIMIT_LOGIN_FAILURES_PER_ACCOUNT: not a rate limit",
        ),
        (
            "TASKAPI_RATELIMIT_LOGIN_KNOWN_ADDRESS_DAYS",
            "0",
            "TASKAPI_RATELIMIT_LOGIN_KNOWN_ADDRESS_DAYS: must be 1 or more (got 0)",
        ),
        ("TASKAPI_RATELIMIT_IPV6_PREFIX", "0", "TASKAPI_RATELIMIT_IPV6_PREFIX: must be 1 or more"),
        ("TASKAPI_RATELIMIT_IPV6_PREFIX", "129", "TASKAPI_RATELIMIT_IPV6_PREFIX: must be 128 or"),
        ("TASKAPI_RATELIMIT_IPV6_PREFIX", "/64", "TASKAPI_RATELIMIT_IPV6_PREFIX: must be a whole"),
        (
            "TASKAPI_RATELIMIT_LOGIN_FAILURES",
            "10 per 15 minutes",
            "TASKAPI_RATELIMIT_LOGIN_FAILURES: removed (a per-username limit let anyone lock an "
            "account out); set TASKAPI_RATELIMIT_LOGIN_FAILURES_PER_ADDRESS and "
            "TASKAPI_RATELIMIT_LOGIN_FAILURES_PER_ACCOUNT instead",
        ),
        ("TASKAPI_TRUSTED_PROXIES", "garbage", "TASKAPI_TRUSTED_PROXIES: not an address or net"),
        ("TASKAPI_TRUSTED_PROXIES", "10.0.0.0/33", "TASKAPI_TRUSTED_PROXIES: not an address"),
        ("DATABASE_URL", "mysql://u:pw@db/x", "DATABASE_URL: only sqlite:// and postgresql://"),
        ("TASKAPI_DATABASE_URL", "db.sqlite", "TASKAPI_DATABASE_URL: only sqlite:// and post"),
        ("REDIS_URL", "http://cache:6379", "REDIS_URL: must start with redis://, rediss://"),
        ("TASKAPI_SMTP_URL", "mail.example.com", "TASKAPI_SMTP_URL: must start with smtp://"),
        ("TASKAPI_ENV", "staging", "TASKAPI_ENV: must be one of development, testing, production"),
        ("TASKAPI_PROXY_HOPS", "1", "TASKAPI_PROXY_HOPS: removed; list your proxies' addresses"),
        (
            "TASKAPI_REVOCATION_FAIL_OPEN",
            "1",
            "TASKAPI_REVOCATION_FAIL_OPEN: removed; with Redis unreachable, revocations are "
            "checked against the database",
        ),
    ],
)
def test_a_bad_value_is_one_line_naming_its_variable(name, value, line):
    with pytest.raises(SettingsError) as refused:
        load_settings(environ={name: value})
    message = str(refused.value)
    assert message.startswith(line)
    assert "\n" not in message


def test_a_bad_url_is_reported_without_its_password():
    with pytest.raises(SettingsError) as refused:
        load_settings(environ={"DATABASE_URL": "mysql://taskapi:hunter2@db/x"})
    assert str(refused.value) == (
        "DATABASE_URL: only sqlite:// and postgresql:// URLs are accepted (got mysql://)"
    )


def test_overrides_are_parsed_and_validated_like_the_environment():
    settings = load_settings(environ={}, trusted_proxies="10.0.0.0/8")
    assert settings.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"),)
    # development.toml sets cache_list_ttl, but the bad value is the override's: its variable
    with pytest.raises(SettingsError, match=r"^TASKAPI_CACHE_LIST_TTL: must be 1 or more"):
        load_settings(environ={}, cache_list_ttl=-5)


def test_replaced_keeps_every_other_value():
    settings = load_settings(environ={"TASKAPI_CACHE_DETAIL_TTL": "7"}, trusted_proxies="::1")
    copy = replaced(settings, cache_list_ttl=9)
    assert copy.cache_list_ttl == 9
    assert copy.model_dump() == {**settings.model_dump(), "cache_list_ttl": 9}


def test_unknown_setting_is_refused():
    with pytest.raises(SettingsError, match="TASKAPI_CACHE_TTL: is not a setting"):
        load_settings(environ={}, cache_ttl=5)


def test_a_missing_configuration_file_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setattr(settings_loader, "CONFIG_DIR", tmp_path)
    with pytest.raises(SettingsError) as refused:
        load_settings(environ={})
    assert str(refused.value) == (
        f"TASKAPI_ENV: {tmp_path / 'development.toml'} is missing (reinstall taskapi)"
    )


def test_production_starts_with_a_random_secret():
    secret = good_secret()
    settings = load_settings(environ=production(TASKAPI_JWT_SECRET_KEY=secret))
    assert settings.is_production
    assert settings.jwt_secret_key == secret


@pytest.mark.parametrize(
    ("environ", "complaint"),
    [
        ({"DATABASE_URL": ""}, "DATABASE_URL: production needs it set"),
        ({"TASKAPI_JWT_SECRET_KEY": ""}, "TASKAPI_JWT_SECRET_KEY: production refuses a secret"),
        ({"TASKAPI_JWT_SECRET_KEY": "short"}, "TASKAPI_JWT_SECRET_KEY: production refuses"),
        ({"TASKAPI_JWT_SECRET_KEY": "a" * 32}, "that is not random"),
        ({"TASKAPI_JWT_SECRET_KEY": secrets.token_urlsafe(15)}, "that is too short"),
        ({"TASKAPI_JWT_SECRET_KEY": "ab" * 40}, "that is not random"),
        ({"TASKAPI_JWT_SECRET_KEY": "a" * 40 + "bcdefghijklmnop"}, "that is not random"),
        ({"TASKAPI_JWT_SECRET_KEY": "my-own-jwt-SECRET-9f8e7d6c5b4a3210"}, "a placeholder"),
        ({"TASKAPI_JWT_SECRET_KEY": "ChangeMe" + secrets.token_hex(16)}, "a placeholder"),
        ({"TASKAPI_JWT_SECRET_KEY": "AcmeCorpTaskApiProductionKey2024!"}, "that is not random"),
    ],
)
def test_production_refuses_missing_or_weak_secrets(environ, complaint):
    with pytest.raises(SettingsError, match=complaint):
        load_settings(environ=production(**{"TASKAPI_JWT_SECRET_KEY": good_secret(), **environ}))


def test_accepted_keys_are_a_comma_separated_list():
    first, second = good_secret(), good_secret()
    environ = production(
        TASKAPI_JWT_SECRET_KEY=good_secret(), TASKAPI_JWT_ACCEPTED_KEYS=f" {first} ,,{second},"
    )
    assert load_settings(environ=environ).jwt_accepted_keys == (first, second)
    assert load_settings(environ={}).jwt_accepted_keys == ()


@pytest.mark.parametrize("weak", ["shrt", "a" * 40, "ChangeMe" + secrets.token_hex(16)])
def test_production_refuses_a_weak_accepted_key_without_showing_it(weak):
    """Every key that verifies tokens can forge them: each passes the signing key's policy."""
    keys = f"{good_secret()},{weak},{good_secret()}"
    with pytest.raises(SettingsError) as refused:
        load_settings(
            environ=production(TASKAPI_JWT_SECRET_KEY=good_secret(), TASKAPI_JWT_ACCEPTED_KEYS=keys)
        )
    line = str(refused.value)
    assert line.startswith("TASKAPI_JWT_ACCEPTED_KEYS: production refuses key 2 (of 3), a secret")
    assert weak not in line and "\n" not in line


def test_production_refuses_every_secret_committed_to_the_repository():
    values = committed_secret_values()
    development = tomllib.loads((CONFIG_DIR / "development.toml").read_text())
    assert {"CHANGE-ME-to-at-least-32-random-characters", development["jwt_secret_key"]} <= values
    for value in values:
        with pytest.raises(SettingsError) as refused:
            load_settings(environ=production(TASKAPI_JWT_SECRET_KEY=value))
        message = str(refused.value)
        assert message.startswith("TASKAPI_JWT_SECRET_KEY: production refuses"), value
        assert message.endswith(f"generate one with {GENERATE_SECRET}")


COMMITTED_TEST_SECRET = PROJECT_ROOT / "tests/data/committed-secret.env.example"


def committed_test_secret() -> str:
    """The random-looking value tests/data commits: only the committed-value rule refuses it."""
    (line,) = [
        line
        for line in COMMITTED_TEST_SECRET.read_text().splitlines()
        if line.startswith("TASKAPI_JWT_SECRET_KEY=")
    ]
    return line.split("=", 1)[1]


def test_production_refuses_a_random_looking_value_because_it_is_committed():
    value = committed_test_secret()
    assert not any(marker in value.lower() for marker in PLACEHOLDER_MARKERS)
    assert random_share(value, known=CONTEXT_WORDS) >= MIN_RANDOM_SHARE  # random to zxcvbn
    variant = value[:10] + ("x" if value[10] != "x" else "y") + value[11:]
    for secret in (value, variant):
        with pytest.raises(SettingsError) as refused:
            load_settings(environ=production(TASKAPI_JWT_SECRET_KEY=secret))
        assert str(refused.value).startswith(
            "TASKAPI_JWT_SECRET_KEY: production refuses a secret that appears in a file of "
            "the repository"
        )


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
    assert lines == [
        "taskapi: configuration error: DATABASE_URL: production needs it set (e.g. postgresql://...)"
    ]
