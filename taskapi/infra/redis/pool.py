"""A process's one Redis client pool, and a breaker that turns Redis trouble into quick answers:
after a failure callers skip Redis for `retry_after`, and an incident is logged once, not per call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as redis
from redis.exceptions import RedisError

from taskapi.infra import metrics
from taskapi.infra.redis.sentinel import SentinelAddress, primary_pool
from taskapi.infra.stores import StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


class Breaker:
    """Counts Redis failures as incidents: log once, skip Redis briefly, probe, recover."""

    def __init__(self, retry_after_seconds: float) -> None:
        self.retry_after = retry_after_seconds
        self._open_until = 0.0
        self._incident = False

    def check(self) -> None:
        """Raise StoreUnavailable while the breaker is open."""
        if self._incident and time.monotonic() < self._open_until:
            raise StoreUnavailable("redis unavailable (breaker open)")

    def failed(self, component: str, error: BaseException) -> StoreUnavailable:
        metrics.redis_failed(component)
        if not self._incident:
            self._incident = True
            log.error(
                "redis unavailable (first seen by %s): %s: %s; degrading until it answers again",
                component,
                type(error).__name__,
                error,
            )
        self._open_until = time.monotonic() + self.retry_after
        return StoreUnavailable(str(error))

    def succeeded(self) -> None:
        if self._incident:
            self._incident = False
            metrics.redis_answered()
            log.warning("redis available again; shared state restored")


class RedisPool:
    """One client (and connection pool) per process, opened before serving, closed after: to
    REDIS_URL, or to the primary that `sentinel`'s sentinels name."""

    def __init__(
        self,
        url: str,
        timeout_ms: int,
        retry_after_ms: int,
        sentinel: SentinelAddress | None = None,
    ) -> None:
        self.url = url
        self.sentinel = sentinel
        self.timeout = timeout_ms / 1000
        self.breaker = Breaker(retry_after_ms / 1000)
        self._client: redis.Redis | None = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            raise RuntimeError("Redis is not connected (before_serving has not run)")
        return self._client

    async def open(self) -> None:
        if self._client is None and self.sentinel is not None:
            pool = primary_pool(
                self.sentinel, self.timeout, health_check_interval=30, decode_responses=False
            )
            self._client = redis.Redis.from_pool(pool)
        elif self._client is None:
            self._client = redis.Redis.from_url(
                self.url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                health_check_interval=30,
                decode_responses=False,
            )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def guarded(self, component: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis call through the breaker; StoreUnavailable when it cannot answer."""
        self.breaker.check()
        try:
            result = await call()
        except REDIS_ERRORS as error:
            raise self.breaker.failed(component, error) from error
        self.breaker.succeeded()
        return result

    async def ping(self) -> bool:
        """Whether Redis answers now (outside the breaker: a probe must ask)."""
        try:
            return bool(await self.client.ping())
        except REDIS_ERRORS:
            return False
