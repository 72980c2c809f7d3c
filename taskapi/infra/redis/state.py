"""Revocations, cached answers, a write's hand-over and the health probe, in Redis."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Literal

from aiocache import RedisCache
from aiocache.serializers import BaseSerializer

from taskapi.infra.redis.pool import RedisPool
from taskapi.infra.stores import Entry

log = logging.getLogger(__name__)
REVOKED_PREFIX = b"taskapi:revoked:"
CACHE_NAMESPACE = "taskapi:cache"


def cache_key(name: str) -> str:
    """A cache key or version in Redis (as aiocache's RedisCache names them)."""
    return f"{CACHE_NAMESPACE}:{name}"


class RedisRevocations:
    """One key per revoked jti, with a TTL of the token's remaining lifetime."""

    def __init__(self, pool: RedisPool) -> None:
        self.pool = pool

    async def revoke(self, jti: str, expires_at: int) -> None:
        ttl = expires_at - int(time.time())
        if ttl > 0:
            key = REVOKED_PREFIX + jti.encode()
            await self.pool.guarded("revocation", lambda: self.pool.client.set(key, b"1", ex=ttl))


class _Bytes(BaseSerializer):
    """Values are stored as the bytes they are: nothing is ever unpickled from Redis."""

    DEFAULT_ENCODING = None

    def dumps(self, value: bytes) -> bytes:
        return value

    def loads(self, value: bytes | None) -> bytes | None:  # None: no such key
        return value


# workaround: aiocache clear() on a namespaced RedisCache is FLUSHDB (pinned by tests/test_library_defects.py::test_aiocache_clear_is_flushdb)
class RedisAnswers:
    """Cached answers, written through aiocache on the process's own pool (never cleared:
    versions make old entries unreachable)."""

    def __init__(self, pool: RedisPool) -> None:
        self.pool = pool
        self._cache: RedisCache | None = None

    def _backend(self) -> RedisCache:
        if self._cache is None:  # created in the serving loop (it cannot move between loops)
            client = self.pool.client
            self._cache = RedisCache(
                serializer=_Bytes(),
                namespace=CACHE_NAMESPACE,
                timeout=None,
                connection_pool_class=lambda **_: client.connection_pool,
            )
        return self._cache

    async def put(self, key: str, entry: Entry, ttl: int) -> None:
        raw, backend = entry.dumps(), self._backend()
        await self.pool.guarded("cache", lambda: backend.set(key, raw, ttl=ttl))


class RedisPublisher:
    """A committed write's cache versions, bumped in one round trip (one MULTI/EXEC)."""

    def __init__(self, pool: RedisPool) -> None:
        self.pool = pool

    async def publish(self, versions: Sequence[str]) -> None:
        client = self.pool.client

        async def write() -> None:
            async with client.pipeline(transaction=True) as pipe:
                for name in versions:
                    pipe.incr(cache_key(name))
                await pipe.execute()

        await self.pool.guarded("publish", write)


class RedisHealth:
    def __init__(self, pool: RedisPool) -> None:
        self.pool = pool

    async def check(self) -> Literal["ok", "error", "disabled"]:
        return "ok" if await self.pool.ping() else "error"
