"""The Settings model: every setting, its type and default, and the checks across fields
(production's database and signing secret). `load_settings` (loader.py) fills it."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from taskapi.secret_policy import GENERATE_SECRET, secret_weakness
from taskapi.settings.values import (
    DATABASE_SCHEMES,
    REDIS_SCHEMES,
    SMTP_SCHEMES,
    LogLevel,
    Networks,
    Nodes,
    RateLimits,
    RateLimitSpec,
    SecretKeys,
    normalise_database_url,
    parse_networks,
    parse_rate_limits,
    require_scheme,
)

ENV_PREFIX = "TASKAPI_"


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
    jwt_secret_key: str = ""  # signs every token, and verifies them
    # Further keys whose tokens are accepted, never used to sign: a key rotation's next key
    # (before the instances sign with it) or its previous one (until its tokens have expired).
    jwt_accepted_keys: SecretKeys = ()
    access_token_expires: int = Field(3600, ge=1)
    refresh_token_expires: int = Field(604800, ge=1)
    max_content_length: int = Field(1024 * 1024, ge=1)
    db_pool_size: int = Field(5, ge=1)
    db_max_overflow: int = Field(5, ge=0)
    db_echo: bool = False
    # A pooled PostgreSQL connection idle longer than this is pinged before use (0: always).
    db_ping_after_idle_seconds: float = Field(5.0, ge=0)
    # DATABASE_URL is a PgBouncer in transaction mode: no prepared statement outlives the
    # statement that made it (taskapi/infra/db.py).
    db_pgbouncer: bool = False
    # The outbox relay's LISTEN connection, straight to PostgreSQL (LISTEN does not work through
    # PgBouncer's transaction mode). Empty: DATABASE_URL's, or only polling with db_pgbouncer.
    db_listen_url: str = ""
    sqlite_busy_timeout_ms: int = Field(5000, ge=0)
    argon2_time_cost: int = Field(2, ge=1)
    argon2_memory_cost_kib: int = Field(19456, ge=8)
    argon2_parallelism: int = Field(1, ge=1)
    log_level: LogLevel = "INFO"
    log_format: Literal["text", "json"] = "text"
    # Shared state (Redis). Empty redis_url: in-process backends (one process only).
    redis_url: str = Field("", validation_alias=AliasChoices("TASKAPI_REDIS_URL", "REDIS_URL"))
    # Redis Sentinel: the sentinels (host:port,...) that name the current primary of the
    # master called redis_sentinel_master; REDIS_URL's password and database still apply, its
    # host and port are not used then.
    redis_sentinels: Nodes = ()
    redis_sentinel_master: str = ""
    redis_timeout_ms: int = Field(500, ge=1)
    redis_retry_after_ms: int = Field(1000, ge=0)
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
    # Conditional writes: PUT/PATCH/DELETE of a task without If-Match answer 428.
    require_if_match: bool = False
    # How long the answer to a POST with an Idempotency-Key is replayed to retries of it.
    idempotency_ttl_seconds: int = Field(86400, ge=1, le=30 * 86400)
    # How long a POST's key stays claimed while its first request runs (retries meanwhile: 409).
    idempotency_in_flight_seconds: int = Field(60, ge=1, le=3600)
    # Requests one process works on at once (the rest wait in arrival order; 0: all at once).
    max_requests_in_flight: int = Field(64, ge=0)
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
    # The outbox's relay: how often it looks without a wake-up, how long sent entries stay, and
    # how old the oldest pending entry may get before /health/ready answers 503.
    outbox_poll_seconds: float = Field(1.0, gt=0, le=60)
    outbox_retention_seconds: int = Field(86400, ge=0)
    outbox_max_lag_seconds: int = Field(300, ge=1)
    # Prometheus metrics: `GET /metrics` on the API's own port (and the per-request counting
    # behind it; false: neither), answered only to peers in metrics_allow (others get 404).
    metrics_enabled: bool = True
    metrics_allow: Networks = parse_networks("127.0.0.0/8,::1/128")
    # The worker's metrics listener (none while the port is unset).
    worker_metrics_port: int | None = Field(None, ge=1, le=65535)
    worker_metrics_host: str = "127.0.0.1"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def is_production(self) -> bool:
        return self.env == "production"

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

    @field_validator("worker_metrics_host")
    @classmethod
    def _an_address(cls, host: str) -> str:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(
                f"must be an IP address to listen on, e.g. 0.0.0.0 (got {host!r})"
            ) from None
        return host

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, url: str) -> str:
        require_scheme(url, DATABASE_SCHEMES, "only sqlite:// and postgresql:// URLs are accepted")
        return normalise_database_url(url)

    @field_validator("db_listen_url")
    @classmethod
    def _known_listen_database(cls, url: str) -> str:
        require_scheme(url, DATABASE_SCHEMES[2:], "only postgresql:// URLs are accepted")
        return normalise_database_url(url)

    @field_validator("redis_url")
    @classmethod
    def _known_redis(cls, url: str) -> str:
        require_scheme(url, REDIS_SCHEMES, "must start with redis://, rediss:// or unix://")
        return url

    @field_validator("smtp_url")
    @classmethod
    def _known_smtp(cls, url: str) -> str:
        require_scheme(url, SMTP_SCHEMES, "must start with smtp:// or smtps://")
        return url

    @property
    def uses_sentinel(self) -> bool:
        return bool(self.redis_sentinels)

    @property
    def listens_for_commits(self) -> bool:
        """Whether a relay can LISTEN: on PostgreSQL, directly (not through PgBouncer)."""
        return not self.is_sqlite and (bool(self.db_listen_url) or not self.db_pgbouncer)

    @model_validator(mode="after")
    def _sentinel_complete(self) -> Settings:
        if bool(self.redis_sentinels) != bool(self.redis_sentinel_master):
            raise ValueError(
                "TASKAPI_REDIS_SENTINELS and TASKAPI_REDIS_SENTINEL_MASTER: set both or neither"
            )
        if self.redis_sentinels and not self.redis_url:
            raise ValueError(
                "TASKAPI_REDIS_SENTINELS: needs REDIS_URL set too (its password and database "
                "apply, e.g. redis://:password@sentinel/0; the primary's address comes from "
                "the sentinels)"
            )
        return self

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
        for number, key in enumerate(self.jwt_accepted_keys, 1):
            weakness = secret_weakness(key)
            if weakness is not None:
                raise ValueError(
                    f"TASKAPI_JWT_ACCEPTED_KEYS: production refuses key {number} (of "
                    f"{len(self.jwt_accepted_keys)}), a secret that {weakness}; generate "
                    f"one with {GENERATE_SECRET}"
                )
        return self
