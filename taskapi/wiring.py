"""The one place that builds a process's parts from its settings, and the only one that knows
which implementation of each shared-state port it chose: in this process (no REDIS_URL, the
embedded default) or in Redis (REDIS_URL's, or the primary that Redis Sentinel names). The app
factory, the worker and the CLI call `build_parts`.

It also decides which process relays the outbox: the arq workers with Redis; the app itself in
the embedded default (its jobs run on its own loop)."""

from __future__ import annotations

from typing import Any, Literal

from taskapi.domain.accounts import RoleCache
from taskapi.domain.cache import CachePolicy
from taskapi.domain.effects import TaskEffects
from taskapi.domain.jobs import JOBS_BY_NAME, JobResources
from taskapi.domain.limits import login_budgets
from taskapi.domain.parts import Parts
from taskapi.domain.ports import JobQueue, Publisher
from taskapi.domain.relay import Relay
from taskapi.domain.revocations import SYNC_INTERVAL_SECONDS, RevocationRecord
from taskapi.infra import metrics
from taskapi.infra.db import Database
from taskapi.infra.mail import Mailer
from taskapi.infra.memory.gcra import MemoryGcra
from taskapi.infra.memory.idempotency import MemoryIdempotency
from taskapi.infra.memory.login_failures import MemoryLoginFailures
from taskapi.infra.memory.queue import InProcessQueue
from taskapi.infra.memory.state import (
    MemoryAnswers,
    MemoryGatekeeper,
    MemoryHealth,
    MemoryPublisher,
    MemoryRevocations,
)
from taskapi.infra.passwords import PasswordHasher
from taskapi.infra.redis.gate import RedisGatekeeper
from taskapi.infra.redis.idempotency import RedisIdempotency
from taskapi.infra.redis.login_failures import RedisLoginFailures
from taskapi.infra.redis.pool import RedisPool
from taskapi.infra.redis.queue import ArqQueue
from taskapi.infra.redis.sentinel import SentinelAddress
from taskapi.infra.redis.state import RedisAnswers, RedisHealth, RedisPublisher, RedisRevocations
from taskapi.infra.stores import LoginBudgets
from taskapi.settings import Settings

Process = Literal["app", "worker", "cli"]


def build_parts(settings: Settings, process: Process) -> Parts:
    """Every part a process needs; `await parts.open()` before use, `close()` after."""
    metrics.jobs_known(JOBS_BY_NAME)
    if settings.redis_url:
        return _in_redis(settings, relays=process == "worker")
    return _in_process(settings, relays=process == "app")


def _relay(
    settings: Settings, db: Database, queue: JobQueue, publisher: Publisher, *, shared: bool
) -> Relay:
    """The outbox's relay: a worker's polls for other processes' commits, and listens for them
    where it can (not through PgBouncer, unless TASKAPI_DB_LISTEN_URL bypasses it); the
    embedded API's is woken by its own writes only."""
    return Relay(
        db,
        queue,
        publisher,
        poll_seconds=settings.outbox_poll_seconds if shared else None,
        retention_seconds=settings.outbox_retention_seconds,
        listen=shared and settings.listens_for_commits,
    )


def _budgets(settings: Settings) -> LoginBudgets | None:
    if not settings.ratelimit_enabled:
        return None
    return login_budgets(
        settings.ratelimit_login_failures_per_address,
        settings.ratelimit_login_failures_per_account,
        settings.ratelimit_login_known_address_days,
    )


def _common(settings: Settings) -> dict[str, Any]:
    return {
        "settings": settings,
        "db": Database(settings),
        "passwords": PasswordHasher(settings),
        "mailer": Mailer(settings),
        "cache": CachePolicy(settings),
        "roles": RoleCache(settings.user_cache_seconds),
    }


def _in_process(settings: Settings, *, relays: bool) -> Parts:
    common = _common(settings)
    revocations, gcra, answers = MemoryRevocations(), MemoryGcra(), MemoryAnswers()
    idempotency = MemoryIdempotency()
    context: dict[str, JobResources] = {}
    queue = InProcessQueue(
        JOBS_BY_NAME,
        context,
        max_tries=settings.job_max_tries,
        timeout_seconds=settings.job_timeout_seconds,
        keep_result_seconds=settings.job_keep_result_seconds,
    )
    publisher = MemoryPublisher(answers)
    relay = _relay(settings, common["db"], queue, publisher, shared=False) if relays else None
    effects = TaskEffects(common["cache"], publisher, *([relay.wake] if relay else []))
    parts = Parts(
        **common,
        gatekeeper=MemoryGatekeeper(revocations, gcra, idempotency, answers),
        revocations=revocations,
        revocation_record=RevocationRecord(common["db"], revocations, interval=None),
        answers=answers,
        idempotency=idempotency,
        login_failures=MemoryLoginFailures(_budgets(settings)),
        queue=queue,
        health=MemoryHealth(),
        effects=effects,
        relay=relay,
    )
    context["taskapi"] = job_resources(parts)
    parts.opening = [parts.db.connect, *([relay.start] if relay else [])]
    parts.closing = [_closer(parts.passwords.close), parts.db.dispose, queue.close]
    if relay:
        parts.closing.append(relay.stop)
    return parts


def _in_redis(settings: Settings, *, relays: bool) -> Parts:
    common = _common(settings)
    pool = RedisPool(
        settings.redis_url,
        settings.redis_timeout_ms,
        settings.redis_retry_after_ms,
        sentinel_address(settings),
    )
    queue, publisher = ArqQueue(pool), RedisPublisher(pool)
    relay = _relay(settings, common["db"], queue, publisher, shared=True) if relays else None
    revocations = RedisRevocations(pool)
    parts = Parts(
        **common,
        gatekeeper=RedisGatekeeper(pool),
        revocations=revocations,
        revocation_record=RevocationRecord(
            common["db"], revocations, interval=SYNC_INTERVAL_SECONDS
        ),
        answers=RedisAnswers(pool),
        idempotency=RedisIdempotency(pool),
        login_failures=RedisLoginFailures(_budgets(settings), pool),
        queue=queue,
        health=RedisHealth(pool),
        effects=TaskEffects(common["cache"], publisher),
        relay=relay,
    )
    parts.opening = [pool.open, parts.db.connect, *([relay.start] if relay else [])]
    parts.closing = [pool.close, _closer(parts.passwords.close), parts.db.dispose]
    if relay:
        parts.closing.append(relay.stop)
    return parts


def sentinel_address(settings: Settings) -> SentinelAddress | None:
    """Where Sentinel says the primary is, when TASKAPI_REDIS_SENTINELS is set."""
    if not settings.uses_sentinel:
        return None
    return SentinelAddress(
        settings.redis_sentinels, settings.redis_sentinel_master, settings.redis_url
    )


def job_resources(parts: Parts) -> JobResources:
    """What the jobs use in this process (the arq worker's, or the in-process runner's)."""
    return JobResources(parts.settings, parts.db, parts.effects, parts.mailer)


def _closer(close: Any) -> Any:
    async def step() -> None:
        close()

    return step
