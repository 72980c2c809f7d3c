"""Clients of the current primary that Redis Sentinel names: each new connection asks the
sentinels where the primary is, and a connection to a primary that has gone (or been demoted)
fails and is replaced by one to the primary they name then. REDIS_URL's username, password and
database apply to the primary's connections; its host and port are not used."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import ConnectionPool
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool


@dataclasses.dataclass(frozen=True, slots=True)
class SentinelAddress:
    """Where the primary of `master` is found: the sentinels, and REDIS_URL's credentials."""

    sentinels: Sequence[tuple[str, int]]
    master: str
    url: str

    def credentials(self) -> dict[str, Any]:
        """REDIS_URL's username, password, database and TLS, as redis-py's arguments."""
        parts = urlsplit(self.url)
        query_db = parse_qs(parts.query).get("db")
        path = parts.path.lstrip("/")
        database = int(query_db[0]) if query_db else int(path) if path else 0
        return {
            "username": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
            "db": database,
            "ssl": parts.scheme == "rediss",
        }


def primary_pool(address: SentinelAddress, timeout: float | None, **options: Any) -> ConnectionPool:
    """A connection pool whose connections go to the current primary; `timeout` bounds each
    call to the sentinels as well as to the primary."""
    credentials = address.credentials()
    ssl = credentials.pop("ssl")
    # redis-py leaves Sentinel's and SentinelConnectionPool's __init__ unannotated
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        address.sentinels,
        sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout, "ssl": ssl},
    )
    return SentinelConnectionPool(  # type: ignore[no-untyped-call]
        address.master,
        sentinel,
        is_master=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        ssl=ssl,
        **credentials,
        **options,
    )
