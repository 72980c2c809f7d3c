# Types for the part of aiocache 0.12 that taskapi uses: aiocache ships none (no py.typed, no
# stubs package). tests/test_stubs.py checks them against the installed library (stubtest).
from collections.abc import Callable
from typing import Any

from aiocache.serializers import BaseSerializer
from redis.asyncio import ConnectionPool

class BaseCache:
    def __init__(
        self,
        serializer: BaseSerializer | None = None,
        plugins: list[Any] | None = None,
        namespace: str | None = None,
        key_builder: Callable[..., str] | None = None,
        timeout: float | None = 5,
        ttl: float | None = None,
    ) -> None: ...
    async def get(
        self,
        key: str,
        default: Any = None,
        loads_fn: Callable[[Any], Any] | None = None,
        namespace: str | None = None,
    ) -> Any: ...
    async def set(
        self,
        key: str,
        value: Any,
        ttl: float | None = ...,
        dumps_fn: Callable[[Any], Any] | None = None,
        namespace: str | None = None,
    ) -> bool: ...
    async def clear(self, namespace: str | None = None) -> bool: ...

class SimpleMemoryCache(BaseCache):
    def __init__(self, serializer: BaseSerializer | None = None, **kwargs: Any) -> None: ...

class RedisCache(BaseCache):
    def __init__(
        self,
        serializer: BaseSerializer | None = None,
        *,
        namespace: str | None = None,
        timeout: float | None = 5,
        connection_pool_class: Callable[..., ConnectionPool] | None = None,
    ) -> None: ...
