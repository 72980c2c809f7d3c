"""A process's parts, as `taskapi.wiring` builds them: the database, the shared-state ports and
what is made of them. The app, the worker and the CLI each hold one."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from taskapi.domain.accounts import RoleCache
from taskapi.domain.cache import CachePolicy
from taskapi.domain.effects import TaskEffects
from taskapi.domain.ports import (
    AnswerStore,
    Gatekeeper,
    IdempotencyStore,
    JobQueue,
    LoginFailures,
    Revocations,
    SharedHealth,
)
from taskapi.domain.relay import Relay
from taskapi.domain.revocations import RevocationRecord
from taskapi.infra.db import Database
from taskapi.infra.mail import Mailer
from taskapi.infra.passwords import PasswordHasher
from taskapi.settings import Settings


@dataclasses.dataclass(slots=True)
class Parts:
    settings: Settings
    db: Database
    passwords: PasswordHasher
    mailer: Mailer
    gatekeeper: Gatekeeper
    revocations: Revocations
    revocation_record: RevocationRecord  # the record, in the database, and its copy above
    answers: AnswerStore
    idempotency: IdempotencyStore
    login_failures: LoginFailures
    queue: JobQueue
    health: SharedHealth
    cache: CachePolicy
    effects: TaskEffects
    roles: RoleCache
    relay: Relay | None = None  # the outbox's relay, when this process runs one
    # what opens before the process serves and closes after, in order (closed in reverse)
    opening: list[Callable[[], Awaitable[None]]] = dataclasses.field(default_factory=list)
    closing: list[Callable[[], Awaitable[None]]] = dataclasses.field(default_factory=list)

    async def open(self) -> None:
        for step in self.opening:
            await step()

    async def close(self) -> None:
        for step in reversed(self.closing):
            await step()
