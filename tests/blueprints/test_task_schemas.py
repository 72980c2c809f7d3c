"""The task models themselves: TaskListQuery parses the list's query string with the contract's
accepted set."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from taskapi.blueprints.tasks.schemas import TaskListQuery
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
