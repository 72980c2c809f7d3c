"""The background jobs (arq's word; "task" is the API resource): their code, run by the arq
worker in production and on the app's own loop in the embedded default.

Delivery is at least once (a worker killed mid-job runs it again), so every job is idempotent.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select

from taskapi.domain import tasks, work
from taskapi.domain.effects import TaskEffects
from taskapi.domain.models import Task, User
from taskapi.domain.ports import JobName
from taskapi.infra.db import Database
from taskapi.infra.logs import request_id_var
from taskapi.infra.mail import SMTP_ERRORS, Mailer
from taskapi.infra.stores import RetryLater
from taskapi.settings import Settings

log = logging.getLogger(__name__)
# a job: (arq's ctx, task id, requested by, request id) → its result
Job = Callable[[dict[str, Any], int, int, str | None], Awaitable[dict[str, Any]]]


@dataclasses.dataclass(slots=True)
class JobResources:
    """What a job may use: the same database code and write path as the app."""

    settings: Settings
    db: Database
    effects: TaskEffects
    mailer: Mailer


def _resources(ctx: dict[str, Any]) -> JobResources:
    resources: JobResources = ctx["taskapi"]
    return resources


async def send_task_created_email(
    ctx: dict[str, Any], task_id: int, requested_by: int, request_id: str | None = None
) -> dict[str, Any]:
    """Tell the task's owner it was created; retried with backoff while SMTP fails."""
    request_id_var.set(request_id or "-")
    res = _resources(ctx)
    async with res.db.connection() as connection:
        row = (
            await connection.execute(
                select(Task.id, Task.title, User.email)
                .join(User, User.id == Task.owner_id)
                .where(Task.id == task_id)
            )
        ).first()
    if row is None:
        log.warning("task %s was deleted before its confirmation e-mail went out", task_id)
        return {"status": "skipped", "reason": "Task not found"}
    subject = f"Task Created: {row.title}"
    body = f"Your task '{row.title}' (ID: {row.id}) was created successfully."
    try:
        await res.mailer.send(row.email, subject, body)
    except SMTP_ERRORS as error:
        attempt = int(ctx.get("job_try", 1))
        if attempt >= res.settings.job_max_tries:
            log.error(
                "giving up on the e-mail for task %s after %s tries: %s: %s",
                task_id,
                attempt,
                type(error).__name__,
                error,
            )
            raise
        delay = res.settings.job_retry_base_seconds * 2 ** (attempt - 1)
        log.warning(
            "e-mail for task %s failed (try %s), again in %ss: %s", task_id, attempt, delay, error
        )
        raise RetryLater(delay) from error
    return {"status": "sent", "recipient": row.email}


async def process_task(
    ctx: dict[str, Any], task_id: int, requested_by: int, request_id: str | None = None
) -> dict[str, Any]:
    """The tutorial's process_task_data, through the task service (idempotent: the mark is
    never appended twice)."""
    request_id_var.set(request_id or "-")
    res = _resources(ctx)
    async with (
        res.db.connection() as connection,
        work.single_statement(connection, res.effects) as unit,
    ):
        description = await tasks.process_task(unit, task_id, requested_by)
    if description is None:
        log.warning("task %s was deleted before it could be processed", task_id)
        return {"status": "failed", "reason": "Task not found"}
    log.info("processed task %s", task_id)
    return {"status": "success", "task_id": task_id, "new_description": description}


JOB_FUNCTIONS: tuple[Job, ...] = (send_task_created_email, process_task)
# keyed by str, as a queued job names its function (each name is a JobName)
JOBS_BY_NAME: dict[str, Job] = {JobName(job.__name__): job for job in JOB_FUNCTIONS}
