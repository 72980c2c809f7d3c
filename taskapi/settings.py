"""One Settings object, read once at start-up from the package's config/<env>.toml and the
environment.

pydantic-settings reads the file and the variables and validates every value; a bad one is a
`SettingsError` whose one line names the variable to fix, so no entry point starts serving on it.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings import SettingsError as _SourceError
from pydantic_settings.sources.utils import parse_env_vars

from taskapi.secret_policy import GENERATE_SECRET, secret_weakness

# The defaults of each environment, shipped in the package (so an installed copy has them).
CONFIG_DIR = Path(__file__).resolve().parent / "config"
# The directory that holds the package: the checkout when run from one (then it has the
# pyproject.toml), else the installation's site-packages.
PROJECT_ROOT = CONFIG_DIR.parent.parent
IN_CHECKOUT = (PROJECT_ROOT / "pyproject.toml").is_file()
ENVIRONMENTS = ("development", "testing", "production")
ENV_PREFIX = "TASKAPI_"

# Variables that no longer exist: setting one stops start-up with what to do instead.
REMOVED = {
    "TASKAPI_PROXY_HOPS": "removed; list your proxies' addresses in TASKAPI_TRUSTED_PROXIES "
    "instead (e.g. 127.0.0.1 for nginx on the same host)",
    "TASKAPI_RATELIMIT_LOGIN_FAILURES": "removed (a per-username limit let anyone lock an "
    "account out); set TASKAPI_RATELIMIT_LOGIN_FAILURES_PER_ADDRESS and "
    "TASKAPI_RATELIMIT_LOGIN_FAILURES_PER_ACCOUNT instead",
}
DATABASE_SCHEMES = ("sqlite", "sqlite+aiosqlite", "postgres", "postgresql", "postgresql+asyncpg")
REDIS_SCHEMES = ("redis", "rediss", "unix")
SMTP_SCHEMES = ("smtp", "smtps")
LIMIT_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_LIMIT = re.compile(
    r"^\s*(\d{1,9})\s*(?:per|/)\s*(\d{1,9})?\s*(second|minute|hour|day)s?\s*$", re.I
)
# Values never quoted back in an error (they may hold passwords).
_UNQUOTED = {"jwt_secret_key", "database_url", "redis_url", "smtp_url"}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SettingsError(ValueError):
    """The configuration is unusable; the message is one line meant for an operator."""


class RateLimitSpec(NamedTuple):
    """One parsed limit: `count` requests per `period_seconds`."""

    count: int
    period_seconds: int


def parse_rate_limits(text: str) -> tuple[RateLimitSpec, ...]:
    """'200 per day;50 per hour' → limits; also '5/minute' and '10 per 30 seconds'."""
    limits = []
    for part in filter(None, (p.strip() for p in re.split(r"[;,]", text))):
        match = _LIMIT.match(part)
        if not match or int(match.group(1)) < 1 or int(match.group(2) or 1) < 1:
            raise ValueError(f"not a rate limit: {part!r} (expected e.g. '50 per hour')")
        multiple, unit = int(match.group(2) or 1), LIMIT_UNITS[match.group(3).lower()]
        limits.append(RateLimitSpec(int(match.group(1)), multiple * unit))
    return tuple(limits)


def parse_networks(text: str) -> tuple[Network, ...]:
    """'127.0.0.1, 10.0.0.0/8' → networks (a bare address is a network of one)."""
    networks = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(
                f"not an address or network: {part!r} (expected e.g. 127.0.0.1,10.0.0.0/8)"
            ) from None
    return tuple(networks)


def _limits_from(value: Any) -> Any:
    return parse_rate_limits(value) if isinstance(value, str) else value


def _networks_from(value: Any) -> Any:
    if isinstance(value, str):
        return parse_networks(value)
    if isinstance(value, Iterable):  # networks or strings, e.g. from model_dump()
        return parse_networks(",".join(str(v) for v in value))
    return value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(value: Any) -> Any:
    if isinstance(value, str) and value.upper() in LOG_LEVELS:
        return value.upper()
    raise ValueError(f"must be one of {', '.join(LOG_LEVELS)} (got {value})")


RateLimits = Annotated[tuple[RateLimitSpec, ...], NoDecode, BeforeValidator(_limits_from)]
Networks = Annotated[tuple[Network, ...], NoDecode, BeforeValidator(_networks_from)]
LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_log_level)
]


class Settings(BaseSettings):
    """Everything the app, the CLI and the worker need to know about their environment."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        validate_by_name=True,
        allow_inf_nan=False,
    )

    env: Literal["development", "testing", "production"] = "development"
    database_url: str = Field(
        "", validation_alias=AliasChoices("TASKAPI_DATABASE_URL", "DATABASE_URL")
    )
    jwt_secret_key: str = ""
    access_token_expires: int = Field(3600, ge=1)
    refresh_token_expires: int = Field(604800, ge=1)
    max_content_length: int = Field(1024 * 1024, ge=1)
    db_pool_size: int = Field(5, ge=1)
    db_max_overflow: int = Field(5, ge=0)
    db_echo: bool = False
    # A pooled PostgreSQL connection idle longer than this is pinged before use (0: always).
    db_ping_after_idle_seconds: float = Field(5.0, ge=0)
    sqlite_busy_timeout_ms: int = Field(5000, ge=0)
    argon2_time_cost: int = Field(2, ge=1)
    argon2_memory_cost_kib: int = Field(19456, ge=8)
    argon2_parallelism: int = Field(1, ge=1)
    log_level: LogLevel = "INFO"
    log_format: Literal["text", "json"] = "text"
    # Shared state (Redis). Empty redis_url: in-process backends (one process only).
    redis_url: str = Field("", validation_alias=AliasChoices("TASKAPI_REDIS_URL", "REDIS_URL"))
    redis_timeout_ms: int = Field(500, ge=1)
    redis_retry_after_ms: int = Field(1000, ge=0)
    revocation_fail_open: bool = False
    ratelimit_enabled: bool = True
    ratelimit_default: RateLimits = parse_rate_limits("200 per day;50 per hour")
    ratelimit_login: RateLimits = parse_rate_limits("5 per minute")
    # Failed logins of one account from one address, before that pair is refused for a while.
    ratelimit_login_failures_per_address: RateLimits = parse_rate_limits("5 per 15 minutes")
    # Failed logins of one account from all the addresses that have not logged in to it within
    # ratelimit_login_known_address_days; then only those that have may try. "N per day" lets
    # at most 2N guesses through in any 24 hours (N at once, then one every 24 h / N).
    ratelimit_login_failures_per_account: RateLimits = parse_rate_limits("20 per day")
    ratelimit_login_known_address_days: int = Field(30, ge=1, le=3650)
    # Rate-limit keys of IPv6 clients: their network of this many leading bits.
    ratelimit_ipv6_prefix: int = Field(64, ge=1, le=128)
    ratelimit_fail_open: bool = True
    # Peers whose X-Forwarded-For/-Proto/-Host and X-Request-ID count (taskapi/http/proxies.py).
    trusted_proxies: Networks = ()
    cache_enabled: bool = True
    cache_list_ttl: int = Field(60, ge=1)
    cache_detail_ttl: int = Field(300, ge=1)
    # How long a process may reuse a user's role (and existence) before asking the database.
    user_cache_seconds: float = Field(5.0, ge=0)
    # Background jobs (arq with Redis; in process without it) and their mail.
    smtp_url: str = ""
    smtp_timeout_seconds: int = Field(10, ge=1)
    mail_from: str = "taskapi <noreply@localhost>"
    job_max_tries: int = Field(5, ge=1)
    job_timeout_seconds: int = Field(60, ge=1)
    job_keep_result_seconds: int = Field(3600, ge=0)
    job_completion_wait_seconds: int = Field(30, ge=0)
    job_retry_base_seconds: int = Field(2, ge=0)
    worker_health_check_seconds: int = Field(60, ge=1)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def replace(self, **changes: Any) -> Settings:
        """A copy with some values changed, normalised and validated like the original."""
        return _validated({**self.model_dump(), **changes}, {})

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """`Settings(...)` takes only its arguments: `load_settings` layers file and environment."""
        return (init_settings,)

    @field_validator("ratelimit_login_failures_per_address", "ratelimit_login_failures_per_account")
    @classmethod
    def _one_limit(cls, limits: tuple[RateLimitSpec, ...]) -> tuple[RateLimitSpec, ...]:
        if len(limits) != 1:
            raise ValueError("must be exactly one limit, e.g. '5 per 15 minutes'")
        return limits

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, url: str) -> str:
        _require_scheme(url, DATABASE_SCHEMES, "only sqlite:// and postgresql:// URLs are accepted")
        return normalise_database_url(url)

    @field_validator("redis_url")
    @classmethod
    def _known_redis(cls, url: str) -> str:
        _require_scheme(url, REDIS_SCHEMES, "must start with redis://, rediss:// or unix://")
        return url

    @field_validator("smtp_url")
    @classmethod
    def _known_smtp(cls, url: str) -> str:
        _require_scheme(url, SMTP_SCHEMES, "must start with smtp:// or smtps://")
        return url

    @model_validator(mode="after")
    def _safe_in_production(self) -> Settings:
        if not self.is_production:
            return self
        if not self.database_url:
            raise ValueError("DATABASE_URL: production needs it set (e.g. postgresql://...)")
        weakness = secret_weakness(self.jwt_secret_key)
        if weakness is not None:
            raise ValueError(
                f"TASKAPI_JWT_SECRET_KEY: production refuses a secret that {weakness}; "
                f"generate one with {GENERATE_SECRET}"
            )
        return self


def _require_scheme(url: str, schemes: tuple[str, ...], problem: str) -> None:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if url and scheme not in schemes:
        shown = f"{scheme}://" if scheme else "no scheme"
        raise ValueError(f"{problem} (got {shown})")


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the Settings for TASKAPI_ENV from taskapi/config/<env>.toml, the environment and
    overrides (each overriding the one before); `environ={}` ignores the process environment."""
    environ = os.environ if environ is None else environ
    for name, advice in REMOVED.items():
        field = name.removeprefix(ENV_PREFIX).lower()
        if environ.get(name) or field in overrides:
            raise SettingsError(f"{name}: {advice}")
    env = str(overrides.pop("env", None) or environ.get("TASKAPI_ENV") or "development")
    if env not in ENVIRONMENTS:
        raise SettingsError(f"TASKAPI_ENV: must be one of {', '.join(ENVIRONMENTS)} (got {env!r})")
    toml_path = CONFIG_DIR / f"{env}.toml"
    if not toml_path.is_file():
        raise SettingsError(f"TASKAPI_ENV: {toml_path} is missing (reinstall taskapi)")
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    try:
        from_file = _by_field_name(TomlConfigSettingsSource(Settings, toml_file=toml_path)())
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{toml_path.relative_to(PROJECT_ROOT)}: {error}") from None
    try:
        from_environ = _by_field_name(_EnvironSource(Settings, environ)())
    except _SourceError as error:
        raise SettingsError(str(error).splitlines()[0]) from None
    for field, value in from_file.items():
        values[field] = value
        names[field] = f"{field} in {toml_path.relative_to(PROJECT_ROOT)}"
    for field, value in from_environ.items():
        values[field] = value
        names[field] = _variable_set(field, environ)
    values.update(overrides)
    values["env"] = env
    return _validated(values, names)


# workaround: pydantic-settings reads only os.environ, private _load_env_vars hook (pinned by tests/test_library_defects.py::test_env_settings_source_reads_only_os_environ)
class _EnvironSource(EnvSettingsSource):
    """The library's environment source reading a given mapping instead of os.environ (there is
    no public parameter for that; DotEnvSettingsSource overrides the same method)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


@functools.cache
def _aliases() -> dict[str, str]:
    """Every alias a source may return → the field it belongs to."""
    result = {name: name for name in Settings.model_fields}
    for name, info in Settings.model_fields.items():
        if isinstance(info.validation_alias, AliasChoices):
            for choice in info.validation_alias.choices:
                result[str(choice)] = name
    return result


def _by_field_name(values: Mapping[str, Any]) -> dict[str, Any]:
    aliases = _aliases()
    return {aliases.get(key, key): value for key, value in values.items()}


def _variable(field: str) -> str:
    """The environment variable an operator sets for a field."""
    info = Settings.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, AliasChoices):
        return str(info.validation_alias.choices[1])  # the unprefixed name, e.g. DATABASE_URL
    return ENV_PREFIX + field.upper()


def _variable_set(field: str, environ: Mapping[str, str]) -> str:
    info = Settings.model_fields[field]
    if isinstance(info.validation_alias, AliasChoices):
        for choice in info.validation_alias.choices:
            if environ.get(str(choice)):
                return str(choice)
    return _variable(field)


def _validated(values: Mapping[str, Any], names: Mapping[str, str]) -> Settings:
    try:
        return Settings.model_validate(values)
    except ValidationError as error:
        raise SettingsError(_one_line(error, names)) from None


_MESSAGES = {
    "greater_than_equal": "must be {ge} or more",
    "less_than_equal": "must be {le} or less",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_parsing": "must be true or false",
    "literal_error": "must be {expected}",
    "extra_forbidden": "is not a setting",
}


def _one_line(error: ValidationError, names: Mapping[str, str]) -> str:
    """The first problem of a validation error as `VARIABLE: what is wrong (got value)`."""
    problems = error.errors(include_url=False)
    first = problems[0]
    context = {
        key: int(value) if isinstance(value, float) and value.is_integer() else value
        for key, value in (first.get("ctx") or {}).items()
    }
    if first["type"] == "value_error":
        message = str(context.get("error", first["msg"]))
    else:
        message = _MESSAGES.get(first["type"], first["msg"]).format(**context)
    if first["loc"]:
        field = str(first["loc"][0])
        if first["type"] != "value_error" and field not in _UNQUOTED:
            message += f" (got {_shown(first['input'])})"
        message = f"{names.get(field) or _variable(field)}: {message}"
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    return message


def _shown(value: Any) -> str:
    """A value as an operator typed it; quoted only where quotes show something (spaces)."""
    if isinstance(value, str) and value and value.strip() == value:
        return value
    return repr(value)


def sqlite_root() -> Path:
    """Where a relative SQLite path starts: the checkout when run from one, else the current
    directory (an installed package: e.g. ./instance/taskapi.db where it is started)."""
    return PROJECT_ROOT if IN_CHECKOUT else Path.cwd()


def normalise_database_url(url: str | Settings) -> str:
    """Pick the async driver for a URL and anchor a relative SQLite path (see sqlite_root)."""
    url = url if isinstance(url, str) else url.database_url
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
            url = prefix + str(sqlite_root() / path) + url[len(prefix) + len(path) :]
    return url
