"""The parts of the app serving this request (`taskapi.wiring` built them)."""

from __future__ import annotations

from quart import current_app

from taskapi.domain.parts import Parts

PARTS = "taskapi"


def current_parts() -> Parts:
    parts: Parts = current_app.extensions[PARTS]
    return parts
