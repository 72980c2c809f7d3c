"""The arq worker: the job functions, Redis, and the same database code as the app."""

from __future__ import annotations

from typing import Any

from arq.connections import RedisSettings

from taskapi.domain.cache import ResponseCache
from taskapi.domain.effects import TaskEffects
from taskapi.domain.jobs import JOB_FUNCTIONS, JobResources, deserialize_job, serialize_job
from taskapi.infra.db import Database
from taskapi.infra.logs import configure_logging
from taskapi.infra.mail import Mailer
from taskapi.infra.redis_pool import RedisPool
from taskapi.settings import Settings, SettingsError

HEALTH_CHECK_KEY = "taskapi:worker:health-check"


def build_worker_settings(settings: Settings) -> type:
    """arq's settings class for these Settings; the worker needs REDIS_URL."""
    if not settings.redis_url:
        raise SettingsError("REDIS_URL: the worker needs it set (e.g. redis://127.0.0.1:6379/0)")

    async def on_startup(ctx: dict[str, Any]) -> None:
        configure_logging(settings.log_level, settings.log_format)
        database = Database(settings)
        await database.connect()
        pool = RedisPool(
            settings.redis_url, settings.redis_timeout_ms, settings.redis_retry_after_ms
        )
        await pool.open()
        cache = None
        if settings.cache_enabled:
            cache = ResponseCache(settings, pool)
            await cache.open()
        effects = TaskEffects(cache, None)  # a job's own writes queue nothing
        ctx["taskapi"] = JobResources(settings, database, effects, Mailer(settings))
        ctx["taskapi_redis"] = pool

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        resources: JobResources | None = ctx.get("taskapi")
        if resources is not None:
            await resources.db.dispose()
        pool: RedisPool | None = ctx.get("taskapi_redis")
        if pool is not None:
            await pool.close()

    attributes = {
        "__doc__": "`arq worker.WorkerSettings`: taskapi's background jobs.",
        "functions": list(JOB_FUNCTIONS),
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
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
