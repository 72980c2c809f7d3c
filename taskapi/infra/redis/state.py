"""Revocations, cached answers, a write's hand-over and the health probe, in Redis."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from typing import Literal

from aiocache import RedisCache
from aiocache.serializers import BaseSerializer

from taskapi.infra.redis.pool import RedisPool
from taskapi.infra.stores import Entry

log = logging.getLogger(__name__)
# The copy of the revocation record: one sorted set without TTL (so no volatile-* policy
# evicts it), member the jti, score its expiry. It holds LOADED (score +inf) only once a
# reload has put the whole record in; without it (Redis restarted empty, flushed, the key
# evicted) the gate's script says "unknown".
REVOKED_KEY = b"taskapi:revoked"
LOADED = b"<loaded>"
RELOAD_LOCK = b"taskapi:revoked:reload"
RELOAD_LOCK_SECONDS = 10  # renewed by each chunk loaded
# KEYS: the lock. ARGV: this process's token, the lock's lifetime: 1 when the lock is (now)
# this process's, so that a reload cut off by a failure can resume at once.
_CLAIM_RELOAD_LUA = """if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
  or redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0"""
CACHE_NAMESPACE = "taskapi:cache"


def cache_key(name: str) -> str:
    """A cache key or version in Redis (as aiocache's RedisCache names them)."""
    return f"{CACHE_NAMESPACE}:{name}"


class RedisRevocations:
    """The copy of the revocation record in Redis (`REVOKED_KEY`)."""

    def __init__(self, pool: RedisPool) -> None:
        self.pool = pool
        self._token = secrets.token_hex(8).encode()  # this process's, for the reload lock

    async def revoke(self, revoked: Mapping[str, int], expired_before: int) -> None:
        client = self.pool.client

        async def write() -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.zadd(REVOKED_KEY, dict(revoked))
                pipe.zremrangebyscore(REVOKED_KEY, "-inf", f"({expired_before}")
                await pipe.execute()

        await self.pool.guarded("revocation", write)

    async def is_whole(self) -> bool:
        client = self.pool.client
        score = await self.pool.guarded("revocation", lambda: client.zscore(REVOKED_KEY, LOADED))
        return score is not None

    async def claim_reload(self) -> bool:
        script = self.pool.client.register_script(_CLAIM_RELOAD_LUA)
        keys, args = [RELOAD_LOCK], [self._token, str(RELOAD_LOCK_SECONDS).encode()]
        claimed = await self.pool.guarded("revocation", lambda: script(keys=keys, args=args))
        return bool(claimed)

    async def load(self, revoked: Mapping[str, int]) -> None:
        client = self.pool.client

        async def write() -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.zadd(REVOKED_KEY, dict(revoked))
                pipe.expire(RELOAD_LOCK, RELOAD_LOCK_SECONDS)
                await pipe.execute()

        await self.pool.guarded("revocation", write)

    async def mark_loaded(self) -> None:
        client = self.pool.client

        async def write() -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.zadd(REVOKED_KEY, {LOADED: float("inf")})
                pipe.delete(RELOAD_LOCK)
                await pipe.execute()

        await self.pool.guarded("revocation", write)


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
