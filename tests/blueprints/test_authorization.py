"""The contract's Authorization section: owners act on their own tasks, admins on all."""

from __future__ import annotations

import pytest

ACTIONS = [
    ("get", None),
    ("put", {"title": "taken over", "status": "completed"}),
    ("patch", {"status": "completed"}),
    ("delete", None),
]


async def _call(api, method: str, path: str, body):
    call = getattr(api, method)
    return await (call(path, json=body) if body is not None else call(path))


@pytest.mark.parametrize(("method", "body"), ACTIONS)
async def test_user_acting_on_another_users_task_is_403_and_changes_nothing(
    client_as, method, body
):
    owner, intruder = await client_as(), await client_as()
    task = await owner.create_task(title="private", description="mine")
    response = await _call(intruder, method, f"/api/tasks/{task['id']}", body)
    assert response.status_code == 403
    error = (await response.get_json())["error"]
    assert error == {"code": "forbidden", "message": "You are not allowed to access this task."}
    after = (await (await owner.get(f"/api/tasks/{task['id']}")).get_json())["data"]
    assert after == task


@pytest.mark.parametrize(("method", "body"), ACTIONS)
async def test_missing_task_is_404_for_every_action(client_as, method, body):
    api = await client_as()
    response = await _call(api, method, "/api/tasks/424242", body)
    assert response.status_code == 404
    assert (await response.get_json())["error"]["message"] == "Task with ID 424242 not found"


@pytest.mark.parametrize(("method", "body"), ACTIONS)
async def test_admin_may_act_on_any_task(client_as, method, body):
    owner, admin = await client_as(), await client_as("admin")
    task = await owner.create_task()
    response = await _call(admin, method, f"/api/tasks/{task['id']}", body)
    assert response.status_code == (204 if method == "delete" else 200)


async def test_admin_edit_keeps_the_original_owner(client_as):
    owner, admin = await client_as(), await client_as("admin")
    task = await owner.create_task()
    response = await admin.patch(f"/api/tasks/{task['id']}", json={"title": "by admin"})
    assert (await response.get_json())["data"]["owner_id"] == owner.account.id


async def test_user_lists_only_their_own_tasks(client_as):
    alice, bob = await client_as(), await client_as()
    mine = await alice.create_task(title="alice's")
    await bob.create_task(title="bob's")
    data = (await (await alice.get("/api/tasks/")).get_json())["data"]
    assert [t["id"] for t in data] == [mine["id"]]


async def test_admin_lists_every_task(client_as):
    alice, bob, admin = await client_as(), await client_as(), await client_as("admin")
    ids = {(await alice.create_task())["id"], (await bob.create_task())["id"]}
    data = (await (await admin.get("/api/tasks/")).get_json())["data"]
    assert {t["id"] for t in data} == ids


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/tasks/"),
        ("post", "/api/tasks/"),
        ("get", "/api/tasks/1"),
        ("put", "/api/tasks/1"),
        ("patch", "/api/tasks/1"),
        ("delete", "/api/tasks/1"),
        ("get", "/auth/me"),
        ("post", "/auth/refresh"),
    ],
)
async def test_every_protected_route_needs_a_token(client, method, path):
    response = await getattr(client, method)(path, json={"title": "x"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_authentication_is_checked_before_the_body(client):
    """An unauthenticated invalid body is 401, not 400/422."""
    response = await client.post(
        "/api/tasks/", data=b"{", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401
