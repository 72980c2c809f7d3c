"""The arq worker's connection to Redis: each call waits out an outage (retrying with a bounded
backoff) instead of raising, so the worker neither exits when Redis goes away nor gives up when
it starts before Redis does; one line is logged when Redis goes and one when it answers again."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from arq.connections import ArqRedis, RedisSettings
from redis.asyncio import ConnectionPool
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from taskapi.infra.incidents import Incident
from taskapi.infra.redis.sentinel import SentinelAddress, primary_pool

log = logging.getLogger(__name__)

T = TypeVar("T")
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 2.0
# what a Redis that is gone raises: redis-py's own errors, and the socket's while it connects
OUTAGE_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, OSError)
# set while a call waits out an outage: a call made inside it (a connect inside a command) tries
# once and leaves the waiting to it, so that each try starts again from the top (with Sentinel:
# asks where the primary is now, instead of retrying the address of the one that is gone)
_waiting = contextvars.ContextVar("taskapi_redis_waiting", default=False)


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
        """Retry for as long as `main_loop` (the task running the worker) has not ended; until
        this is called, the task of the first call that waits out an outage stands for it."""
        self._main_loop = main_loop

    def _stopping(self) -> bool:
        return self._main_loop is not None and self._main_loop.done()

    async def call_with_retry(
        self, do: Callable[[], Awaitable[T]], fail: Callable[[RedisError], Any]
    ) -> T:
        if _waiting.get():  # the call this one is part of waits out the outage
            try:
                return await do()
            except self._supported_errors as error:
                await fail(error)
                raise
        token = _waiting.set(True)
        try:
            return await self._wait_out(do, fail)
        finally:
            _waiting.reset(token)

    async def _wait_out(
        self, do: Callable[[], Awaitable[T]], fail: Callable[[RedisError], Any]
    ) -> T:
        if self._main_loop is None:
            # the worker's first call (arq's log_redis_info) runs in its main task before
            # on_startup names it: stopped then, its close() must not retry for ever
            self._main_loop = asyncio.current_task()
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


def outage_proof_redis_settings(dsn: str) -> tuple[RedisSettings, WaitOutOutage]:
    """arq's RedisSettings for `dsn` (what `arq --check` connects with) whose every call waits
    out an outage; and its Retry, which the worker's own client shares, for the worker's
    start-up to tell it which task runs the worker."""
    retry = WaitOutOutage()
    settings = RedisSettings.from_dsn(dsn)
    settings.retry = retry
    settings.retry_on_error = list(OUTAGE_ERRORS)
    return settings, retry


# workaround: redis-py raises WatchError from the command that meets a lost connection while watching, which arq's job start does not catch (pinned by tests/test_library_defects.py::test_redis_py_raises_watch_error_from_the_command_that_met_the_loss)
class _WatchLossTolerantPipeline(Pipeline):
    """A connection lost while WATCHing voids the transaction: its EXEC raises WatchError, which
    arq's job start handles (the job is tried at its next poll), rather than the command that
    met the loss, which arq does not handle (the worker would exit). That command is run again
    on a new connection meanwhile, once Redis (or the primary Sentinel names) answers."""

    _watch_lost = False

    async def _disconnect_reset_raise(self, conn: Any, error: Exception) -> None:
        if self.watching and isinstance(error, OUTAGE_ERRORS):
            await conn.disconnect()
            self._watch_lost = True
            return
        await super()._disconnect_reset_raise(conn, error)  # type: ignore[no-untyped-call]  # unannotated in redis-py

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        if self._watch_lost:
            await self.reset()
            raise WatchError("the connection was lost while watching: the transaction did not run")
        return await super().execute(raise_on_error)

    async def reset(self) -> None:
        self._watch_lost = False
        await super().reset()  # type: ignore[no-untyped-call]  # unannotated in redis-py


class _WorkerArqRedis(ArqRedis):
    """arq's client whose pipelines survive a connection lost while watching."""

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return _WatchLossTolerantPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )


# workaround: arq Worker exits on a Redis connection error and create_pool gives up after conn_retries (pinned by tests/test_library_defects.py::test_arq_worker_exits_when_redis_goes_away)
def outage_proof_pool(
    settings: RedisSettings, dsn: str, retry: WaitOutOutage, **arq_options: Any
) -> ArqRedis:
    """The worker's arq client of `dsn` (connecting within `settings`' conn_timeout), every
    call waiting out an outage with `retry`. `arq_options`: ArqRedis' own (its serializers)."""
    pool = ConnectionPool.from_url(
        dsn,
        socket_connect_timeout=settings.conn_timeout,
        retry=retry,
        retry_on_error=list(OUTAGE_ERRORS),
    )
    return _WorkerArqRedis(pool_or_conn=pool, **arq_options)


# workaround: arq's sentinel mode passes neither a Retry nor timeouts to redis-py (pinned by tests/test_library_defects.py::test_arq_sentinel_mode_drops_retry_and_timeouts)
def outage_proof_sentinel_pool(
    address: SentinelAddress, retry: WaitOutOutage, timeout_seconds: float, **arq_options: Any
) -> tuple[RedisSettings, ArqRedis]:
    """The worker's arq client of the primary that Sentinel names, every call waiting out an
    outage (a failover included) with `retry`; and arq's RedisSettings of the same primary,
    for `arq --check`. `arq_options`: ArqRedis' own (its job serializers)."""
    pool = primary_pool(address, timeout_seconds, retry=retry, retry_on_error=list(OUTAGE_ERRORS))
    client = _WorkerArqRedis(pool_or_conn=pool, **arq_options)
    settings = dataclasses.replace(
        RedisSettings.from_dsn(address.url),
        host=list(address.sentinels),
        sentinel=True,
        sentinel_master=address.master,
    )
    return settings, client
