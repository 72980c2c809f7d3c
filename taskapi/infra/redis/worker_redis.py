"""The arq worker's connection to Redis: each call waits out an outage (retrying with a bounded
backoff) instead of raising, so the worker neither exits when Redis goes away nor gives up when
it starts before Redis does; one line is logged when Redis goes and one when it answers again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from arq.connections import RedisSettings
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from taskapi.infra.incidents import Incident

log = logging.getLogger(__name__)

T = TypeVar("T")
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 2.0
# what a Redis that is gone raises: redis-py's own errors, and the socket's while it connects
OUTAGE_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, OSError)


class WaitOutOutage(Retry):
    """redis-py's Retry, forever while the worker runs (backoff doubling up to the cap); once the
    worker's main loop has ended (it is stopping), a call raises at its first failure."""

    def __init__(self) -> None:
        backoff = ExponentialBackoff(cap=BACKOFF_CAP_SECONDS, base=BACKOFF_BASE_SECONDS)
        # redis-py types these as RedisError subclasses, yet adds OSError kinds itself (socket
        # timeouts): a connect refused by a stopped Redis is a raw OSError until it gives up
        super().__init__(backoff, retries=-1, supported_errors=OUTAGE_ERRORS)  # type: ignore[arg-type]
        meanwhile = f"the worker waits for it (retrying every {BACKOFF_CAP_SECONDS:g} s at most)"
        self.incident = Incident(log, "redis", meanwhile)
        self._main_loop: asyncio.Task[Any] | None = None

    def __deepcopy__(self, _memo: dict[int, Any]) -> WaitOutOutage:
        # each redis-py client and connection deep-copies its Retry: share this one, so that an
        # outage is one incident however many connections see it
        return self

    def serve_while(self, main_loop: asyncio.Task[Any] | None) -> None:
        """Retry for as long as `main_loop` (the task running the worker) has not ended."""
        self._main_loop = main_loop

    def _stopping(self) -> bool:
        return self._main_loop is not None and self._main_loop.done()

    async def call_with_retry(
        self, do: Callable[[], Awaitable[T]], fail: Callable[[RedisError], Any]
    ) -> T:
        failures = 0
        while True:
            try:
                result = await do()
            except self._supported_errors as error:
                failures += 1
                await fail(error)  # redis-py drops the connection (or raises what is not ours)
                self.incident.failed(error)
                if self._stopping():
                    raise
                await asyncio.sleep(self._backoff.compute(failures))
            else:
                self.incident.recovered()
                return result


# workaround: arq Worker exits on a Redis connection error and create_pool gives up after conn_retries (pinned by tests/test_library_defects.py::test_arq_worker_exits_when_redis_goes_away)
def outage_proof_redis_settings(dsn: str) -> tuple[RedisSettings, WaitOutOutage]:
    """arq's RedisSettings for `dsn` whose every call waits out an outage; and its Retry, for
    the worker's start-up to tell it which task runs the worker."""
    retry = WaitOutOutage()
    settings = RedisSettings.from_dsn(dsn)
    settings.retry = retry
    settings.retry_on_error = list(OUTAGE_ERRORS)
    return settings, retry
