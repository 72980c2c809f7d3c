"""Per-caller response caching of task reads (aiocache), invalidated by versioned keys.

Keys carry the caller's scope (`u<id>` or `admin`), the request's origin and full query string,
and a version read first: `v:t:<task>` for a task's detail, `v:o:<owner>` for an owner's lists,
`v:all` for the admin's lists. Every write bumps the versions it could affect, so every process
stops using the old entries at once; nothing is ever scanned or cleared (aiocache's `clear()` on
Redis is FLUSHDB). A reader that raced a write stores under the old version, which no one reads
again. When Redis fails, reads fall through to the database and writes log (once per incident).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

import orjson
from aiocache import RedisCache, SimpleMemoryCache
from aiocache.base import BaseCache
from aiocache.serializers import BaseSerializer
from quart import Response, g, request

from taskapi.auth.guard import CACHED_ATTRIBUTE, Viewer
from taskapi.errors import APIError
from taskapi.ratelimit import (
    GCRA_STEP_LUA,
    GcraResult,
    RateStep,
    RedisGcra,
    gcra_args,
    gcra_rejection,
)
from taskapi.redis_pool import RedisPool, RedisUnavailable
from taskapi.revocation import PREFIX as REVOKED_PREFIX
from taskapi.revocation import RevocationStore
from taskapi.settings import Settings

T = TypeVar("T")
NAMESPACE = "taskapi:cache"
SKIPPED_HEADERS = {"content-length", "x-cache"}


class BytesSerializer(BaseSerializer):
    """Values are stored as the bytes they are; nothing is ever unpickled from Redis."""

    DEFAULT_ENCODING = None

    def dumps(self, value: Any) -> Any:
        return value

    def loads(self, value: Any) -> Any:
        return value


def _scope(viewer: Viewer) -> str:
    return "admin" if viewer.is_admin else f"u{viewer.id}"


# One request's rate-limit step (when the limiter left it to us: n may be 0), revocation check
# and cache read, in one round trip. KEYS: n limit keys, the revocation key, the version key
# (the entry's key is built here from ARGV, so: standalone Redis only). ARGV: the GCRA step's,
# then the entry key's prefix and suffix around the version. Reply: the step's rejection, or
# {1, revoked, seps..., version, entry}.
LOOKUP_LUA = (
    GCRA_STEP_LUA
    + """
local out = {1, redis.call('EXISTS', KEYS[n + 1])}
for i = 1, n do out[#out + 1] = seps[i] end
if out[2] == 1 then return out end
local version = redis.call('GET', KEYS[n + 2]) or '0'
out[#out + 1] = version
out[#out + 1] = redis.call('GET', ARGV[2*n + 2] .. version .. ARGV[2*n + 3])
return out
"""
)


@dataclasses.dataclass(frozen=True, slots=True)
class CacheLookup:
    """`revoked` is None when Redis could not say; `key` None when nothing may be cached;
    `rate` the outcome of a rate-limit step run with the lookup (None: not run, or no answer)."""

    revoked: bool | None
    key: str | None = None
    hit: Response | None = None
    rate: GcraResult | None = None


def _response_from(raw: bytes | None) -> Response | None:
    if raw is None:
        return None
    head, _, body = raw.partition(b"\n")
    status, headers = orjson.loads(head)
    response = Response(body, status=status, headers=headers)
    response.headers["X-Cache"] = "HIT"
    return response


class ResponseCache:
    """Cached GET responses of /api/tasks, shared through Redis or kept in this process."""

    def __init__(self, settings: Settings, pool: RedisPool | None) -> None:
        self.pool = pool
        self.ttl = {"list": settings.cache_list_ttl, "detail": settings.cache_detail_ttl}
        self._backend: BaseCache | None = None
        self._lookup_script: Any = None

    async def open(self) -> None:
        """Create the aiocache object in the serving loop (it cannot move between loops)."""
        if self.pool is None:
            self._backend = SimpleMemoryCache(
                serializer=BytesSerializer(), namespace=NAMESPACE, timeout=None
            )
        else:
            client = self.pool.client
            self._backend = RedisCache(
                serializer=BytesSerializer(),
                namespace=NAMESPACE,
                timeout=None,
                # the app's one pool, not a second one of aiocache's own
                connection_pool_class=lambda **_: client.connection_pool,
            )

    @property
    def backend(self) -> BaseCache:
        if self._backend is None:
            raise RuntimeError("the cache is not open (before_serving has not run)")
        return self._backend

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        if self.pool is None:
            return await call()
        return await self.pool.guarded("cache", call)

    def _key_parts(self, kind: str, viewer: Viewer, task_id: int | None) -> tuple[str, str, str]:
        """(entry key before the version, after it, the version's key) for this request."""
        origin = f"{request.scheme}://{request.host}"
        query = request.query_string.decode("latin-1")
        if kind == "detail":
            version_key = f"v:t:{task_id}"
        else:
            version_key = "v:all" if viewer.is_admin else f"v:o:{viewer.id}"
        return f"{kind}:{task_id or ''}:{_scope(viewer)}:", f":{origin}:{query}", version_key

    async def lookup(
        self,
        kind: str,
        viewer: Viewer,
        task_id: int | None,
        jti: str,
        revocations: RevocationStore,
        step: RateStep | None = None,
    ) -> CacheLookup:
        """The token's revocation and this request's cache entry (and the rate-limit `step`
        the limiter deferred, if any), in one Redis round trip."""
        prefix, suffix, version_key = self._key_parts(kind, viewer, task_id)
        if self.pool is None:
            if await revocations.is_revoked(jti):
                return CacheLookup(True)
            (version,) = await self.backend.multi_get([version_key])
            key = f"{prefix}{int(version or 0)}{suffix}"
            return CacheLookup(False, key, _response_from(await self.backend.get(key)))
        if self._lookup_script is None:
            self._lookup_script = self.pool.client.register_script(LOOKUP_LUA)
        script = self._lookup_script
        limits = step.limits if step is not None else ()
        keys: list[str | bytes] = RedisGcra.redis_keys(step.keys) if step is not None else []
        keys += [REVOKED_PREFIX + jti.encode(), self.backend.build_key(version_key)]
        args = [*gcra_args(limits), self.backend.build_key(prefix), suffix]
        try:
            result = await self.pool.guarded("cache", lambda: script(keys=keys, args=args))
        except RedisUnavailable:
            return CacheLookup(None)
        rejection = gcra_rejection(result)
        if rejection is not None:
            return CacheLookup(None, rate=rejection)
        n = len(limits)
        rate = GcraResult(True, 0, [float(v) for v in result[2 : 2 + n]]) if n else None
        if int(result[1]) == 1:
            return CacheLookup(True, rate=rate)
        version, entry = result[2 + n], result[3 + n] if len(result) > 3 + n else None
        key = f"{prefix}{version.decode()}{suffix}"
        return CacheLookup(False, key, _response_from(entry), rate)

    async def put(self, key: str, kind: str, response: Response) -> None:
        headers = {k: v for k, v in response.headers.items() if k.lower() not in SKIPPED_HEADERS}
        body = await response.get_data()
        raw = orjson.dumps([response.status_code, headers]) + b"\n" + body
        try:
            await self._call(lambda: self.backend.set(key, raw, ttl=self.ttl[kind]))
        except RedisUnavailable:
            return

    @staticmethod
    def _versions(task_id: int, owner_id: int) -> list[str]:
        """The versions a write to this task changes: its detail, its owner's and the admin's
        lists."""
        return [f"v:t:{task_id}", f"v:o:{owner_id}", "v:all"]

    def version_names(self, task_id: int, owner_id: int) -> list[str]:
        """Those versions' Redis keys, for a caller that bumps them in its own round trip."""
        return [self.backend.build_key(key) for key in self._versions(task_id, owner_id)]

    async def invalidate(self, task_id: int, owner_id: int) -> None:
        """After a committed write: every viewer's copy of the task and of the lists it is in."""
        keys = self._versions(task_id, owner_id)
        try:
            if self.pool is None:
                for key in keys:
                    await self.backend.increment(key, 1)
            else:
                names = self.version_names(task_id, owner_id)

                async def bump() -> None:
                    async with self.pool.client.pipeline(transaction=False) as pipe:  # type: ignore[union-attr]
                        for name in names:
                            pipe.incr(name)
                        await pipe.execute()

                await self._call(bump)
        except RedisUnavailable:
            return


def cached(
    kind: str, cache_of: Callable[[], ResponseCache | None]
) -> Callable[[Callable[..., Awaitable[Response]]], Callable[..., Awaitable[Response]]]:
    """Serve the view from the caller's cache entry when there is one (`X-Cache: HIT`).

    The lookup itself is made by the auth guard, together with the revocation check (one
    round trip); this decorator answers from it, or runs the view and stores its answer.
    """

    def decorator(view: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Response:
            cache = cache_of()
            lookup: CacheLookup | None = g.get("_cache_lookup")
            if cache is None or lookup is None:
                return await view(*args, **kwargs)
            if lookup.hit is not None:
                return lookup.hit
            try:
                response = await view(*args, **kwargs)
            except APIError as error:  # errors are never cached
                error.headers["X-Cache"] = "MISS"
                raise
            if lookup.key is not None and response.status_code == 200:
                await cache.put(lookup.key, kind, response)
            response.headers["X-Cache"] = "MISS"
            return response

        setattr(wrapper, CACHED_ATTRIBUTE, kind)
        return wrapper

    return decorator
