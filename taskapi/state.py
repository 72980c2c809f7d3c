"""What one app instance owns, reachable from any request as `app_state()`."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from quart import current_app

from taskapi.auth.service import RoleCache
from taskapi.db import Database
from taskapi.limits import LoginFailures
from taskapi.redis_pool import RedisPool
from taskapi.revocation import RevocationStore
from taskapi.security import PasswordHasher
from taskapi.settings import Settings
from taskapi.tasks.effects import TaskEffects

if TYPE_CHECKING:
    from taskapi.cache import ResponseCache
    from taskapi.queue import JobQueue


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
