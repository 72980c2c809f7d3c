"""Processing a task: its result names the task, and the owner's cached copies are dropped."""

from __future__ import annotations

import pytest

from taskapi.domain.jobs import process_task
from taskapi.wiring import job_resources
from tests.conftest import create_account


def job_context(app) -> dict:
    return {"taskapi": job_resources(app.extensions["taskapi"])}


async def test_the_result_of_processing_names_the_task(make_apps):
    (app,) = await make_apps(1, backend="memory")
    account = await create_account(app)
    response = await app.test_client().post(
        "/api/tasks/", headers=account.headers, json={"title": "t", "description": "d"}
    )
    task_id = (await response.get_json())["data"]["id"]
    result = await process_task(job_context(app), task_id, account.id)
    assert result == {"status": "success", "task_id": task_id, "new_description": "d [Processed]"}


@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_processing_drops_the_owners_cached_detail_and_list(make_apps, backend):
    (app,) = await make_apps(1, backend=backend)
    account = await create_account(app)
    client = app.test_client()
    response = await client.post("/api/tasks/", headers=account.headers, json={"title": "t"})
    task_id = (await response.get_json())["data"]["id"]
    for url in (f"/api/tasks/{task_id}", "/api/tasks/"):
        await client.get(url, headers=account.headers)  # now cached
    await process_task(job_context(app), task_id, account.id)
    detail = await client.get(f"/api/tasks/{task_id}", headers=account.headers)
    listed = await client.get("/api/tasks/", headers=account.headers)
    assert (await detail.get_json())["data"]["status"] == "completed"
    assert [t["status"] for t in (await listed.get_json())["data"]] == ["completed"]
