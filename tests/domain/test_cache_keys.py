"""Cache keys: each task's detail and each origin are cached apart."""

from __future__ import annotations

import pytest

from taskapi.domain.cache import CachePolicy
from taskapi.domain.viewer import Viewer
from taskapi.settings import load_settings
from tests.conftest import ROLE_CACHE_IDS, ROLE_CACHE_SECONDS, create_account


@pytest.fixture(params=ROLE_CACHE_SECONDS, ids=ROLE_CACHE_IDS)
def user_cache_seconds(request) -> float:
    """Every test here runs with the role cache off (tests) and on (production)."""
    return request.param


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


@pytest.mark.parametrize(("kind", "task_id"), [("list", None), ("detail", 7)])
def test_callers_get_different_keys_at_the_same_version(kind, task_id):
    viewers = [Viewer(1, "user"), Viewer(2, "user"), Viewer(3, "admin")]
    policy = CachePolicy(load_settings(environ={}, env="testing"))
    slots = [policy.slot(kind, v, task_id, "http://a.example", "limit=5") for v in viewers]
    keys = {slot.key(1) for slot in slots if slot is not None}
    assert len(keys) == 3, keys
