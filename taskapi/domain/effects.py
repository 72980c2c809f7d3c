"""What follows a task write, decided here and nowhere else: the cached copies it makes stale
and the jobs it queues. The task service calls `apply` once per committed write.

A later transactional outbox belongs here too: a `Change` becomes the outbox row that the
service writes in the same statement as the task row (a data-modifying CTE on PostgreSQL).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Literal, Protocol

from taskapi.domain.cache import ResponseCache

log = logging.getLogger(__name__)
Kind = Literal["created", "updated", "deleted", "processed"]


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """One committed write of one task."""

    kind: Kind
    task_id: int
    owner_id: int
    requested_by: int
    request_id: str | None = None


class Queue(Protocol):
    """Where jobs go (an arq queue in Redis, or this process)."""

    def shares_redis_with(self, cache: ResponseCache) -> bool:
        """Whether `enqueue` can bump the cache's version keys in its own round trip."""
        ...

    async def enqueue(
        self,
        function: str,
        task_id: int,
        *,
        requested_by: int,
        request_id: str | None = None,
        bump: Sequence[str] = (),
    ) -> str: ...


class TaskEffects:
    """The consequences of task writes, for the parts this process was built with."""

    def __init__(self, cache: ResponseCache | None, queue: Queue | None) -> None:
        self.cache = cache
        self.queue = queue

    async def apply(self, change: Change) -> None:
        """After a write commits: drop the stale cached copies; after a create, queue the
        confirmation e-mail (in the same Redis round trip when cache and queue share Redis).
        Never raises: the write has succeeded; what fails is logged."""
        cache, queue = self.cache, self.queue
        versions = cache.versions(change.task_id, change.owner_id) if cache is not None else []
        if change.kind != "created" or queue is None:
            if cache is not None:
                await cache.bump(versions)
            return
        bump: list[str] = []
        if cache is not None and queue.shares_redis_with(cache):
            bump = cache.version_names(versions)
        elif cache is not None:
            await cache.bump(versions)
        await self._enqueue(queue, "send_task_created_email", change, bump)

    @staticmethod
    async def _enqueue(queue: Queue, function: str, change: Change, bump: list[str]) -> None:
        try:
            await queue.enqueue(
                function,
                change.task_id,
                requested_by=change.requested_by,
                request_id=change.request_id,
                bump=bump,
            )
        except Exception as error:  # the request has succeeded; the job is what is lost
            log.error(
                "could not enqueue %s for task %s: %s: %s",
                function,
                change.task_id,
                type(error).__name__,
                error,
            )
