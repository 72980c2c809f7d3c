"""What one app instance owns, reachable from any request as `app_state()`."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from quart import current_app

from taskapi.domain.accounts import RoleCache
from taskapi.domain.effects import TaskEffects
from taskapi.domain.limits import LoginFailures
from taskapi.domain.revocation import RevocationStore
from taskapi.infra.db import Database
from taskapi.infra.passwords import PasswordHasher
from taskapi.infra.redis_pool import RedisPool
from taskapi.settings import Settings

if TYPE_CHECKING:
    from taskapi.domain.cache import ResponseCache
    from taskapi.domain.queue import JobQueue


@dataclasses.dataclass(slots=True)
class AppState:
    settings: Settings
    db: Database
    passwords: PasswordHasher
    revocations: RevocationStore
    roles: RoleCache
    login_failures: LoginFailures
    redis: RedisPool | None = None
    cache: ResponseCache | None = None
    jobs: JobQueue | None = None
    effects: TaskEffects = dataclasses.field(default_factory=lambda: TaskEffects(None, None))


def app_state() -> AppState:
    state: AppState = current_app.extensions["taskapi"]
    return state
