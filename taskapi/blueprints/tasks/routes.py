"""Routes of /api/tasks: parse, call the service, shape the envelope."""

from __future__ import annotations

from urllib.parse import urlencode

from quart import Blueprint, Response, url_for
from quart_schema import document_response, tag

from taskapi.blueprints.tasks.schemas import (
    TaskCreate,
    TaskEnvelope,
    TaskListEnvelope,
    TaskListQuery,
    TaskPatch,
    TaskReplace,
    task_json,
    tasks_json,
)
from taskapi.domain import tasks
from taskapi.domain.tasks import TaskRow
from taskapi.errors import APIError
from taskapi.http.conditional import weak_etag, write_precondition
from taskapi.http.db_scope import request_connection, request_unit
from taskapi.http.docs import (
    ETAG_TEXT,
    IDEMPOTENCY_KEY,
    IDEMPOTENT_CREATE_ERRORS,
    IF_MATCH_TEXT,
    LIST_ERRORS,
    PATCH_ERRORS,
    empty_response,
    errors,
    not_modified,
    request_headers,
    response_headers,
)
from taskapi.http.gate import current_viewer
from taskapi.http.policy import cached, default_limits, idempotent, login_required
from taskapi.http.responses import encoded_json, no_content, success
from taskapi.http.validation import json_body, query_args

bp = Blueprint("tasks", __name__)

TASK_ID = "/<task_id:task_id>"


def _task_response(
    task: TaskRow, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """One task, with its strong ETag."""
    etag = {"ETag": tasks.etag(task.id, task.version)}
    return success(encoded_json(task_json(task)), status, headers={**(headers or {}), **etag})


@bp.get("/", strict_slashes=False)
@default_limits
@tag(["tasks"])
@login_required
@cached("list")
@query_args(TaskListQuery)
@document_response(TaskListEnvelope, 200)
@response_headers(
    200,
    Link='`<next page URL>; rel="next"` when there is a next page.',
    X_Cache="`HIT` or `MISS`.",
    ETag='A weak entity tag of this page (`W/"..."`).',
)
@not_modified
@errors(400, 401, 429, 503, texts=LIST_ERRORS)
async def list_tasks(query: TaskListQuery) -> Response:
    """The caller's tasks (every task for an admin), newest first, one page at a time."""
    status, limit = query.status, query.limit
    page, next_cursor = await tasks.list_tasks(
        await request_connection(), current_viewer(), status=status, limit=limit, after=query.cursor
    )
    headers: dict[str, str] = {}
    token = next_cursor.encode() if next_cursor else None
    if token is not None:
        link = {k: v for k, v in (("status", status), ("limit", str(limit))) if v is not None}
        link["cursor"] = token
        next_url = url_for("tasks.list_tasks", _external=True) + "?" + urlencode(link)
        headers["Link"] = f'<{next_url}>; rel="next"'
    response = success(
        encoded_json(tasks_json(page)),
        meta={"count": len(page), "next_cursor": token},
        headers=headers,
    )
    response.headers["ETag"] = weak_etag(await response.get_data(as_text=False))
    return response


@bp.post("/", strict_slashes=False)
@default_limits
@tag(["tasks"])
@login_required
@idempotent
@json_body(TaskCreate)
@document_response(TaskEnvelope, 201)
@response_headers(
    201,
    Location="Absolute URL of the new task.",
    ETag=ETAG_TEXT,
    Idempotent_Replayed="`true` on the answer replayed to a retry with its Idempotency-Key.",
)
@request_headers(Idempotency_Key=IDEMPOTENCY_KEY)
@errors(400, 401, 409, 413, 415, 422, 429, 503, texts=IDEMPOTENT_CREATE_ERRORS)
async def create_task(data: TaskCreate) -> Response:
    """Create a task owned by the caller."""
    async with request_unit(with_intents=True) as unit:
        task = await tasks.create_task(unit, current_viewer(), data.model_dump())
    location = url_for("tasks.get_task", task_id=task.id, _external=True)
    return _task_response(task, 201, {"Location": location})


@bp.get(TASK_ID)
@default_limits
@tag(["tasks"])
@login_required
@cached("detail")
@document_response(TaskEnvelope, 200)
@response_headers(200, X_Cache="`HIT` or `MISS`.", ETag=ETAG_TEXT)
@not_modified
@errors(401, 403, 404, 429, 503)
async def get_task(task_id: int) -> Response:
    """One task, if it is the caller's (or the caller is an admin)."""
    task = await tasks.get_task_for(await request_connection(), current_viewer(), task_id)
    return _task_response(task)


@bp.put(TASK_ID)
@default_limits
@tag(["tasks"])
@login_required
@json_body(TaskReplace)
@document_response(TaskEnvelope, 200)
@response_headers(200, ETag=ETAG_TEXT)
@request_headers(If_Match=IF_MATCH_TEXT)
@errors(400, 401, 403, 404, 412, 413, 415, 422, 428, 429, 503)
async def replace_task(task_id: int, data: TaskReplace) -> Response:
    """Replace a task: title and status are required; optional fields left out become null."""
    precondition = write_precondition(task_id)
    async with request_unit() as unit:
        task = await tasks.update_task(
            unit, current_viewer(), task_id, data.model_dump(), precondition
        )
    return _task_response(task)


@bp.patch(TASK_ID)
@default_limits
@tag(["tasks"])
@login_required
@json_body(TaskPatch)
@document_response(TaskEnvelope, 200)
@response_headers(200, ETag=ETAG_TEXT)
@request_headers(If_Match=IF_MATCH_TEXT)
@errors(400, 401, 403, 404, 412, 413, 415, 422, 428, 429, 503, texts=PATCH_ERRORS)
async def patch_task(task_id: int, data: TaskPatch) -> Response:
    """Change some fields of a task."""
    changes = data.changes()
    if not changes:
        raise APIError(400, "No fields provided for update in PATCH request.", code="empty_patch")
    precondition = write_precondition(task_id)
    async with request_unit() as unit:
        task = await tasks.update_task(unit, current_viewer(), task_id, changes, precondition)
    return _task_response(task)


@bp.delete(TASK_ID)
@default_limits
@tag(["tasks"])
@login_required
@empty_response("Deleted.")
@request_headers(If_Match=IF_MATCH_TEXT)
@errors(401, 403, 404, 412, 428, 429, 503)
async def delete_task(task_id: int) -> Response:
    """Delete a task."""
    precondition = write_precondition(task_id)
    async with request_unit() as unit:
        await tasks.delete_task(unit, current_viewer(), task_id, precondition)
    return no_content()
