"""Jobs in Redis for the arq worker, on the process's one Redis pool; their encoding is JSON, so
nothing is ever unpickled from Redis."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import orjson
from arq.connections import ArqRedis
from arq.constants import default_queue_name, expires_extra_ms, job_key_prefix
from arq.jobs import Job, JobStatus
from arq.jobs import serialize_job as serialize_arq_job
from redis.asyncio.client import Pipeline

from taskapi.infra.redis.pool import RedisPool
from taskapi.infra.stores import JobRequest, JobView

log = logging.getLogger(__name__)


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseException):  # a failed job's result: its kind, never its text
        return {"error": type(value).__name__}
    raise TypeError(f"cannot serialise {type(value).__name__}")


def serialize_job(value: Any) -> bytes:
    """arq's job and result encoding."""
    return orjson.dumps(value, default=_json_default)


deserialize_job = orjson.loads


# workaround: arq enqueue_job WATCHes then writes in 3 round trips (pinned by tests/test_library_defects.py::test_arq_enqueue_job_takes_three_round_trips)
def queue_job(pipe: Pipeline, job: JobRequest) -> str:
    """Add the job's two writes to a MULTI, as arq's `enqueue_job` writes them (its WATCH
    guards caller-chosen ids; ours are fresh uuid4s); the job's id."""
    job_id = uuid.uuid4().hex
    now_ms = int(time.time() * 1000)
    kwargs = {"requested_by": job.requested_by, "request_id": job.request_id}
    payload = serialize_arq_job(
        job.function, (job.task_id,), kwargs, None, now_ms, serializer=serialize_job
    )
    pipe.psetex(job_key_prefix + job_id, expires_extra_ms, payload)
    pipe.zadd(default_queue_name, {job_id: now_ms})
    return job_id


class ArqQueue:
    def __init__(self, pool: RedisPool) -> None:
        self.pool = pool
        self._arq: ArqRedis | None = None

    def _redis(self) -> ArqRedis:
        if self._arq is None:
            self._arq = ArqRedis(
                pool_or_conn=self.pool.client.connection_pool,
                job_serializer=serialize_job,
                job_deserializer=deserialize_job,
            )
        return self._arq

    async def enqueue(self, job: JobRequest) -> str:
        """One MULTI/EXEC: the job and its place in the queue."""
        client = self.pool.client

        async def write() -> str:
            async with client.pipeline(transaction=True) as pipe:
                job_id = queue_job(pipe, job)
                await pipe.execute()
            return job_id

        return await self.pool.guarded("job queue", write)

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
