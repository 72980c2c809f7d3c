"""/api/tasks against CONTRACT.md: fields, validation, pagination, and every bad input's status."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from urllib.parse import quote

import pytest
from sqlalchemy import select

from taskapi.blueprints.tasks.schemas import TaskOut
from taskapi.domain.tasks import TASKS
from tests.conftest import state_of, tasks_sharing_one_created_at
from tests.services import until


async def _error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, await response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/json"
    body = await response.get_json()
    assert body["status"] == "error"
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


# --- the task's shape -------------------------------------------------------------------------


async def test_created_task_has_every_contract_field(client_as):
    api = await client_as()
    response = await api.post(
        "/api/tasks/",
        json={"title": "  Trim me  ", "description": None, "due_date": "2026-12-31"},
    )
    assert response.status_code == 201
    task = (await response.get_json())["data"]
    assert set(task) == {
        "id",
        "title",
        "description",
        "status",
        "due_date",
        "created_at",
        "updated_at",
        "owner_id",
        "version",  # added by the conditional requests (a field more; the contract's all there)
    }
    assert task["version"] == 1
    assert task["title"] == "Trim me"
    assert task["due_date"] == "2026-12-31"
    assert task["owner_id"] == api.account.id
    created = dt.datetime.fromisoformat(task["created_at"])
    assert created.utcoffset() == dt.timedelta(0)
    assert abs(dt.datetime.now(dt.UTC) - created) < dt.timedelta(minutes=5)
    assert response.headers["Location"].endswith(f"/api/tasks/{task['id']}")
    assert response.headers["Location"].startswith("http")


async def _stored(app, task_id: int):
    """The task's row, read straight from the database."""
    async with state_of(app).db.connection() as connection:
        return (await connection.execute(select(TASKS).where(TASKS.c.id == task_id))).one()


UTC_ISOFORMAT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00")


def _documented(row) -> bytes:
    """A task as the API has always sent it, spelled out: these keys in this order, times as
    `datetime.isoformat()` of the UTC instant (`+00:00`, not `Z`), the date as YYYY-MM-DD; the
    version, last, since the conditional requests."""
    for stamp in (row.created_at, row.updated_at):
        assert UTC_ISOFORMAT.fullmatch(stamp.isoformat()), stamp
    due = f'"{row.due_date.isoformat()}"' if row.due_date else "null"
    return (
        f'{{"id":{row.id},"title":{json.dumps(row.title, ensure_ascii=False)},'
        f'"description":{json.dumps(row.description, ensure_ascii=False)},'
        f'"status":"{row.status}","due_date":{due},'
        f'"created_at":"{row.created_at.isoformat()}","updated_at":"{row.updated_at.isoformat()}",'
        f'"owner_id":{row.owner_id},"version":{row.version}}}'
    ).encode()


async def test_a_task_is_sent_byte_for_byte_as_documented(app, client_as):
    """Detail, list, create, PUT and PATCH: the exact bytes seed clients and cached answers have."""
    api = await client_as()
    created = await api.post(
        "/api/tasks/",
        json={"title": 'A "quoted" ✓ title', "description": "two\nlines", "due_date": "2026-12-31"},
    )
    plain = await api.create_task(title="no description, no date")
    first = await _stored(app, (await created.get_json())["data"]["id"])
    second = await _stored(app, plain["id"])
    assert await created.get_data() == b'{"status":"success","data":' + _documented(first) + b"}"
    for row in (first, second):
        detail = await api.get(f"/api/tasks/{row.id}")
        assert await detail.get_data() == b'{"status":"success","data":' + _documented(row) + b"}"
    listed = await (await api.get("/api/tasks/")).get_data()
    assert listed == (
        b'{"status":"success","data":['
        + _documented(second)
        + b","
        + _documented(first)
        + b'],"meta":{"count":2,"next_cursor":null}}'
    )
    url = f"/api/tasks/{first.id}"
    for method, body in (("put", {"title": "t", "status": "completed"}), ("patch", {"title": "p"})):
        response = await getattr(api, method)(url, json=body)
        expected = b'{"status":"success","data":' + _documented(await _stored(app, first.id)) + b"}"
        assert await response.get_data() == expected


async def test_the_task_json_is_task_out_s_own(app, client_as):
    """TaskOut, the documented model, is what writes a task: its JSON is the response's."""
    api = await client_as()
    task = await api.create_task(description="d", due_date="2026-01-02")
    own = TaskOut.model_validate((await _stored(app, task["id"]))._asdict()).model_dump_json()
    detail = await (await api.get(f"/api/tasks/{task['id']}")).get_data()
    assert detail == b'{"status":"success","data":' + own.encode() + b"}"
    listed = await (await api.get("/api/tasks/")).get_data()
    assert listed == (
        b'{"status":"success","data":[' + own.encode() + b'],"meta":{"count":1,"next_cursor":null}}'
    )


async def test_read_only_and_unknown_fields_are_ignored(client_as):
    api = await client_as()
    task = await api.create_task(
        title="t", id=999999, owner_id=123456, created_at="2000-01-01T00:00:00Z", colour="blue"
    )
    assert task["id"] != 999999
    assert task["owner_id"] == api.account.id
    assert not task["created_at"].startswith("2000")
    assert "colour" not in task


@pytest.mark.parametrize(
    "text",
    [
        "Robert'); DROP TABLE tasks;--",
        "1 OR 1=1; SELECT * FROM users",
        "Ünïcödé ✓ 中文 🚀 עברית",
        "<script>alert(1)</script>",
        'line\nbreak\ttab \\ backslash "quote"',
    ],
)
async def test_hostile_and_unicode_text_round_trips_verbatim(client_as, text):
    api = await client_as()
    task = await api.create_task(title=text[:150], description=text)
    fetched = (await (await api.get(f"/api/tasks/{task['id']}")).get_json())["data"]
    assert fetched["title"] == text[:150].strip()
    assert fetched["description"] == text


async def test_a_title_is_stored_stripped_and_its_length_counts_once_stripped(client_as):
    """The contract's rule ("trimmed, 1-150 chars"), which the document's pattern states: the
    whitespace around a title is not counted, however much there is."""
    api = await client_as()
    task = await api.create_task(title="\u3000 a title \n")
    assert task["title"] == "a title"
    task = await api.create_task(title="  " + "x" * 150 + "\t\n")
    assert task["title"] == "x" * 150
    for title in ("x" * 151, " " + "x" * 151 + " ", "\t\u2003\x1c", ""):
        response = await api.post("/api/tasks/", json={"title": title})
        assert "title" in (await _error(response, 422))["details"], repr(title)


async def test_updated_at_strictly_increases_on_every_write(client_as):
    """PUT, PATCH and the process job each move `updated_at` forward; `created_at` stays."""
    api = await client_as()
    task = await api.create_task(description="d")
    url = f"/api/tasks/{task['id']}"
    stamps = [task["updated_at"]]
    for method, body in (
        ("put", {"title": "replaced", "status": "pending"}),
        ("patch", {"status": "completed"}),
        ("patch", {"title": "patched"}),
    ):
        response = await getattr(api, method)(url, json=body)
        assert response.status_code == 200
        data = (await response.get_json())["data"]
        assert data["created_at"] == task["created_at"]
        stamps.append(data["updated_at"])
    queued = await api.post(f"{url}/process")
    assert queued.status_code == 202
    status_url = (await queued.get_json())["status_url"]

    async def processed() -> bool:
        return (await (await api.get(status_url)).get_json())["status"] == "complete"

    await until(processed, "the process job", 30)
    stamps.append((await (await api.get(url)).get_json())["data"]["updated_at"])
    times = [dt.datetime.fromisoformat(stamp) for stamp in stamps]
    assert all(earlier < later for earlier, later in itertools.pairwise(times)), stamps


# --- validation: 422 with details -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 151}, "title"),
        ({"title": 42}, "title"),
        ({"title": None}, "title"),
        ({"title": "ok", "status": "done"}, "status"),
        ({"title": "ok", "status": 1}, "status"),
        ({"title": "ok", "description": "x" * 10_001}, "description"),
        ({"title": "ok", "description": 5}, "description"),
        ({"title": "ok", "due_date": "tomorrow"}, "due_date"),
        ({"title": "ok", "due_date": "2026-02-30"}, "due_date"),
        ({"title": "ok", "due_date": 20261231}, "due_date"),
        ({"title": "nul\u0000byte"}, "title"),
        ({"title": "ok", "description": "nul\u0000byte"}, "description"),
    ],
)
async def test_create_invalid_body_is_422_with_details(client_as, body, field):
    api = await client_as()
    error = await _error(await api.post("/api/tasks/", json=body), 422, "validation_failed")
    assert field in error["details"]
    assert all(isinstance(m, str) for m in error["details"][field])


async def test_lone_surrogate_is_rejected_as_malformed_json(client_as):
    """A lone surrogate escape cannot become valid Unicode text: 400, never a 500."""
    api = await client_as()
    raw = b'{"title": "bad \\ud800 text"}'
    response = await api.post("/api/tasks/", data=raw, headers={"Content-Type": "application/json"})
    await _error(response, 400, "malformed_json")


async def test_put_requires_title_and_status(client_as):
    api = await client_as()
    task = await api.create_task()
    error = await _error(
        await api.put(f"/api/tasks/{task['id']}", json={"title": "only title"}), 422
    )
    assert "status" in error["details"]
    error = await _error(await api.put(f"/api/tasks/{task['id']}", json={"status": "pending"}), 422)
    assert "title" in error["details"]


async def test_put_replaces_the_whole_task(client_as):
    api = await client_as()
    task = await api.create_task(title="old", description="old text", due_date="2026-01-01")
    response = await api.put(
        f"/api/tasks/{task['id']}", json={"title": "new", "status": "completed"}
    )
    assert response.status_code == 200
    data = (await response.get_json())["data"]
    assert (data["title"], data["status"]) == ("new", "completed")
    assert data["description"] is None and data["due_date"] is None


async def test_patch_changes_only_the_given_fields(client_as):
    api = await client_as()
    task = await api.create_task(title="keep", description="before")
    response = await api.patch(f"/api/tasks/{task['id']}", json={"description": "after"})
    data = (await response.get_json())["data"]
    assert (data["title"], data["description"], data["status"]) == ("keep", "after", "pending")


async def test_patch_can_clear_optional_fields(client_as):
    api = await client_as()
    task = await api.create_task(description="text", due_date="2026-01-01")
    response = await api.patch(
        f"/api/tasks/{task['id']}", json={"description": None, "due_date": None}
    )
    data = (await response.get_json())["data"]
    assert data["description"] is None and data["due_date"] is None


@pytest.mark.parametrize("body", [{}, {"colour": "blue"}, {"id": 5, "owner_id": 1}])
async def test_patch_with_no_known_field_is_400(client_as, body):
    api = await client_as()
    task = await api.create_task()
    await _error(await api.patch(f"/api/tasks/{task['id']}", json=body), 400)


@pytest.mark.parametrize(
    "body", [{"status": "archived"}, {"title": ""}, {"title": None}, {"status": None}]
)
async def test_patch_with_an_invalid_value_is_422(client_as, body):
    api = await client_as()
    task = await api.create_task()
    await _error(await api.patch(f"/api/tasks/{task['id']}", json=body), 422)


# --- malformed bodies: 400, 413, 415 ----------------------------------------------------------

JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("method", ["post", "put", "patch"])
async def test_empty_body_is_400(client_as, method):
    api = await client_as()
    task = await api.create_task()
    path = "/api/tasks/" if method == "post" else f"/api/tasks/{task['id']}"
    await _error(await getattr(api, method)(path, data=b"", headers=JSON), 400)


@pytest.mark.parametrize(
    "raw", [b"{", b'{"title": "x",}', b"not json", b"\xff\xfe", b'{"title": "x"} trailing']
)
async def test_malformed_json_is_400(client_as, raw):
    api = await client_as()
    await _error(await api.post("/api/tasks/", data=raw, headers=JSON), 400)


@pytest.mark.parametrize("raw", [b"[]", b'["title"]', b'"title"', b"42", b"null", b"true"])
async def test_json_that_is_not_an_object_is_400(client_as, raw):
    api = await client_as()
    await _error(await api.post("/api/tasks/", data=raw, headers=JSON), 400)


async def test_deeply_nested_json_is_400_not_500(client_as):
    """Nesting past the parser's depth limit is malformed JSON to us: 400, as the contract says."""
    api = await client_as()
    raw = b'{"title": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = await api.post("/api/tasks/", data=raw, headers=JSON)
    await _error(response, 400, "malformed_json")


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_non_json_content_type_is_415(client_as, content_type):
    api = await client_as()
    response = await api.post(
        "/api/tasks/", data=b'{"title": "x"}', headers={"Content-Type": content_type}
    )
    await _error(response, 415, "unsupported_media_type")


async def test_json_with_charset_is_accepted(client_as):
    api = await client_as()
    response = await api.post(
        "/api/tasks/",
        data='{"title": "ü"}'.encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 201


async def test_body_over_the_limit_is_413(app, client_as):
    api = await client_as()
    limit = app.config["MAX_CONTENT_LENGTH"]
    raw = b'{"title": "x", "description": "' + b"a" * limit + b'"}'
    await _error(await api.post("/api/tasks/", data=raw, headers=JSON), 413, "payload_too_large")


# --- URLs and methods -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/tasks", "/api/tasks/"])
async def test_collection_is_served_with_and_without_slash(client_as, path):
    api = await client_as()
    assert (await api.get(path)).status_code == 200
    assert (await api.post(path, json={"title": "x"})).status_code == 201


@pytest.mark.parametrize(
    "path", ["/nope", "/api/tasks/abc", "/api/tasks/-1", "/api/tasks/99999999999999999999"]
)
async def test_unknown_url_is_json_404(client_as, path):
    api = await client_as()
    await _error(await api.get(path), 404, "not_found")


async def test_task_id_in_another_scripts_digits_is_404(client_as):
    api = await client_as()
    task = await api.create_task()
    arabic_indic = "".join(chr(0x0660 + int(digit)) for digit in str(task["id"]))
    await _error(await api.get(f"/api/tasks/{quote(arabic_indic)}"), 404, "not_found")


async def test_wrong_method_is_405_with_allow(client):
    response = await client.post("/health")
    await _error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


# --- listing: order, filter, pagination -------------------------------------------------------


async def test_list_is_newest_first_and_filters_by_status(client_as):
    api = await client_as()
    ids = [
        (await api.create_task(title=f"t{i}", status="completed" if i % 2 else "pending"))["id"]
        for i in range(5)
    ]
    data = (await (await api.get("/api/tasks/")).get_json())["data"]
    assert [t["id"] for t in data] == ids[::-1]
    pending = (await (await api.get("/api/tasks/?status=pending")).get_json())["data"]
    assert [t["id"] for t in pending] == [ids[4], ids[2], ids[0]]


@pytest.mark.parametrize("value", ["done", "PENDING", "", "pending,completed"])
async def test_invalid_status_filter_is_400(client_as, value):
    api = await client_as()
    error = await _error(await api.get(f"/api/tasks/?status={value}"), 400)
    assert error["message"] == "Invalid status filter. Use 'pending' or 'completed'."


async def test_keyset_pagination_walks_every_task_once(client_as):
    api = await client_as()
    ids = [(await api.create_task(title=f"t{i}"))["id"] for i in range(7)]
    seen, url, pages = [], "/api/tasks/?limit=3", 0
    while url:
        response = await api.get(url)
        body = await response.get_json()
        seen += [t["id"] for t in body["data"]]
        assert body["meta"]["count"] == len(body["data"])
        pages += 1
        cursor = body["meta"]["next_cursor"]
        if cursor:
            link = response.headers["Link"]
            assert link.endswith('>; rel="next"') and f"cursor={cursor}" in link
            url = f"/api/tasks/?limit=3&cursor={cursor}"
        else:
            assert "Link" not in response.headers
            url = None
    assert seen == ids[::-1]
    assert pages == 3


async def test_pages_of_one_walk_tasks_created_at_one_instant_newest_id_first(app, client_as):
    """Tasks that share a `created_at` (several created in one PostgreSQL transaction do) are
    told apart by id: a page of one task each, following the Link header, gives each once."""
    api = await client_as()
    tied = await tasks_sharing_one_created_at(app, api.account.id, 3)
    seen, stamps, url = [], set(), "/api/tasks/?limit=1"
    while url:
        response = await api.get(url)
        body = await response.get_json()
        seen += [t["id"] for t in body["data"]]
        stamps |= {t["created_at"] for t in body["data"]}
        assert len(seen) <= len(tied), seen  # no page twice
        link = response.headers.get("Link")
        url = link.removeprefix("<").split(">;")[0] if link else None
    assert seen == tied[::-1]
    assert len(stamps) == 1


async def test_pagination_keeps_the_status_filter(client_as):
    api = await client_as()
    done = [(await api.create_task(title=f"t{i}", status="completed"))["id"] for i in range(4)]
    await api.create_task(title="p", status="pending")
    first = await api.get("/api/tasks/?status=completed&limit=2")
    assert "status=completed" in first.headers["Link"]
    first_body = await first.get_json()
    cursor = first_body["meta"]["next_cursor"]
    second = await api.get(f"/api/tasks/?status=completed&limit=2&cursor={cursor}")
    second_body = await second.get_json()
    assert [t["id"] for t in first_body["data"]] == done[:1:-1]
    assert [t["id"] for t in second_body["data"]] == done[1::-1]
    assert second_body["meta"]["next_cursor"] is None


async def test_default_page_is_bounded_at_100(client_as):
    api = await client_as()
    for i in range(101):
        await api.post("/api/tasks/", json={"title": f"t{i}"})
    body = await (await api.get("/api/tasks/")).get_json()
    assert body["meta"]["count"] == 100
    assert body["meta"]["next_cursor"] is not None


@pytest.mark.parametrize(
    "value",
    [
        "0",
        "101",
        "-1",
        "abc",
        "1.5",
        "%D9%A1%D9%A2",
        "99999999999999999999",
        pytest.param("9" * 5000, id="5000-digits"),  # past Python's int-string limit
        pytest.param("0" * 4999 + "1", id="5000-digits-leading-zeros"),
    ],
)
async def test_invalid_limit_is_400(client_as, value):
    api = await client_as()
    await _error(await api.get(f"/api/tasks/?limit={value}"), 400, "invalid_limit")


@pytest.mark.parametrize(
    "value",
    [
        "+5",
        "%205",  # " 5"
        "5%20",  # "5 "
        "5_0",
        "1.0",
        "1e2",
        "0x10",
        "",
        "%EF%BC%92",  # a full-width digit two
        "0000002",  # seven digits
    ],
)
async def test_limit_is_one_to_six_ascii_digits(client_as, value):
    """Only ASCII digits make a limit, not what Python's or pydantic's int() would also take."""
    api = await client_as()
    error = await _error(await api.get(f"/api/tasks/?limit={value}"), 400, "invalid_limit")
    assert error["message"] == "limit must be an integer from 1 to 100."


@pytest.mark.parametrize("value", ["2", "02", "000002"])
async def test_limit_may_have_leading_zeros_within_six_digits(client_as, value):
    api = await client_as()
    for i in range(3):
        await api.create_task(title=f"t{i}")
    response = await api.get(f"/api/tasks/?limit={value}")
    assert response.status_code == 200
    body = await response.get_json()
    assert body["meta"]["count"] == 2
    assert "limit=2&" in response.headers["Link"]


async def test_the_first_of_a_repeated_parameter_counts(client_as):
    api = await client_as()
    for i in range(3):
        await api.create_task(title=f"t{i}", status="completed")
    response = await api.get("/api/tasks/?limit=2&limit=abc&status=completed&status=done")
    assert response.status_code == 200
    assert (await response.get_json())["meta"]["count"] == 2


async def test_an_empty_cursor_is_the_first_page(client_as):
    api = await client_as()
    task = await api.create_task()
    response = await api.get("/api/tasks/?cursor=")
    assert response.status_code == 200
    assert [t["id"] for t in (await response.get_json())["data"]] == [task["id"]]


async def test_the_first_bad_parameter_is_answered(client_as):
    """status, then limit, then cursor: the order the contract's checks have always had."""
    api = await client_as()
    status = await _error(await api.get("/api/tasks/?cursor=x&limit=0&status=done"), 400)
    assert status["message"] == "Invalid status filter. Use 'pending' or 'completed'."
    assert status["code"] == "bad_request"
    await _error(await api.get("/api/tasks/?cursor=x&limit=0"), 400, "invalid_limit")
    cursor = await _error(await api.get("/api/tasks/?cursor=x"), 400, "invalid_cursor")
    assert cursor["message"] == "Invalid cursor."


@pytest.mark.parametrize("cursor", ["0.0", "99999999999999999.999999999", "1764876000000000.7"])
async def test_every_cursor_of_the_documented_form_continues_a_listing(client_as, cursor):
    """Any `<microseconds>.<id>` the document's pattern allows is a place in the listing."""
    api = await client_as()
    await api.create_task()
    response = await api.get(f"/api/tasks/?cursor={cursor}")
    assert response.status_code == 200


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "1.",
        ".1",
        "-1.1",
        "1.1.1",
        "1.-1",
        "%EF%BC%91.1",  # a full-width digit one, percent-encoded
        pytest.param("1" * 18 + ".1", id="18-digit-time"),
        pytest.param("1." + "1" * 10, id="10-digit-id"),
        # the cursors of the API's first format (base64 of a JSON `[time, id]`)
        "WyIyMDI2IiwgLTFd",
    ],
)
async def test_invalid_cursor_is_400(client_as, cursor):
    api = await client_as()
    await _error(await api.get(f"/api/tasks/?cursor={cursor}"), 400, "invalid_cursor")
