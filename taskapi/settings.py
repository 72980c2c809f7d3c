"""One Settings object, read once at start-up from config/<env>.toml and the environment."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "config"
ENVIRONMENTS = ("development", "testing", "production")
MIN_SECRET_LENGTH = 32

# Environment variables read for a setting, in order of precedence; the default for a field
# not listed here is TASKAPI_<FIELD NAME IN CAPITALS>.
_ENV_NAMES: dict[str, tuple[str, ...]] = {
    "database_url": ("TASKAPI_DATABASE_URL", "DATABASE_URL"),
    "redis_url": ("TASKAPI_REDIS_URL", "REDIS_URL"),
}
SMTP_SCHEMES = ("smtp://", "smtps://")


class SettingsError(ValueError):
    """The configuration is unusable; the message is one line meant for an operator."""


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Everything the app, the CLI and the worker need to know about their environment."""

    env: str = "development"
    database_url: str = ""
    jwt_secret_key: str = ""
    access_token_expires: int = 3600
    refresh_token_expires: int = 604800
    max_content_length: int = 1024 * 1024
    db_pool_size: int = 5
    db_max_overflow: int = 5
    db_echo: bool = False
    # A pooled PostgreSQL connection idle longer than this is pinged before use (0: always).
    db_ping_after_idle_seconds: float = 5.0
    sqlite_busy_timeout_ms: int = 5000
    argon2_time_cost: int = 2
    argon2_memory_cost_kib: int = 19456
    argon2_parallelism: int = 1
    log_level: str = "INFO"
    log_format: str = "text"
    # Proxies: hops of X-Forwarded-* to believe (nginx in front: 1), or proxy addresses.
    proxy_hops: int = 0
    # Shared state (Redis). Empty redis_url: in-process backends (one process only).
    redis_url: str = ""
    redis_timeout_ms: int = 500
    redis_retry_after_ms: int = 1000
    revocation_fail_open: bool = False
    ratelimit_enabled: bool = True
    ratelimit_default: str = "200 per day;50 per hour"
    ratelimit_login: str = "5 per minute"
    # failed logins per username, from any address, before that name is refused for a while
    ratelimit_login_failures: str = "10 per 15 minutes"
    ratelimit_fail_open: bool = True
    trusted_proxies: str = ""
    cache_enabled: bool = True
    cache_list_ttl: int = 60
    cache_detail_ttl: int = 300
    # How long a process may reuse a user's role (and existence) before asking the database.
    user_cache_seconds: float = 5.0
    # Background jobs (arq with Redis; in process without it) and their mail.
    smtp_url: str = ""
    smtp_timeout_seconds: int = 10
    mail_from: str = "taskapi <noreply@localhost>"
    job_max_tries: int = 5
    job_timeout_seconds: int = 60
    job_keep_result_seconds: int = 3600
    job_completion_wait_seconds: int = 30
    job_retry_base_seconds: int = 2
    worker_health_check_seconds: int = 60

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def replace(self, **changes: Any) -> Settings:
        """A copy with some values changed, normalised and validated like the original."""
        return _finish(dataclasses.replace(self, **changes), explicit=set(changes))


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the Settings for TASKAPI_ENV from config/<env>.toml, the environment and overrides."""
    environ = os.environ if environ is None else environ
    env = str(overrides.pop("env", None) or environ.get("TASKAPI_ENV") or "development")
    if env not in ENVIRONMENTS:
        raise SettingsError(f"TASKAPI_ENV must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")
    values: dict[str, Any] = {"env": env}
    values.update(_read_toml(CONFIG_DIR / f"{env}.toml"))
    explicit: set[str] = set()
    for field in dataclasses.fields(Settings):
        if field.name == "env":
            continue
        for name in _ENV_NAMES.get(field.name, (f"TASKAPI_{field.name.upper()}",)):
            if environ.get(name):
                values[field.name] = _coerce(field.name, field.type, environ[name])
                explicit.add(field.name)
                break
    values.update(overrides)
    explicit.update(overrides)
    unknown = set(values) - {f.name for f in dataclasses.fields(Settings)}
    if unknown:
        raise SettingsError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    return _finish(Settings(**values), explicit)


def _finish(settings: Settings, explicit: set[str]) -> Settings:
    settings = dataclasses.replace(settings, database_url=normalise_database_url(settings))
    if settings.is_production:
        _refuse_unsafe_production(settings, explicit)
    if settings.max_content_length <= 0:
        raise SettingsError("TASKAPI_MAX_CONTENT_LENGTH must be a positive number of bytes")
    if settings.redis_url and not settings.redis_url.startswith(
        ("redis://", "rediss://", "unix://")
    ):
        raise SettingsError("REDIS_URL must start with redis://, rediss:// or unix://")
    if settings.log_format not in ("text", "json"):
        raise SettingsError("TASKAPI_LOG_FORMAT must be text or json")
    if settings.proxy_hops < 0:
        raise SettingsError("TASKAPI_PROXY_HOPS must be 0 or more")
    if settings.smtp_url and not settings.smtp_url.startswith(SMTP_SCHEMES):
        raise SettingsError("TASKAPI_SMTP_URL must start with smtp:// or smtps://")
    return settings


def _refuse_unsafe_production(settings: Settings, explicit: set[str]) -> None:
    if "database_url" not in explicit or not settings.database_url:
        raise SettingsError("production needs DATABASE_URL to be set (e.g. postgresql://...)")
    secret = settings.jwt_secret_key
    weak = {_read_toml(CONFIG_DIR / f"{e}.toml").get("jwt_secret_key") for e in ENVIRONMENTS}
    if not secret or secret in weak or len(secret) < MIN_SECRET_LENGTH:
        raise SettingsError(
            "production needs TASKAPI_JWT_SECRET_KEY: a random secret of at least "
            f"{MIN_SECRET_LENGTH} characters, not a development value "
            "(python -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )


def normalise_database_url(settings: Settings) -> str:
    """Pick the async driver for a URL and anchor a relative SQLite path at the project root."""
    url = settings.database_url
    for sync_prefix, async_prefix in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(sync_prefix):
            url = async_prefix + url[len(sync_prefix) :]
    prefix = "sqlite+aiosqlite:///"
    if url.startswith(prefix):
        path = url[len(prefix) :].split("?", 1)[0]
        if path and path != ":memory:" and not path.startswith("/"):
            url = prefix + str(PROJECT_ROOT / path) + url[len(prefix) + len(path) :]
    return url


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    with path.open("rb") as handle:
        return tomllib.load(handle)


def _coerce(name: str, kind: Any, raw: str) -> Any:
    kind = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
    except ValueError:
        raise SettingsError(f"{name}: {raw!r} is not a valid {kind}") from None
    return raw
