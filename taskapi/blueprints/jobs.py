"""Routes of the background processing of a task: queue it (202), then poll its status."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel
from quart import Blueprint, Response, url_for
from quart_schema import document_response, tag

from taskapi.domain import outbox, tasks
from taskapi.errors import APIError
from taskapi.http.db_scope import request_connection, request_unit
from taskapi.http.docs import (
    IDEMPOTENCY_KEY,
    IDEMPOTENT_ERRORS,
    errors,
    request_headers,
    response_headers,
)
from taskapi.http.gate import current_viewer
from taskapi.http.policy import default_limits, idempotent, login_required
from taskapi.http.responses import json_response
from taskapi.http.state import current_parts
from taskapi.infra.stores import JobView, StoreUnavailable

bp = Blueprint("jobs", __name__)
JOB_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class ProcessAccepted(BaseModel):
    """Queued: poll `status_url`."""

    message: str
    job_id: str
    status_url: str


class JobStatusOut(BaseModel):
    """The job's status, and its result once complete."""

    job_id: str
    status: Literal["queued", "in_progress", "complete", "failed", "not_found"]
    result: Any = None


@bp.post("/<task_id:task_id>/process")
@default_limits
@tag(["jobs"])
@login_required
@idempotent
@document_response(ProcessAccepted, 202)
@response_headers(
    202,
    Idempotent_Replayed="`true` on the answer replayed to a retry with its Idempotency-Key.",
)
@request_headers(Idempotency_Key=IDEMPOTENCY_KEY)
@errors(400, 401, 403, 404, 409, 413, 422, 429, 503, texts=IDEMPOTENT_ERRORS)
async def process_task(task_id: int) -> Response:
    """Queue the processing of a task, then poll the status URL in the answer.

    The job appends " [Processed]" to the description (once) and completes the task. It is
    in the outbox once this answers: it runs even if the queue is down now."""
    async with request_unit() as unit:
        job_id = await tasks.queue_processing(unit, current_viewer(), task_id)
    return json_response(
        {
            "message": "Task processing has been queued.",
            "job_id": job_id,
            "status_url": url_for("jobs.get_job_status", job_id=job_id, _external=True),
        },
        202,
    )


@bp.get("/process/status/<job_id>")
@default_limits
@tag(["jobs"])
@login_required
@document_response(JobStatusOut, 200)
@errors(401, 404, 429, 503)
async def get_job_status(job_id: str) -> Response:
    """The status of a job, and its result once it is complete.

    `not_found` once the job is unknown or has expired. Another user's job is 404: only the
    user who queued it (or an admin) may see it."""
    viewer = current_viewer()
    if not JOB_ID.match(job_id):
        return json_response({"job_id": job_id, "status": "not_found", "result": None})
    view = await _job_view(job_id)
    if view.status != "not_found" and not viewer.is_admin and view.requested_by != viewer.id:
        raise APIError(404, f"Job {job_id} not found.")
    return json_response({"job_id": job_id, "status": view.status, "result": view.result})


async def _job_view(job_id: str) -> JobView:
    """The queue's view of a job; `queued` while it still waits in the outbox."""
    try:
        view = await current_parts().queue.view(job_id)
    except StoreUnavailable:
        view = None
    if view is not None and view.status != "not_found":
        return view
    entry = await outbox.job_entry(await request_connection(), job_id)
    if entry is not None and not entry.sent:
        return JobView(job_id, "queued", None, entry.requested_by)
    if view is None:
        raise APIError(503, "The job queue is unavailable. Try again shortly.")
    return view
