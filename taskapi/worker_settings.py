"""The arq worker: the job functions, on the parts `taskapi.wiring` builds (Redis, the same
database code and write path as the app)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from arq import Retry
from arq.worker import Function, func

from taskapi.domain.gauges import sample_gauges
from taskapi.domain.jobs import JOB_FUNCTIONS, Job
from taskapi.domain.parts import Parts
from taskapi.infra import metrics
from taskapi.infra.db import is_unavailable
from taskapi.infra.logs import configure_logging, request_id_var
from taskapi.infra.metrics_server import MetricsListener
from taskapi.infra.redis.queue import deserialize_job, serialize_job
from taskapi.infra.redis.worker_redis import (
    outage_proof_pool,
    outage_proof_redis_settings,
    outage_proof_sentinel_pool,
)
from taskapi.infra.stores import RetryLater
from taskapi.settings import Settings, SettingsError
from taskapi.wiring import build_parts, job_resources, sentinel_address

HEALTH_CHECK_KEY = "taskapi:worker:health-check"
PARTS = "taskapi_parts"
METRICS = "taskapi_metrics"  # the worker's metrics listener, when it has one
log = logging.getLogger(__name__)
# arq's own loggers, for `logging.config.dictConfig`: no handler of their own, their records
# handed to the root logger, where the entry point puts taskapi's handler (one format for every
# line). The `arq` command takes it as `--custom-log-dict worker.LOG_CONFIG`; without it, arq
# gives its loggers a text handler of its own.
ARQ_LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"arq": {"level": "INFO", "handlers": [], "propagate": True}},
}


def _for_arq(job: Job) -> Function:
    """A job function as arq runs it: our RetryLater becomes arq's Retry, and so does a
    database that cannot be reached (with backoff, logged once per outage, within max tries);
    each run is counted and timed (`taskapi_jobs_*`, `taskapi_job_duration_seconds`). A job
    that fails is logged with the id of the request that queued it (arq's own line after it,
    with the traceback, names the job but not the request)."""
    name = job.__name__

    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        request_id_var.set(kwargs.get("request_id") or "-")
        metrics.job_started(name)
        started = time.perf_counter()
        outcome = ""  # none when arq cancels the run (its job timeout, or a shutdown)
        try:
            result = await job(ctx, *args, **kwargs)
            outcome = "succeeded"
            return result
        except RetryLater as retry:
            outcome = "retried"
            raise Retry(defer=retry.delay) from retry
        except Exception as error:
            outcome = "failed"
            parts: Parts = ctx[PARTS]
            attempt = int(ctx.get("job_try", 1))
            if not is_unavailable(error) or attempt >= parts.settings.job_max_tries:
                log.error(
                    "job %s:%s failed (try %s): %s: %s",
                    ctx.get("job_id"),
                    name,
                    attempt,
                    type(error).__name__,
                    error,
                )
                raise
            parts.db.unavailable(error)
            outcome = "retried"
            raise Retry(defer=parts.settings.job_retry_base_seconds * 2 ** (attempt - 1)) from error
        finally:
            if outcome:
                metrics.job_ended(name, outcome, time.perf_counter() - started)

    return func(run, name=name)


def build_worker_settings(settings: Settings) -> type:
    """arq's settings class for these Settings; the worker needs REDIS_URL."""
    if not settings.redis_url:
        raise SettingsError("REDIS_URL: the worker needs it set (e.g. redis://127.0.0.1:6379/0)")

    # logging first: a worker started before Redis logs the outage before it starts up
    configure_logging(settings.log_level, settings.log_format)
    # the worker's own client of Redis (arq's create_pool is left out; its RedisSettings serve
    # `arq --check`)
    redis_settings, redis_retry = outage_proof_redis_settings(settings.redis_url)
    serializers = {"job_serializer": serialize_job, "job_deserializer": deserialize_job}
    sentinel = sentinel_address(settings)
    if sentinel is None:
        redis_pool = outage_proof_pool(
            redis_settings, settings.redis_url, redis_retry, **serializers
        )
    else:  # the primary Sentinel names, instead of REDIS_URL's host
        redis_settings, redis_pool = outage_proof_sentinel_pool(
            sentinel, redis_retry, settings.redis_timeout_ms / 1000, **serializers
        )

    async def on_startup(ctx: dict[str, Any]) -> None:
        redis_retry.serve_while(asyncio.current_task())  # arq runs this in its main loop's task
        parts = build_parts(settings, "worker")
        await parts.open()
        ctx[PARTS] = parts
        ctx["taskapi"] = job_resources(parts)
        if settings.worker_metrics_port is not None:
            listener = ctx[METRICS] = MetricsListener(
                settings.worker_metrics_host,
                settings.worker_metrics_port,
                settings.metrics_allow,
                lambda: sample_gauges(parts.db),
            )
            try:
                await listener.start()
            except OSError as error:
                address = f"{settings.worker_metrics_host}:{settings.worker_metrics_port}"
                raise SystemExit(
                    f"taskapi worker: TASKAPI_WORKER_METRICS_PORT: cannot listen on {address}: "
                    f"{os.strerror(error.errno) if error.errno else error}"
                ) from None

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        listener: MetricsListener | None = ctx.get(METRICS)
        if listener is not None:
            await listener.stop()
        parts: Parts | None = ctx.get(PARTS)
        if parts is not None:
            await parts.close()

    attributes = {
        "__doc__": "`arq worker.WorkerSettings`: taskapi's background jobs.",
        "functions": [_for_arq(job) for job in JOB_FUNCTIONS],
        "redis_settings": redis_settings,
        "redis_pool": redis_pool,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "max_tries": settings.job_max_tries,
        "job_timeout": settings.job_timeout_seconds,
        "keep_result": settings.job_keep_result_seconds,
        "job_completion_wait": settings.job_completion_wait_seconds,
        "health_check_key": HEALTH_CHECK_KEY,
        "health_check_interval": settings.worker_health_check_seconds,
        "job_serializer": serialize_job,
        "job_deserializer": deserialize_job,
    }
    return type("WorkerSettings", (), attributes)
