"""The task models themselves: TaskListQuery parses the list's query string with the contract's
accepted set, and TaskOut writes a task's JSON as the API has always sent it."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from taskapi.blueprints.tasks.schemas import TaskListQuery, TaskOut
from taskapi.domain.pagination import Cursor

AT = dt.datetime(2026, 12, 3, 10, 0, 0, 123456, tzinfo=dt.UTC)


def test_the_query_defaults_to_the_first_page_of_100():
    assert TaskListQuery.model_validate({}) == TaskListQuery(status=None, limit=100, cursor=None)


def test_the_query_parses_each_parameter():
    token = Cursor(created_at=AT, id=7).encode()
    query = TaskListQuery.model_validate({"status": "completed", "limit": "00050", "cursor": token})
    assert (query.status, query.limit, query.cursor) == ("completed", 50, Cursor(AT, 7))


@pytest.mark.parametrize("value", ["+5", " 5", "5 ", "5_0", "1.0", "\u0665", "0", "101", "0000001"])
def test_the_query_refuses_a_limit_pydantic_s_int_alone_would_take_or_bound(value):
    with pytest.raises(ValidationError) as raised:
        TaskListQuery.model_validate({"limit": value})
    assert [error["loc"] for error in raised.value.errors()] == [("limit",)]


def test_the_query_refuses_a_cursor_this_api_did_not_write():
    with pytest.raises(ValidationError) as raised:
        TaskListQuery.model_validate({"cursor": "garbage"})
    assert [error["loc"] for error in raised.value.errors()] == [("cursor",)]


def test_an_empty_cursor_is_none():
    assert TaskListQuery.model_validate({"cursor": ""}).cursor is None


@pytest.mark.parametrize(
    ("stamp", "text"),
    [
        (AT, "2026-12-03T10:00:00.123456+00:00"),
        (AT.replace(microsecond=0), "2026-12-03T10:00:00+00:00"),
    ],
)
def test_task_out_writes_times_as_isoformat(stamp, text):
    task = TaskOut(
        id=1,
        title="t",
        description=None,
        status="pending",
        due_date=None,
        created_at=stamp,
        updated_at=stamp,
        owner_id=2,
        version=1,
    )
    assert task.model_dump_json() == (
        '{"id":1,"title":"t","description":null,"status":"pending","due_date":null,'
        f'"created_at":"{text}","updated_at":"{text}","owner_id":2,"version":1}}'
    )
    assert task.model_dump()["created_at"] == stamp  # Python mode keeps the datetime
