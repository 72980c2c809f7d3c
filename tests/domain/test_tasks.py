"""Reads and writes by id act on that task only, when the caller can see several."""

from __future__ import annotations


async def test_get_by_id_returns_that_task_among_several(client_as):
    api = await client_as("user")
    tasks = [await api.create_task(title=title) for title in ("first", "second", "third")]
    for task in reversed(tasks):
        response = await api.get(f"/api/tasks/{task['id']}")
        assert (await response.get_json())["data"]["title"] == task["title"]


async def test_patch_by_id_changes_that_task_only(client_as):
    api = await client_as("user")
    first, second = await api.create_task(title="first"), await api.create_task(title="second")
    response = await api.patch(f"/api/tasks/{second['id']}", json={"title": "changed"})
    assert (await response.get_json())["data"]["id"] == second["id"]
    titles = [
        (await (await api.get(f"/api/tasks/{t['id']}")).get_json())["data"]["title"]
        for t in (first, second)
    ]
    assert titles == ["first", "changed"]


async def test_delete_by_id_removes_that_task_only(client_as):
    api = await client_as("user")
    first, second = await api.create_task(title="first"), await api.create_task(title="second")
    assert (await api.delete(f"/api/tasks/{second['id']}")).status_code == 204
    assert (await api.get(f"/api/tasks/{first['id']}")).status_code == 200
    assert (await api.get(f"/api/tasks/{second['id']}")).status_code == 404
