"""The kinds of value a setting holds and how each is read from text: rate limits, networks,
log levels, URLs and their schemes, and where the package and its defaults are."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

from pydantic import BeforeValidator
from pydantic_settings import NoDecode

# The defaults of each environment, shipped in the package (so an installed copy has them).
CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
# The directory that holds the package: the checkout when run from one (then it has the
# pyproject.toml), else the installation's site-packages.
PROJECT_ROOT = CONFIG_DIR.parent.parent
IN_CHECKOUT = (PROJECT_ROOT / "pyproject.toml").is_file()

DATABASE_SCHEMES = ("sqlite", "sqlite+aiosqlite", "postgres", "postgresql", "postgresql+asyncpg")
REDIS_SCHEMES = ("redis", "rediss", "unix")
SMTP_SCHEMES = ("smtp", "smtps")
LIMIT_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_LIMIT = re.compile(
    r"^\s*(\d{1,9})\s*(?:per|/)\s*(\d{1,9})?\s*(second|minute|hour|day)s?\s*$", re.I
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RateLimitSpec(NamedTuple):
    """One parsed limit: `requests` per `period_seconds` (not `count`: tuple.count is a method)."""

    requests: int
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


def parse_keys(text: str) -> tuple[str, ...]:
    """'key1,key2' → keys, in order (spaces around each are dropped; generated keys hold no
    comma)."""
    return tuple(filter(None, (part.strip() for part in text.split(","))))


def _limits_from(value: object) -> object:
    return parse_rate_limits(value) if isinstance(value, str) else value


def _networks_from(value: object) -> object:
    if isinstance(value, str):
        return parse_networks(value)
    if isinstance(value, Iterable):  # networks or strings, e.g. from model_dump()
        return parse_networks(",".join(str(v) for v in value))
    return value


def _keys_from(value: object) -> object:
    return parse_keys(value) if isinstance(value, str) else value


def _log_level(value: object) -> str:
    if isinstance(value, str) and value.upper() in LOG_LEVELS:
        return value.upper()
    raise ValueError(f"must be one of {', '.join(LOG_LEVELS)} (got {value})")


# Field types: text from a file or a variable is parsed here (NoDecode: not read as JSON).
RateLimits = Annotated[tuple[RateLimitSpec, ...], NoDecode, BeforeValidator(_limits_from)]
Networks = Annotated[tuple[Network, ...], NoDecode, BeforeValidator(_networks_from)]
SecretKeys = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_keys_from)]
LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_log_level)
]


def require_scheme(url: str, schemes: tuple[str, ...], problem: str) -> None:
    """Refuse a non-empty URL whose scheme is not one of `schemes`, saying `problem`."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if url and scheme not in schemes:
        shown = f"{scheme}://" if scheme else "no scheme"
        raise ValueError(f"{problem} (got {shown})")


def sqlite_root() -> Path:
    """Where a relative SQLite path starts: the checkout when run from one, else the current
    directory (an installed package: e.g. ./instance/taskapi.db where it is started)."""
    return PROJECT_ROOT if IN_CHECKOUT else Path.cwd()


def normalise_database_url(url: str) -> str:
    """Pick the async driver for a URL and anchor a relative SQLite path (see sqlite_root)."""
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
