"""What follows a task write, decided here and nowhere else: the cached copies it makes stale,
bumped once the write has committed, and the relay woken for the jobs it wrote into the outbox.
A unit of work (`taskapi.domain.work`) hands its changes to `apply` once it has committed, and
never when it rolls back."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Literal

from taskapi.domain.cache import CachePolicy
from taskapi.domain.ports import Publisher
from taskapi.infra.stores import StoreUnavailable

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


def _nothing() -> None:
    return None


class TaskEffects:
    """The consequences of writes: their cache versions handed to the shared stores in one
    call, and `wake` (the relay of this process, if it runs one) told of new outbox entries."""

    def __init__(
        self, cache: CachePolicy, publisher: Publisher, wake: Callable[[], None] = _nothing
    ) -> None:
        self.cache = cache
        self.publisher = publisher
        self.wake = wake

    def versions(self, change: Change) -> list[str]:
        """The cache versions a change makes stale: a task's detail, its owner's lists and the
        admin's (an account's lists and the admin's when it is deleted)."""
        if change.task_id is None:
            return self.cache.owner_versions(change.owner_id)
        return self.cache.task_versions(change.task_id, change.owner_id)

    async def apply(self, changes: Sequence[Change], *, intents: bool = False) -> list[str]:
        """After the changes committed: one hand-over of their stale versions; the relay woken
        when the unit wrote outbox entries. The versions it could not bump (for the unit to
        write into the outbox); never raises: the writes have succeeded."""
        if intents:
            self.wake()
        versions = list(dict.fromkeys(v for change in changes for v in self.versions(change)))
        if not versions:
            return []
        try:
            await self.publisher.publish(versions)
        except StoreUnavailable:
            return versions  # the store's outage is logged once, by the store
        except Exception as error:
            log.error("cache versions %s not bumped: %s: %s", versions, type(error).__name__, error)
            return versions
        return []
