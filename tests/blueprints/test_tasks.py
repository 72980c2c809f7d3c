"""The seed's own tests/test_tasks.py (section 9), ported to the async app."""

from __future__ import annotations

from sqlalchemy import select

from taskapi.domain.models import Task
from tests.conftest import session_on, state_of


async def _login(client, account) -> str:
    response = await client.post(
        "/auth/login", json={"username": account.username, "password": account.password}
    )
    assert response.status_code == 200
    return (await response.get_json())["access_token"]


async def test_health_check(client):
    response = await client.get("/health")
    assert response.status_code == 200
    assert (await response.get_json())["status"] == "ok"


async def test_get_tasks_unauthenticated(client):
    response = await client.get("/api/tasks/")
    assert response.status_code == 401


async def test_get_tasks_authenticated_empty(client, make_account):
    token = await _login(client, await make_account("admin"))
    response = await client.get("/api/tasks/", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    body = await response.get_json()
    assert body["status"] == "success"
    assert body["data"] == []


async def test_create_task(app, client_as):
    api = await client_as("admin")
    payload = {"title": "My Test Task", "description": "Testing creation"}
    response = await api.post("/api/tasks/", json=payload)
    assert response.status_code == 201
    body = await response.get_json()
    assert body["status"] == "success"
    assert body["data"]["title"] == payload["title"]
    assert body["data"]["description"] == payload["description"]
    assert body["data"]["status"] == "pending"
    task_id = body["data"]["id"]
    async with session_on(state_of(app).db) as session:
        stored = await session.scalar(select(Task).where(Task.id == task_id))
    assert stored is not None
    assert stored.title == payload["title"]


async def test_create_task_invalid_payload(client_as):
    api = await client_as("admin")
    response = await api.post("/api/tasks/", json={"description": "Only description"})
    assert response.status_code == 422
    body = await response.get_json()
    assert body["status"] == "error"
    assert "title" in body["error"]["details"]


async def test_get_single_task(client_as):
    api = await client_as("admin")
    task = await api.create_task(title="Task to Get", description="Details...")
    response = await api.get(f"/api/tasks/{task['id']}")
    assert response.status_code == 200
    body = await response.get_json()
    assert body["data"]["id"] == task["id"]
    assert body["data"]["title"] == "Task to Get"


async def test_get_nonexistent_task(client_as):
    api = await client_as("admin")
    response = await api.get("/api/tasks/99999")
    assert response.status_code == 404
    assert (await response.get_json())["error"]["message"] == "Task with ID 99999 not found"


async def test_delete_task_as_admin(client_as):
    user, admin = await client_as("user"), await client_as("admin")
    task = await user.create_task(title="Task to be deleted")
    response = await admin.delete(f"/api/tasks/{task['id']}")
    assert response.status_code == 204
    assert await response.get_data() == b""
    assert (await admin.get(f"/api/tasks/{task['id']}")).status_code == 404


async def test_delete_task_as_user(client_as):
    admin, user = await client_as("admin"), await client_as("user")
    task = await admin.create_task(title="Admin Task")
    response = await user.delete(f"/api/tasks/{task['id']}")
    assert response.status_code == 403
    assert (await admin.get(f"/api/tasks/{task['id']}")).status_code == 200
