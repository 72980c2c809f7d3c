"""What one app instance owns, reachable from any request as `app_state()`."""

from __future__ import annotations

import dataclasses

from quart import current_app

from taskapi.db import Database
from taskapi.security import PasswordHasher
from taskapi.settings import Settings


@dataclasses.dataclass(slots=True)
class AppState:
    settings: Settings
    db: Database
    passwords: PasswordHasher


def app_state() -> AppState:
    state: AppState = current_app.extensions["taskapi"]
    return state
