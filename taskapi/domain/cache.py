"""Per-caller response caching of task reads (aiocache), invalidated by versioned keys.

Keys carry the caller's scope (`u<id>` or `admin`), the request's origin and full query string,
and a version read first: `v:t:<task>` for a task's detail, `v:o:<owner>` for an owner's lists,
`v:all` for the admin's lists. A write bumps the versions it could affect, so every process
stops using the old entries at once; nothing is scanned or cleared (aiocache's `clear()` on
Redis is FLUSHDB). When Redis fails, reads fall through to the database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from aiocache import RedisCache, SimpleMemoryCache
from aiocache.base import BaseCache
from aiocache.serializers import BaseSerializer

from taskapi.domain.viewer import Viewer
from taskapi.infra.redis_pool import RedisPool, RedisUnavailable
from taskapi.infra.redis_script import Fragment, Part
from taskapi.settings import Settings

T = TypeVar("T")
NAMESPACE = "taskapi:cache"
SKIPPED_HEADERS = {"content-length", "x-cache"}
# KEYS: the version's key. ARGV: the entry key's prefix and suffix around the version.
# Skipped for a revoked token. Reply slots: the version, the entry (nil when absent).
FRAGMENT = Fragment(
    "cache",
    keys=1,
    args=2,
    slots=2,
    lua="""if revoked ~= 1 then
  local version = redis.call('GET', KEYS[$K]) or '0'
  out[$S] = version
  out[$S + 1] = redis.call('GET', ARGV[$A] .. version .. ARGV[$A + 1])
end""",
)


class BytesSerializer(BaseSerializer):
    """Values are stored as the bytes they are; nothing is ever unpickled from Redis."""

    DEFAULT_ENCODING = None

    def dumps(self, value: Any) -> Any:
        return value

    def loads(self, value: Any) -> Any:
        return value


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """A stored answer."""

    status: int
    headers: dict[str, str]
    body: bytes

    def dumps(self) -> bytes:
        return orjson.dumps([self.status, self.headers]) + b"\n" + self.body

    @classmethod
    def loads(cls, raw: bytes) -> Entry:
        head, _, body = raw.partition(b"\n")
        status, headers = orjson.loads(head)
        return cls(status, headers, body)


@dataclasses.dataclass(frozen=True, slots=True)
class Slot:
    """Where one request's answer is cached: the entry key around the version, and the
    version's key."""

    kind: str
    prefix: str
    suffix: str
    version_key: str

    def key(self, version: int | str) -> str:
        return f"{self.prefix}{version}{self.suffix}"


def slot_for(kind: str, viewer: Viewer, task_id: int | None, origin: str, query: str) -> Slot:
    """The cache slot of a `list` or `detail` read by this viewer."""
    scope = "admin" if viewer.is_admin else f"u{viewer.id}"
    if kind == "detail":
        version_key = f"v:t:{task_id}"
    else:
        version_key = "v:all" if viewer.is_admin else f"v:o:{viewer.id}"
    return Slot(kind, f"{kind}:{task_id or ''}:{scope}:", f":{origin}:{query}", version_key)


@dataclasses.dataclass(frozen=True, slots=True)
class Found:
    """A lookup's result: `key` to store the answer under (None: do not store), `entry` the
    cached answer if there is one."""

    key: str | None
    entry: Entry | None = None


# workaround: aiocache clear() on a namespaced RedisCache is FLUSHDB (pinned by tests/test_library_defects.py::test_aiocache_clear_is_flushdb)
class ResponseCache:
    """Cached GET answers of /api/tasks, shared through Redis or kept in this process."""

    def __init__(self, settings: Settings, pool: RedisPool | None) -> None:
        self.pool = pool
        self.ttl = {"list": settings.cache_list_ttl, "detail": settings.cache_detail_ttl}
        self._backend: BaseCache | None = None

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

    async def clear(self) -> None:
        """Forget every entry kept in this process; with Redis, nothing (its entries are
        shared, and aiocache's clear() there is FLUSHDB)."""
        if self.pool is None and self._backend is not None:
            await self._backend.clear(namespace=NAMESPACE)  # each entry, and its timer

    @property
    def backend(self) -> BaseCache:
        if self._backend is None:
            raise RuntimeError("the cache is not open (before_serving has not run)")
        return self._backend

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        if self.pool is None:
            return await call()
        return await self.pool.guarded("cache", call)

    def part(self, slot: Slot) -> Part:
        """This lookup as a fragment of a composed script (Redis only)."""
        keys = [self.backend.build_key(slot.version_key)]
        return Part(FRAGMENT, keys, [self.backend.build_key(slot.prefix), slot.suffix])

    @staticmethod
    def read(slot: Slot, values: list[Any]) -> Found:
        """The fragment's slice of the reply."""
        version, raw = values
        return Found(slot.key(version.decode()), Entry.loads(raw) if raw is not None else None)

    async def lookup(self, slot: Slot) -> Found:
        """The lookup on its own (in process; or Redis without a composed script)."""
        try:
            (version,) = await self._call(lambda: self.backend.multi_get([slot.version_key]))
            key = slot.key(int(version or 0))
            raw = await self._call(lambda: self.backend.get(key))
        except RedisUnavailable:
            return Found(None)
        return Found(key, Entry.loads(raw) if raw is not None else None)

    async def put(self, key: str, kind: str, entry: Entry) -> None:
        raw = entry.dumps()
        try:
            await self._call(lambda: self.backend.set(key, raw, ttl=self.ttl[kind]))
        except RedisUnavailable:
            return

    @staticmethod
    def versions(task_id: int, owner_id: int) -> list[str]:
        """The versions a write to this task changes: its detail, its owner's and the admin's
        lists."""
        return [f"v:t:{task_id}", f"v:o:{owner_id}", "v:all"]

    @staticmethod
    def account_versions(owner_id: int, task_ids: list[int]) -> list[str]:
        """The versions a deleted account's answers live under: its lists (whoever gets its id
        next), its tasks' details and the admin's lists."""
        return [f"v:o:{owner_id}", "v:all", *(f"v:t:{task_id}" for task_id in task_ids)]

    def version_names(self, names: list[str]) -> list[str]:
        """Those versions' Redis keys, for a caller that bumps them in its own round trip."""
        return [self.backend.build_key(name) for name in names]

    async def bump(self, names: list[str]) -> None:
        """Make every cached copy under these versions unreachable (after a committed write)."""
        try:
            if self.pool is None:
                for name in names:
                    await self.backend.increment(name, 1)
                return
            keys = self.version_names(names)

            async def bump() -> None:
                async with self.pool.client.pipeline(transaction=False) as pipe:  # type: ignore[union-attr]
                    for key in keys:
                        pipe.incr(key)
                    await pipe.execute()

            await self._call(bump)
        except RedisUnavailable:
            return
