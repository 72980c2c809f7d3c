"""The documentation routes exist and describe every API route (the full check is issue 5's)."""

from __future__ import annotations


async def test_openapi_lists_every_api_route(app, client):
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec = await response.get_json()
    assert spec["info"]["title"] == "taskapi"
    assert set(spec["paths"]) == {
        "/health",
        "/health/ready",
        "/auth/register",
        "/auth/login",
        "/auth/refresh",
        "/auth/me",
        "/auth/logout",
        "/api/tasks/",
        "/api/tasks/{task_id}",
        "/api/tasks/{task_id}/process",
        "/api/tasks/process/status/{job_id}",
    }
    assert spec["paths"]["/api/tasks/{task_id}"]["get"]["security"] == [{"bearerAuth": []}]


async def test_docs_pages_are_served(client):
    for path in ("/docs", "/redocs"):
        response = await client.get(path)
        assert response.status_code == 200
        assert response.mimetype == "text/html"


async def test_options_is_an_empty_204_with_allow(client):
    response = await client.options("/api/tasks/")
    assert response.status_code == 204
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    assert await response.get_data() == b""
