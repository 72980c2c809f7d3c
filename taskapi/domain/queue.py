"""Where jobs go: arq in Redis when REDIS_URL is set, else this process's own loop; `enqueue`
returns a job id, `view` the status the job-status endpoint shows."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from arq import Retry
from arq.connections import ArqRedis
from arq.constants import default_queue_name, expires_extra_ms, job_key_prefix
from arq.jobs import Job, JobStatus
from arq.jobs import serialize_job as serialize_arq_job

from taskapi.domain.cache import ResponseCache
from taskapi.domain.jobs import JOBS_BY_NAME, JobResources, deserialize_job, serialize_job
from taskapi.infra.redis_pool import RedisPool
from taskapi.settings import Settings

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class JobView:
    job_id: str
    status: str
    result: Any = None
    requested_by: int | None = None


class JobQueue(Protocol):
    async def enqueue(
        self,
        function: str,
        task_id: int,
        *,
        requested_by: int,
        request_id: str | None = None,
        bump: Sequence[str] = (),
    ) -> str:
        """Queue a job; its id. `bump`: Redis keys to INCR in the same round trip (a queue in
        Redis only: the cache versions a write invalidates)."""
        ...

    async def view(self, job_id: str) -> JobView: ...

    def shares_redis_with(self, cache: ResponseCache) -> bool: ...

    async def close(self) -> None: ...


class ArqQueue:
    """Jobs in Redis for `arq worker.WorkerSettings`, on the app's one Redis pool."""

    def __init__(self, pool: RedisPool) -> None:
        self.pool = pool
        self._arq: ArqRedis | None = None

    def shares_redis_with(self, cache: ResponseCache) -> bool:
        return cache.pool is self.pool

    async def close(self) -> None:
        """Nothing to do: the Redis pool is the app's."""

    def _redis(self) -> ArqRedis:
        if self._arq is None:
            self._arq = ArqRedis(
                pool_or_conn=self.pool.client.connection_pool,
                job_serializer=serialize_job,
                job_deserializer=deserialize_job,
            )
        return self._arq

    async def enqueue(
        self,
        function: str,
        task_id: int,
        *,
        requested_by: int,
        request_id: str | None = None,
        bump: Sequence[str] = (),
    ) -> str:
        """Write the job as arq's `enqueue_job` does, but in one MULTI/EXEC: arq's WATCH guards
        caller-chosen ids, and ours are fresh uuid4s."""
        # workaround: arq enqueue_job WATCHes then writes in 3 round trips (pinned by tests/test_library_defects.py::test_arq_enqueue_job_takes_three_round_trips)
        job_id = uuid.uuid4().hex
        now_ms = int(time.time() * 1000)
        kwargs = {"requested_by": requested_by, "request_id": request_id}
        payload = serialize_arq_job(
            function, (task_id,), kwargs, None, now_ms, serializer=serialize_job
        )
        client = self.pool.client

        async def write() -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.psetex(job_key_prefix + job_id, expires_extra_ms, payload)
                pipe.zadd(default_queue_name, {job_id: now_ms})
                for key in bump:
                    pipe.incr(key)
                replies = await pipe.execute(raise_on_error=False)
            # a command that fails inside EXEC does not stop the others: only the job's own
            # two decide whether it was queued (a bump's failure costs a stale cache entry)
            for reply in replies[:2]:
                if isinstance(reply, Exception):
                    raise reply
            if any(isinstance(reply, Exception) for reply in replies[2:]):
                log.warning("cache versions not bumped with job %s: %s", job_id, replies[2:])

        await self.pool.guarded("job queue", write)
        return job_id

    async def view(self, job_id: str) -> JobView:
        job = Job(job_id, self._redis(), _deserializer=deserialize_job)

        async def read() -> tuple[JobStatus, Any]:
            status = await job.status()
            info = await job.info() if status != JobStatus.not_found else None
            return status, info

        status, info = await self.pool.guarded("job queue", read)
        if status == JobStatus.not_found or info is None:
            return JobView(job_id, "not_found")
        requested_by = info.kwargs.get("requested_by") if isinstance(info.kwargs, dict) else None
        if status == JobStatus.complete:
            success = bool(getattr(info, "success", False))
            result = getattr(info, "result", None) if success else None
            return JobView(job_id, "complete" if success else "failed", result, requested_by)
        name = "in_progress" if status == JobStatus.in_progress else "queued"
        return JobView(job_id, name, None, requested_by)


@dataclasses.dataclass(slots=True)
class _Record:
    function: str
    requested_by: int
    request_id: str | None = None
    status: str = "queued"
    result: Any = None
    finished_at: float | None = None


class InProcessQueue:
    """The embedded default: the same job functions, run on the app's loop after the response,
    retried as arq would, their status kept in memory for `keep_result` seconds."""

    def __init__(self, settings: Settings, resources: JobResources) -> None:
        self.settings = settings
        self.resources = resources
        self._records: dict[str, _Record] = {}
        self._running: set[asyncio.Task[None]] = set()

    def shares_redis_with(self, cache: ResponseCache) -> bool:
        return False

    async def close(self) -> None:
        """Let the jobs still running finish (at shutdown)."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def enqueue(
        self,
        function: str,
        task_id: int,
        *,
        requested_by: int,
        request_id: str | None = None,
        bump: Sequence[str] = (),
    ) -> str:
        if bump:
            raise ValueError("an in-process queue cannot bump Redis keys")
        job_id = uuid.uuid4().hex
        self._forget_old()
        self._records[job_id] = _Record(function, requested_by, request_id)
        running = asyncio.get_running_loop().create_task(self._run(job_id, task_id))
        self._running.add(running)
        running.add_done_callback(self._running.discard)
        return job_id

    async def view(self, job_id: str) -> JobView:
        record = self._records.get(job_id)
        if record is None:
            return JobView(job_id, "not_found")
        return JobView(job_id, record.status, record.result, record.requested_by)

    async def _run(self, job_id: str, task_id: int) -> None:
        record = self._records[job_id]
        record.status = "in_progress"
        job = JOBS_BY_NAME[record.function]
        for attempt in range(1, self.settings.job_max_tries + 1):
            ctx = {"taskapi": self.resources, "job_id": job_id, "job_try": attempt}
            try:
                result = await asyncio.wait_for(
                    job(ctx, task_id, record.requested_by, record.request_id),
                    self.settings.job_timeout_seconds,
                )
            except Retry as retry:
                await asyncio.sleep((retry.defer_score or 0) / 1000)
                continue
            except Exception:
                log.exception("job %s (%s) failed", job_id, record.function)
                break
            record.status, record.result = "complete", result
            break
        else:
            log.error("job %s (%s) gave up after %s tries", job_id, record.function, attempt)
        if record.status != "complete":
            record.status = "failed"
        record.finished_at = time.monotonic()

    async def clear(self) -> None:
        """Let the jobs still running finish, then forget every job (what a fresh process
        knows)."""
        await self.close()
        self._records.clear()

    def _forget_old(self) -> None:
        horizon = time.monotonic() - self.settings.job_keep_result_seconds
        old = [k for k, r in self._records.items() if r.finished_at and r.finished_at < horizon]
        for key in old:
            del self._records[key]
