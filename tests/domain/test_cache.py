"""Response caching: per-caller keys, HIT/MISS, byte-identical hits, invalidation everywhere."""

from __future__ import annotations

import pytest

from tests.conftest import ROLE_CACHE_IDS, ROLE_CACHE_SECONDS, create_account


@pytest.fixture(params=ROLE_CACHE_SECONDS, ids=ROLE_CACHE_IDS)
def user_cache_seconds(request) -> float:
    """Every test here runs with the role cache off (tests) and on (production)."""
    return request.param


BACKENDS = ["redis", "memory"]


async def _create(client, account, **fields) -> dict:
    response = await client.post(
        "/api/tasks/", headers=account.headers, json={"title": "t", **fields}
    )
    assert response.status_code == 201
    return (await response.get_json())["data"]


PER_REQUEST = {"x-cache", "x-request-id"}  # each answer's own: the cache flag and request id


def _headers_without_cache_flag(response) -> dict:
    return {k: v for k, v in response.headers.items() if k.lower() not in PER_REQUEST}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("path", ["/api/tasks/{id}", "/api/tasks/?limit=1", "/api/tasks"])
async def test_second_read_is_a_byte_identical_hit(make_apps, backend, path):
    (app,) = await make_apps(1, backend=backend)
    account = await create_account(app)
    client = app.test_client()
    task = await _create(client, account)
    await _create(client, account)
    url = path.format(id=task["id"])
    miss = await client.get(url, headers=account.headers)
    hit = await client.get(url, headers=account.headers)
    assert (miss.status_code, hit.status_code) == (200, 200)
    assert (miss.headers["X-Cache"], hit.headers["X-Cache"]) == ("MISS", "HIT")
    assert await hit.get_data() == await miss.get_data()
    assert _headers_without_cache_flag(hit) == _headers_without_cache_flag(miss)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_no_user_is_served_another_users_cached_data(make_apps, backend):
    (app,) = await make_apps(1, backend=backend)
    alice, bob = await create_account(app), await create_account(app)
    client = app.test_client()
    alices = await _create(client, alice, title="alice's secret")
    first = await client.get("/api/tasks/", headers=alice.headers)
    assert [t["title"] for t in (await first.get_json())["data"]] == ["alice's secret"]
    second = await client.get("/api/tasks/", headers=bob.headers)
    assert second.headers["X-Cache"] == "MISS"
    assert (await second.get_json())["data"] == []
    assert (
        await client.get(f"/api/tasks/{alices['id']}", headers=alice.headers)
    ).status_code == 200
    assert (await client.get(f"/api/tasks/{alices['id']}", headers=bob.headers)).status_code == 403


async def _titles(response) -> list[str]:
    return sorted(t["title"] for t in (await response.get_json())["data"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("query", ["", "?limit=10", "?status=pending"])
async def test_lists_are_cached_per_caller_when_their_versions_are_equal(make_apps, backend, query):
    """Two users and an admin who have each written once: every owner's list is at version 1,
    so only the caller's scope in the key keeps one caller's answer from another."""
    (app,) = await make_apps(1, backend=backend)
    alice, bob = await create_account(app), await create_account(app)
    admin = await create_account(app, "admin")
    client = app.test_client()
    for account in (alice, bob, admin):
        await _create(client, account, title=f"{account.username}'s secret")
    every = sorted(f"{a.username}'s secret" for a in (alice, bob, admin))
    expected = {
        alice.id: [f"{alice.username}'s secret"],
        bob.id: [f"{bob.username}'s secret"],
        admin.id: every,
    }
    url = f"/api/tasks/{query}"
    for account in (alice, bob, admin):  # each first read is the caller's own, not a neighbour's
        first = await client.get(url, headers=account.headers)
        assert first.headers["X-Cache"] == "MISS", account.role
        assert await _titles(first) == expected[account.id]
    for account in (bob, admin, alice):
        again = await client.get(url, headers=account.headers)
        assert again.headers["X-Cache"] == "HIT"
        assert await _titles(again) == expected[account.id]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_tasks_detail_is_cached_per_caller(make_apps, backend):
    """One task's detail has one version for every caller: the owner's cached answer is never
    another user's, and the admin gets its own entry."""
    (app,) = await make_apps(1, backend=backend)
    alice, bob = await create_account(app), await create_account(app)
    admin = await create_account(app, "admin")
    client = app.test_client()
    tasks = {a.id: await _create(client, a, title=f"{a.username}'s") for a in (alice, bob, admin)}
    for task in tasks.values():
        url = f"/api/tasks/{task['id']}"
        owner = next(a for a in (alice, bob, admin) if a.id == task["owner_id"])
        for _ in range(2):  # the owner's answer is now cached
            assert (await client.get(url, headers=owner.headers)).status_code == 200
        for account in (alice, bob, admin):
            response = await client.get(url, headers=account.headers)
            if account.role == "admin" or account is owner:
                assert response.status_code == 200
                assert (await response.get_json())["data"]["title"] == task["title"]
            else:
                assert response.status_code == 403, (account.username, task["title"])
                assert response.headers["X-Cache"] == "MISS"
    admins_view = await client.get(f"/api/tasks/{tasks[alice.id]['id']}", headers=admin.headers)
    assert admins_view.headers["X-Cache"] == "HIT"  # the admin's own entry, cached above


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("write", ["put", "patch", "delete"])
async def test_every_write_invalidates_detail_and_lists(make_apps, backend, write):
    (app,) = await make_apps(1, backend=backend)
    owner, admin = await create_account(app), await create_account(app, "admin")
    client = app.test_client()
    task = await _create(client, owner, title="before")
    detail, listing = f"/api/tasks/{task['id']}", "/api/tasks/"
    for account in (owner, admin):  # warm every viewer's entries
        for url in (detail, listing):
            await client.get(url, headers=account.headers)
            assert (await client.get(url, headers=account.headers)).headers["X-Cache"] == "HIT"
    if write == "put":
        body = {"title": "after", "status": "completed"}
        await client.put(detail, headers=owner.headers, json=body)
    elif write == "patch":
        await client.patch(detail, headers=owner.headers, json={"title": "after"})
    else:
        await client.delete(detail, headers=owner.headers)
    for account in (owner, admin):
        again = await client.get(detail, headers=account.headers)
        listed = await client.get(listing, headers=account.headers)
        assert again.headers["X-Cache"] == listed.headers["X-Cache"] == "MISS"
        titles = [t["title"] for t in (await listed.get_json())["data"]]
        if write == "delete":
            assert again.status_code == 404 and titles == []
        else:
            assert (await again.get_json())["data"]["title"] == "after"
            assert titles == ["after"]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_create_invalidates_the_owners_and_the_admins_lists(make_apps, backend):
    (app,) = await make_apps(1, backend=backend)
    owner, admin = await create_account(app), await create_account(app, "admin")
    client = app.test_client()
    for account in (owner, admin):
        await client.get("/api/tasks/", headers=account.headers)
    await _create(client, owner, title="new")
    for account in (owner, admin):
        listed = await client.get("/api/tasks/", headers=account.headers)
        assert listed.headers["X-Cache"] == "MISS"
        assert [t["title"] for t in (await listed.get_json())["data"]] == ["new"]


async def test_a_write_on_one_instance_invalidates_the_others_cache(make_apps):
    first, second = await make_apps(2)
    account = await create_account(first)
    one, two = first.test_client(), second.test_client()
    task = await _create(one, account, title="v1")
    url = f"/api/tasks/{task['id']}"
    await one.get(url, headers=account.headers)
    assert (await one.get(url, headers=account.headers)).headers["X-Cache"] == "HIT"
    assert (await two.get(url, headers=account.headers)).headers["X-Cache"] == "HIT"  # shared
    await two.patch(url, headers=account.headers, json={"title": "v2"})
    after = await one.get(url, headers=account.headers)
    assert after.headers["X-Cache"] == "MISS"
    assert (await after.get_json())["data"]["title"] == "v2"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_errors_are_not_cached(make_apps, backend):
    (app,) = await make_apps(1, backend=backend)
    account, other = await create_account(app), await create_account(app)
    client = app.test_client()
    others = await _create(client, other)
    for url, status in (("/api/tasks/999999", 404), (f"/api/tasks/{others['id']}", 403)):
        for _ in range(2):
            response = await client.get(url, headers=account.headers)
            assert response.status_code == status
            assert response.headers["X-Cache"] == "MISS"
