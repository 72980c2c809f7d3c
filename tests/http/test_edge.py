"""The edge (taskapi/http/edge.py): a cached read of a caller the process knows is answered
before the framework, exactly as the framework answers it; everything else goes on untouched,
and nothing is counted twice."""

from __future__ import annotations

import pytest
from quart import Quart

from taskapi.http.edge import CachedReads
from tests.conftest import create_account

BACKENDS = ["redis", "memory"]
REMEMBERED = {"user_cache_seconds": 60}  # the caller's role known: the edge can take its reads


def _edge_of(app: Quart) -> CachedReads:
    edge = app.asgi_app
    while not isinstance(edge, CachedReads):
        edge = edge.app  # type: ignore[attr-defined]  # the trusted-proxy middleware, outside
    return edge


def _counting_framework_requests(app: Quart) -> list[str]:
    """The paths of the requests that reached the framework's before-request step."""
    from quart import request

    seen: list[str] = []

    async def count() -> None:
        seen.append(request.path)

    app.before_request_funcs.setdefault(None, []).insert(0, count)  # before the gate's step
    return seen


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_hit_of_a_known_caller_never_reaches_the_framework(make_apps, backend):
    (app,) = await make_apps(1, backend=backend, **REMEMBERED)
    account = await create_account(app)
    client = app.test_client()
    task = await client.post("/api/tasks/", headers=account.headers, json={"title": "t"})
    url = f"/api/tasks/{(await task.get_json())['data']['id']}"
    seen = _counting_framework_requests(app)
    miss = await client.get(url, headers=account.headers)  # the role is now remembered
    hit = await client.get(url, headers=account.headers)
    assert (miss.headers["X-Cache"], hit.headers["X-Cache"]) == ("MISS", "HIT")
    assert seen == [url]  # the miss only


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("path", ["/api/tasks/{id}", "/api/tasks/?status=pending&limit=5"])
async def test_the_edges_hit_is_the_frameworks_hit(make_apps, backend, path):
    """Same status, body and headers (but for the per-request id and figures) as a hit the
    framework serves, which it does when the caller's role must be read first."""
    edge_app, framework_app = await make_apps(2, backend=backend, **REMEMBERED)
    account = await create_account(edge_app)
    task = await edge_app.test_client().post(
        "/api/tasks/", headers=account.headers, json={"title": "t"}
    )
    url = path.format(id=(await task.get_json())["data"]["id"])
    hits = []
    for app, role_cache in ((edge_app, 60.0), (framework_app, 0.0)):
        app.extensions["taskapi"].roles.ttl = role_cache
        client = app.test_client()
        await client.get(url, headers=account.headers)  # cached (if not already), role read
        seen = _counting_framework_requests(app)
        hit = await client.get(url, headers=account.headers)
        assert hit.headers["X-Cache"] == "HIT"
        assert bool(seen) == (role_cache == 0.0)  # the edge took it, or the framework did
        hits.append(hit)
    by_edge, by_framework = hits
    assert by_edge.status_code == by_framework.status_code == 200
    assert await by_edge.get_data() == await by_framework.get_data()
    varying = {"x-request-id", "ratelimit-remaining", "ratelimit-reset"}
    assert {k.lower(): v for k, v in by_edge.headers.items() if k.lower() not in varying} == {
        k.lower(): v for k, v in by_framework.headers.items() if k.lower() not in varying
    }
    assert set(by_edge.headers.keys(lower=True)) == set(by_framework.headers.keys(lower=True))


def _framework_route(app: Quart, path: str) -> tuple[str, dict] | None:
    """The cached read the framework routes a GET of `path` to, if it is one."""
    adapter = app.url_map.bind("localhost")
    try:
        endpoint, values = adapter.match(path, method="GET")
    except Exception:  # a 404, 405 or redirect: not a cached read
        return None
    if endpoint not in {"tasks.get_task", "tasks.list_tasks"}:
        return None
    if values.get("task_id", 0) > 2**31 - 1:
        return None  # answered 404 by the URL value preprocessor
    return endpoint, values


@pytest.mark.parametrize(
    "path",
    ["/api/tasks/", "/api/tasks", "/api/tasks/7", "/api/tasks/0007", "/api/tasks/2147483647"],
)
async def test_the_edge_takes_the_cached_reads_as_the_framework_routes_them(app, path):
    assert _edge_of(app).match(path) == _framework_route(app, path) is not None


@pytest.mark.parametrize(
    "path",
    [
        "/api/tasks/2147483648",  # past the id columns: the framework's 404
        "/api/tasks/99999999999",
        "/api/tasks/\u0661",  # an Arabic-Indic digit: not an id
        "/api/tasks/7/",
        "/api/tasks/7/process",
        "/api/tasks/process/status/abc",
        "/api/tasks//",  # the framework may serve it; the edge leaves it to the framework
        "/auth/me",
        "/health",
    ],
)
async def test_the_edge_leaves_every_other_path_to_the_framework(app, path):
    assert _edge_of(app).match(path) is None


async def test_a_refusal_at_the_edge_is_counted_once_and_rendered_by_the_framework(make_apps):
    (app,) = await make_apps(
        1, ratelimit_enabled=True, ratelimit_default="2 per minute", **REMEMBERED
    )
    account = await create_account(app)
    client = app.test_client()
    assert (await client.get("/api/tasks/", headers=account.headers)).status_code == 200
    second = await client.get("/api/tasks/", headers=account.headers)  # the edge's hit
    assert (
        second.status_code,
        second.headers["X-Cache"],
        second.headers["RateLimit-Remaining"],
    ) == (
        200,
        "HIT",
        "0",
    )
    refused = await client.get("/api/tasks/", headers=account.headers)
    assert refused.status_code == 429
    body = await refused.get_json()
    assert (body["status"], body["error"]["code"]) == ("error", "rate_limited")
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["X-Request-ID"] and refused.headers["Cache-Control"] == "no-store"
