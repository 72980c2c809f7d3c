"""Cache keys: each task's detail and each origin are cached apart."""

from __future__ import annotations

import pytest

from tests.conftest import create_account

BACKENDS = ["redis", "memory"]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_each_tasks_detail_is_cached_under_its_own_key(make_apps, backend):
    (app,) = await make_apps(1, backend=backend)
    account = await create_account(app)
    client = app.test_client()
    ids = []
    for title in ("first", "second"):
        response = await client.post("/api/tasks/", headers=account.headers, json={"title": title})
        ids.append((await response.get_json())["data"]["id"])
    for task_id, title in zip(ids, ("first", "second"), strict=True):
        response = await client.get(f"/api/tasks/{task_id}", headers=account.headers)
        assert response.headers["X-Cache"] == "MISS"
        assert (await response.get_json())["data"]["title"] == title


@pytest.mark.parametrize("backend", BACKENDS)
async def test_another_origin_is_not_served_this_origins_entry(make_apps, backend):
    (app,) = await make_apps(1, backend=backend)
    account = await create_account(app)
    client = app.test_client()
    await client.post("/api/tasks/", headers=account.headers, json={"title": "t"})
    first = await client.get("/api/tasks/", headers={**account.headers, "Host": "a.example"})
    again = await client.get("/api/tasks/", headers={**account.headers, "Host": "a.example"})
    other = await client.get("/api/tasks/", headers={**account.headers, "Host": "b.example"})
    assert [r.headers["X-Cache"] for r in (first, again, other)] == ["MISS", "HIT", "MISS"]
