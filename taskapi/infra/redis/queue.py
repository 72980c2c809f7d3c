"""Jobs in Redis for the arq worker, on the process's one Redis pool; their encoding is JSON, so
nothing is ever unpickled from Redis."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import orjson
from arq.connections import ArqRedis
from arq.constants import default_queue_name, expires_extra_ms, job_key_prefix, result_key_prefix
from arq.jobs import Job, JobStatus
from arq.jobs import serialize_job as serialize_arq_job

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


# KEYS: per job, its job key, its result key, then the queue. ARGV: per job, its id, its
# payload, its score (ms), then the job key's lifetime (ms). Each job is queued as arq's
# `enqueue_job` queues it, unless its job or its result already exists (arq's own duplicate
# rule). Reply: how many were queued.
_HAND_OVER_LUA = """local queued = 0
local n = (#KEYS - 1) / 2
for i = 0, n - 1 do
  local job_key, result_key = KEYS[2*i + 1], KEYS[2*i + 2]
  if redis.call('EXISTS', job_key) == 0 and redis.call('EXISTS', result_key) == 0 then
    redis.call('PSETEX', job_key, ARGV[#ARGV], ARGV[3*i + 2])
    redis.call('ZADD', KEYS[#KEYS], ARGV[3*i + 3], ARGV[3*i + 1])
    queued = queued + 1
  end
end
return queued
"""


# workaround: arq enqueue_job WATCHes then writes in 3 round trips (pinned by tests/test_library_defects.py::test_arq_enqueue_job_takes_three_round_trips)
def hand_over_arguments(jobs: Sequence[JobRequest]) -> tuple[list[str], list[bytes | str | int]]:
    """The KEYS and ARGV of one hand-over of these jobs (one script, one round trip)."""
    now_ms = int(time.time() * 1000)
    keys: list[str] = []
    args: list[bytes | str | int] = []
    for job in jobs:
        kwargs = {"requested_by": job.requested_by, "request_id": job.request_id}
        payload = serialize_arq_job(
            job.function, (job.task_id,), kwargs, None, now_ms, serializer=serialize_job
        )
        keys += [job_key_prefix + job.job_id, result_key_prefix + job.job_id]
        args += [job.job_id, payload, now_ms]
    return [*keys, default_queue_name], [*args, expires_extra_ms]


class ArqQueue:
    def __init__(self, pool: RedisPool) -> None:
        self.pool = pool
        self._arq: ArqRedis | None = None
        self._hand_over: Any = None

    def _redis(self) -> ArqRedis:
        if self._arq is None:
            self._arq = ArqRedis(
                pool_or_conn=self.pool.client.connection_pool,
                job_serializer=serialize_job,
                job_deserializer=deserialize_job,
            )
        return self._arq

    async def hand_over(self, jobs: Sequence[JobRequest]) -> None:
        """One script: each job and its place in the queue, unless arq already has it."""
        if not jobs:
            return
        if self._hand_over is None:
            self._hand_over = self.pool.client.register_script(_HAND_OVER_LUA)
        script = self._hand_over
        keys, args = hand_over_arguments(jobs)
        await self.pool.guarded("job queue", lambda: script(keys=keys, args=args))

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
            # a failed job's result is its error's kind (`{"error": "<type>"}`, never its text)
            result = getattr(info, "result", None)
            return JobView(job_id, "complete" if success else "failed", result, requested_by)
        name = "in_progress" if status == JobStatus.in_progress else "queued"
        return JobView(job_id, name, None, requested_by)
