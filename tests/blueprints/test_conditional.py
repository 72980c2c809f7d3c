"""Conditional requests (RFC 9110 §13): each task's version and ETag; If-None-Match → 304 on
the detail and the list, hit or miss; If-Match on PUT, PATCH and DELETE → 412 when stale,
checked by the statement that writes; 428 when required and missing."""

from __future__ import annotations

import asyncio

import pytest

from tests.asgi import asgi_request
from tests.conftest import create_account
from tests.http.test_edge import REMEMBERED, _counting_framework_requests

BACKENDS = ["redis", "memory"]


def _etag(task: dict) -> str:
    return f'"{task["id"]}.{task["version"]}"'


async def test_every_answer_with_one_task_carries_its_strong_etag_and_writes_move_it_on(
    client_as,
):
    api = await client_as()
    created = await api.post("/api/tasks/", json={"title": "t"})
    task = (await created.get_json())["data"]
    assert (task["version"], created.headers["ETag"]) == (1, f'"{task["id"]}.1"')
    url = f"/api/tasks/{task['id']}"
    read = await api.get(url)
    assert read.headers["ETag"] == f'"{task["id"]}.1"'
    patched = await api.patch(url, json={"status": "completed"})
    assert (await patched.get_json())["data"]["version"] == 2
    assert patched.headers["ETag"] == f'"{task["id"]}.2"'
    replaced = await api.put(url, json={"title": "u", "status": "pending"})
    assert replaced.headers["ETag"] == f'"{task["id"]}.3"'
    assert (await api.get(url)).headers["ETag"] == f'"{task["id"]}.3"'  # not the cached .1


async def test_the_list_carries_a_weak_etag_of_the_page_it_returns(client_as):
    api = await client_as()
    task = await api.create_task()
    first, again = await api.get("/api/tasks/"), await api.get("/api/tasks/?limit=100")
    assert first.headers["ETag"].startswith('W/"')
    assert again.headers["ETag"] == first.headers["ETag"]  # the same page
    assert (await api.get("/api/tasks/?status=completed")).headers["ETag"] != first.headers["ETag"]
    await api.patch(f"/api/tasks/{task['id']}", json={"title": "renamed"})
    assert (await api.get("/api/tasks/")).headers["ETag"] != first.headers["ETag"]


# --- If-None-Match ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("path", "same_page"),
    [
        ("/api/tasks/{id}", "/api/tasks/{id}?again"),
        ("/api/tasks/?limit=5", "/api/tasks/?limit=005"),
    ],
)
@pytest.mark.parametrize("remembered", [False, True], ids=["framework", "edge"])
async def test_if_none_match_of_the_current_etag_is_304_on_a_hit_and_on_a_miss(
    make_apps, backend, path, same_page, remembered
):
    """A cached hit answers 304 from its entry (at the edge when the caller's role is
    remembered); a miss turns the view's 200 into the 304. Either stands for the 200: its
    headers, no body."""
    (app,) = await make_apps(1, backend=backend, **(REMEMBERED if remembered else {}))
    account = await create_account(app)
    client = app.test_client()
    created = await client.post("/api/tasks/", headers=account.headers, json={"title": "t"})
    task_id = (await created.get_json())["data"]["id"]
    url, other_url = path.format(id=task_id), same_page.format(id=task_id)
    full = await client.get(url, headers=account.headers)  # a miss, now cached
    etag = full.headers["ETag"]
    conditional = {**account.headers, "If-None-Match": etag}
    seen = _counting_framework_requests(app)

    hit = await client.get(url, headers=conditional)
    assert bool(seen) == (not remembered)
    # another query string: another cache entry (a miss), the same representation
    miss = await client.get(other_url, headers=conditional)

    for answer, cache in ((hit, "HIT"), (miss, "MISS")):
        assert answer.status_code == 304
        assert await answer.get_data() == b""
        assert answer.headers["X-Cache"] == cache
        assert answer.headers["ETag"] == etag
        assert answer.headers["Cache-Control"] == full.headers["Cache-Control"]
    # on the wire: no Content-Type or Content-Length (the test client adds its own)
    path_only, _, query = other_url.partition("?")
    for target, query_string in (
        (url.partition("?")[0], url.partition("?")[2]),
        (path_only, query),
    ):
        sent = await asgi_request(app, "GET", target, conditional, query_string)
        assert (sent.status, sent.body) == (304, b"")
        assert "content-type" not in sent.headers and "content-length" not in sent.headers
        assert sent.headers["etag"] == etag
    await client.post("/api/tasks/", headers=account.headers, json={"title": "newer"})
    changed = await client.get(url, headers=conditional)
    expected = 304 if "{id}" in path else 200  # the task has not changed; its list has
    assert changed.status_code == expected


async def test_if_none_match_takes_star_lists_and_weak_tags_and_head(client_as):
    api = await client_as()
    task = await api.create_task()
    url, etag = f"/api/tasks/{task['id']}", _etag(task)
    for header in ("*", f'"0.1", {etag}', f"W/{etag}", f'"x", W/"y", {etag}'):
        answer = await api.get(url, headers={"If-None-Match": header})
        assert answer.status_code == 304, header
    assert (
        await api.client.head(url, headers={**api.account.headers, "If-None-Match": etag})
    ).status_code == 304
    for header in (f'"{task["id"]}.2"', '"nonsense', "", '""', f'W/"{task["id"]}.0"'):
        answer = await api.get(url, headers={"If-None-Match": header})
        assert answer.status_code == 200, header
        assert (await answer.get_json())["data"]["id"] == task["id"]


async def test_if_none_match_never_hides_an_error(client_as):
    api = await client_as()
    other = await client_as()
    theirs = await other.create_task()
    assert (await api.get("/api/tasks/999999", headers={"If-None-Match": "*"})).status_code == 404
    forbidden = await api.get(f"/api/tasks/{theirs['id']}", headers={"If-None-Match": "*"})
    assert forbidden.status_code == 403


# --- If-Match -----------------------------------------------------------------------------------


async def test_a_stale_if_match_is_412_with_the_current_etag_and_changes_nothing(client_as):
    api = await client_as()
    task = await api.create_task(title="original")
    url, first = f"/api/tasks/{task['id']}", _etag(task)
    assert (
        await api.patch(url, json={"title": "second"}, headers={"If-Match": first})
    ).status_code == 200
    for method, body in (
        ("patch", {"title": "lost"}),
        ("put", {"title": "lost", "status": "pending"}),
        ("delete", None),
    ):
        refused = await getattr(api, method)(url, headers={"If-Match": first}, json=body)
        assert refused.status_code == 412, method
        assert refused.headers["ETag"] == f'"{task["id"]}.2"'
        error = (await refused.get_json())["error"]
        assert error["code"] == "precondition_failed"
    now = await api.get(url)
    assert ((await now.get_json())["data"]["title"], now.headers["ETag"]) == (
        "second",
        f'"{task["id"]}.2"',
    )


async def test_a_matching_if_match_writes_and_star_matches_any_version(client_as):
    api = await client_as()
    task = await api.create_task()
    url = f"/api/tasks/{task['id']}"
    listed = f'"{task["id"]}.7", {_etag(task)}'
    assert (
        await api.patch(url, json={"title": "a"}, headers={"If-Match": listed})
    ).status_code == 200
    assert (
        await api.put(url, json={"title": "b", "status": "completed"}, headers={"If-Match": "*"})
    ).status_code == 200
    assert (await api.delete(url, headers={"If-Match": f'"{task["id"]}.3"'})).status_code == 204
    assert (await api.get(url)).status_code == 404


@pytest.mark.parametrize(
    "header",
    [
        'W/"{id}.1"',
        '"{other}.1"',
        '"{id}"',
        '"{id}.x"',
        '"{id}.99999999999"',
        '""',
        '"", W/"{id}.1"',
        "",
        "garbage",
    ],
)
async def test_an_if_match_that_names_no_version_of_the_task_is_412(client_as, header):
    """Weak tags never match (If-Match compares strongly); another task's tag, a malformed one
    or an empty header name no version of this one."""
    api = await client_as()
    task = await api.create_task()
    url = f"/api/tasks/{task['id']}"
    value = header.format(id=task["id"], other=task["id"] + 1)
    answer = await api.patch(url, json={"title": "x"}, headers={"If-Match": value})
    assert answer.status_code == 412
    assert (await api.get(url)).headers["ETag"] == _etag(task)


async def test_preconditions_come_after_404_and_403(client_as):
    api, other = await client_as(), await client_as()
    theirs = await other.create_task()
    for method, body in (
        ("patch", {"title": "x"}),
        ("put", {"title": "x", "status": "pending"}),
        ("delete", None),
    ):
        for header in ('"1.1"', "*"):
            missing = await getattr(api, method)(
                "/api/tasks/999999", headers={"If-Match": header}, json=body
            )
            assert missing.status_code == 404
            forbidden = await getattr(api, method)(
                f"/api/tasks/{theirs['id']}", headers={"If-Match": header}, json=body
            )
            assert forbidden.status_code == 403
            assert "ETag" not in forbidden.headers


async def test_an_admin_writes_any_task_with_its_etag(client_as):
    user, admin = await client_as(), await client_as("admin")
    task = await user.create_task()
    url = f"/api/tasks/{task['id']}"
    assert (
        await admin.patch(url, json={"title": "x"}, headers={"If-Match": f'"{task["id"]}.9"'})
    ).status_code == 412
    assert (
        await admin.patch(url, json={"title": "x"}, headers={"If-Match": _etag(task)})
    ).status_code == 200


async def test_require_if_match_makes_unconditional_writes_428_after_404_and_403(make_apps):
    (app,) = await make_apps(1, backend="memory", require_if_match=True)
    me, them = await create_account(app), await create_account(app)
    client = app.test_client()
    created = await client.post("/api/tasks/", headers=me.headers, json={"title": "t"})
    task = (await created.get_json())["data"]
    theirs = (
        await (
            await client.post("/api/tasks/", headers=them.headers, json={"title": "t"})
        ).get_json()
    )["data"]
    url = f"/api/tasks/{task['id']}"
    for method, body in (
        ("patch", {"title": "x"}),
        ("put", {"title": "x", "status": "pending"}),
        ("delete", None),
    ):
        send = getattr(client, method)
        required = await send(url, headers=me.headers, json=body)
        assert required.status_code == 428
        assert (await required.get_json())["error"]["code"] == "precondition_required"
        assert required.headers["ETag"] == _etag(task)
        assert (await send("/api/tasks/999999", headers=me.headers, json=body)).status_code == 404
        assert (
            await send(f"/api/tasks/{theirs['id']}", headers=me.headers, json=body)
        ).status_code == 403
    assert (await client.get(url, headers=me.headers)).headers["ETag"] == _etag(task)
    done = await client.patch(
        url, headers={**me.headers, "If-Match": _etag(task)}, json={"title": "x"}
    )
    assert done.status_code == 200


async def test_of_twenty_concurrent_patches_with_one_if_match_exactly_one_succeeds(make_apps):
    """On PostgreSQL, two instances: the version is checked by the UPDATE itself, so the row
    lock serializes the writers and the 19 that wait find the version moved on."""
    apps = await make_apps(2)
    account = await create_account(apps[0])
    clients = [app.test_client() for app in apps]
    created = await clients[0].post("/api/tasks/", headers=account.headers, json={"title": "t"})
    task = (await created.get_json())["data"]
    headers = {**account.headers, "If-Match": _etag(task)}
    answers = await asyncio.gather(
        *(
            clients[i % 2].patch(
                f"/api/tasks/{task['id']}", headers=headers, json={"title": f"w{i}"}
            )
            for i in range(20)
        )
    )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] + [412] * 19
    (winner,) = [a for a in answers if a.status_code == 200]
    final = await clients[1].get(f"/api/tasks/{task['id']}", headers=account.headers)
    assert (await final.get_json())["data"] == (await winner.get_json())["data"]
    assert (await final.get_json())["data"]["version"] == 2
