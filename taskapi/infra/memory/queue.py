"""Jobs on this process's own loop (the embedded default): started as they are queued, retried
as arq would, their status kept in memory for `keep_result` seconds."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from taskapi.infra import metrics
from taskapi.infra.stores import JobRequest, JobView, RetryLater

log = logging.getLogger(__name__)
# a job function: (context, task id, requested by, request id) → its result
JobFunction = Callable[[dict[str, Any], int, int, str | None], Awaitable[Any]]


@dataclasses.dataclass(slots=True)
class _Record:
    job: JobRequest
    status: str = "queued"
    result: Any = None
    finished_at: float | None = None


class InProcessQueue:
    """Runs `functions[job.function]` with `context` in its arq-like `ctx`."""

    def __init__(
        self,
        functions: Mapping[str, JobFunction],
        context: Mapping[str, Any],
        *,
        max_tries: int,
        timeout_seconds: float,
        keep_result_seconds: float,
    ) -> None:
        self.functions = functions
        self.context = context
        self.max_tries = max_tries
        self.timeout = timeout_seconds
        self.keep_result = keep_result_seconds
        self._records: dict[str, _Record] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def clear(self) -> None:
        """Let the jobs still running finish, then forget every job (what a fresh process
        knows)."""
        await self.close()
        self._records.clear()

    async def close(self) -> None:
        """Let the jobs still running finish (at shutdown)."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def hand_over(self, jobs: Sequence[JobRequest]) -> None:
        """Start each job on this loop, unless a job of its id is known."""
        self._forget_old()
        for job in jobs:
            if job.function not in self.functions:
                raise ValueError(f"no job function {job.function!r}")
            if job.job_id in self._records:
                continue
            self._records[job.job_id] = _Record(job)
            running = asyncio.get_running_loop().create_task(self._run(job.job_id))
            self._running.add(running)
            running.add_done_callback(self._running.discard)

    async def view(self, job_id: str) -> JobView:
        record = self._records.get(job_id)
        if record is None:
            return JobView(job_id, "not_found")
        return JobView(job_id, record.status, record.result, record.job.requested_by)

    async def _run(self, job_id: str) -> None:
        record = self._records[job_id]
        record.status = "in_progress"
        job = record.job
        function = self.functions[job.function]
        for attempt in range(1, self.max_tries + 1):
            ctx = {**self.context, "job_id": job_id, "job_try": attempt}
            metrics.job_started(job.function)
            started = time.perf_counter()
            try:
                result = await asyncio.wait_for(
                    function(ctx, job.task_id, job.requested_by, job.request_id), self.timeout
                )
            except RetryLater as retry:
                ended = "failed" if attempt == self.max_tries else "retried"
                metrics.job_ended(job.function, ended, time.perf_counter() - started)
                await asyncio.sleep(retry.delay)
                continue
            except Exception as error:
                metrics.job_ended(job.function, "failed", time.perf_counter() - started)
                log.exception("job %s (%s) failed", job_id, job.function)
                record.result = {"error": type(error).__name__}
                break
            metrics.job_ended(job.function, "succeeded", time.perf_counter() - started)
            record.status, record.result = "complete", result
            break
        else:
            log.error("job %s (%s) gave up after %s tries", job_id, job.function, attempt)
            record.result = {"error": "RetryLater"}
        if record.status != "complete":
            record.status = "failed"
        record.finished_at = time.monotonic()

    def _forget_old(self) -> None:
        horizon = time.monotonic() - self.keep_result
        old = [k for k, r in self._records.items() if r.finished_at and r.finished_at < horizon]
        for key in old:
            del self._records[key]
