"""What follows a task write, decided here and nowhere else: the cached copies it makes stale
and the jobs it queues. A unit of work (`taskapi.domain.work`) hands its changes to `apply`
once it has committed, and never when it rolls back."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Literal

from taskapi.domain.cache import CachePolicy
from taskapi.domain.ports import JobName, Publisher
from taskapi.infra.stores import JobRequest, StoreUnavailable

log = logging.getLogger(__name__)
Kind = Literal["created", "updated", "deleted", "processed", "account_deleted"]


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """One committed write: of one task, or (`account_deleted`, no task) of an account."""

    kind: Kind
    task_id: int | None
    owner_id: int
    requested_by: int
    request_id: str | None = None


class TaskEffects:
    """The consequences of writes, handed to the shared stores in one call."""

    def __init__(self, cache: CachePolicy, publisher: Publisher) -> None:
        self.cache = cache
        self.publisher = publisher

    def versions(self, change: Change) -> list[str]:
        """The cache versions a change makes stale: a task's detail, its owner's lists and the
        admin's (an account's lists and the admin's when it is deleted)."""
        if change.task_id is None:
            return self.cache.owner_versions(change.owner_id)
        return self.cache.task_versions(change.task_id, change.owner_id)

    @staticmethod
    def jobs(change: Change) -> list[JobRequest]:
        """The jobs a change queues: the confirmation e-mail of a created task."""
        if change.kind != "created" or change.task_id is None:
            return []
        email = JobName.SEND_TASK_CREATED_EMAIL
        return [JobRequest(email, change.task_id, change.requested_by, change.request_id)]

    async def apply(self, changes: Sequence[Change]) -> None:
        """After the changes committed: one hand-over of their stale versions and their jobs.
        Never raises: the writes have succeeded; what fails is logged."""
        versions = list(dict.fromkeys(v for change in changes for v in self.versions(change)))
        jobs = [job for change in changes for job in self.jobs(change)]
        if not versions and not jobs:
            return
        try:
            await self.publisher.publish(versions, jobs)
        except Exception as error:  # the request has succeeded; the jobs or the bumps are lost
            if not jobs and isinstance(error, StoreUnavailable):
                return  # the store's outage is logged once, by the store
            for job in jobs:
                log.error(
                    "could not enqueue %s for task %s: %s: %s",
                    job.function,
                    job.task_id,
                    type(error).__name__,
                    error,
                )
            if not jobs:
                log.error(
                    "cache versions %s not bumped: %s: %s", versions, type(error).__name__, error
                )
