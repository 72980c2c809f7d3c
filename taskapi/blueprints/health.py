"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from pydantic import BaseModel
from quart import Blueprint, Response
from quart_schema import document_response, tag
from sqlalchemy import text

from taskapi.http.gate import exempt
from taskapi.http.responses import json_response
from taskapi.http.state import app_state

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)
READY_TIMEOUT_SECONDS = 2.0


class Liveness(BaseModel):
    """Alive."""

    status: Literal["ok"]


class Checks(BaseModel):
    database: Literal["ok", "error"]
    redis: Literal["ok", "error", "disabled"]


class Readiness(BaseModel):
    """Ready: the database (and Redis, where configured) answer."""

    status: Literal["ok"]
    checks: Checks


class NotReady(BaseModel):
    """Not ready: a check failed."""

    status: Literal["error"]
    checks: Checks


@bp.get("/health")
@exempt
@tag(["health"])
@document_response(Liveness, 200)
async def health() -> Response:
    """Liveness: the process answers. Touches nothing else."""
    return json_response({"status": "ok"})


@bp.get("/health/ready")
@exempt
@tag(["health"])
@document_response(Readiness, 200)
@document_response(NotReady, 503)
async def ready() -> Response:
    """Readiness: the database (and Redis, where configured) answer."""
    checks = {"database": await _check_database(), "redis": await _check_redis()}
    healthy = all(value in ("ok", "disabled") for value in checks.values())
    return json_response(
        {"status": "ok" if healthy else "error", "checks": checks}, 200 if healthy else 503
    )


async def _check_database() -> str:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            async with app_state().db.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    except Exception as error:  # any failure means "not ready"; the reason goes to the log
        log.warning("readiness: database check failed: %s", type(error).__name__)
        return "error"
    return "ok"


async def _check_redis() -> str:
    pool = app_state().redis
    if pool is None:
        return "disabled"
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            return "ok" if await pool.ping() else "error"
    except TimeoutError:
        return "error"
