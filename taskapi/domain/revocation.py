"""Revoked token ids (jti), kept until the token would have expired anyway.

In Redis (shared by every process) when REDIS_URL is set, else in this process. A Redis failure
raises RedisUnavailable; the request gate then fails closed (503) unless
TASKAPI_REVOCATION_FAIL_OPEN is set.
"""

from __future__ import annotations

import time
from typing import Protocol

from taskapi.infra.redis_pool import RedisPool
from taskapi.infra.redis_script import Fragment, Part

PREFIX = b"taskapi:revoked:"
# Sets `revoked` for the fragments after it (a revoked caller's rate limit falls back to its
# address; its cache lookup is skipped). Reply slot: 1 revoked, 0 not.
FRAGMENT = Fragment(
    "revoked",
    keys=1,
    args=0,
    slots=1,
    lua="revoked = redis.call('EXISTS', KEYS[$K])\nout[$S] = revoked",
)


def revocation_part(jti: str) -> Part:
    return Part(FRAGMENT, [PREFIX + jti.encode()], [])


def read_revoked(values: list[object]) -> bool:
    return bool(int(values[0]))  # type: ignore[call-overload]


class RevocationStore(Protocol):
    async def revoke(self, jti: str, expires_at: int) -> None: ...

    async def is_revoked(self, jti: str) -> bool: ...


class MemoryRevocations:
    """One process's revocations (the embedded default)."""

    def __init__(self) -> None:
        self._until: dict[str, int] = {}

    async def revoke(self, jti: str, expires_at: int) -> None:
        now = int(time.time())
        if expires_at > now:
            self._until[jti] = expires_at
        if len(self._until) > 10_000:  # forget the ones that expired on their own
            self._until = {k: v for k, v in self._until.items() if v > now}

    async def is_revoked(self, jti: str) -> bool:
        until = self._until.get(jti)
        return until is not None and until > time.time()

    def clear(self) -> None:
        """Forget every revocation (what a fresh process knows)."""
        self._until.clear()


class RedisRevocations:
    """Revocations in Redis: one key per jti with a TTL of the token's remaining lifetime."""

    def __init__(self, pool: RedisPool) -> None:
        self.pool = pool

    async def revoke(self, jti: str, expires_at: int) -> None:
        ttl = expires_at - int(time.time())
        if ttl > 0:
            key = PREFIX + jti.encode()
            await self.pool.guarded("revocation", lambda: self.pool.client.set(key, b"1", ex=ttl))

    async def is_revoked(self, jti: str) -> bool:
        key = PREFIX + jti.encode()
        found = await self.pool.guarded("revocation", lambda: self.pool.client.exists(key))
        return bool(found)
