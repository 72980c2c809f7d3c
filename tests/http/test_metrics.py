"""GET /metrics on the API: what it counts (requests by route template, cache hits and misses,
429s, idempotent replays, Redis errors, the pool and the outbox), and to whom it answers (the
socket's peer in TASKAPI_METRICS_ALLOW; 404 in the envelope to anyone else)."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from taskapi.app import create_app
from taskapi.infra import metrics
from tests.asgi import asgi_request, asgi_request_left
from tests.conftest import ROLE_CACHE_IDS, ROLE_CACHE_SECONDS, create_account, replaced
from tests.services import free_port

LOOPBACK = {"client": ("127.0.0.1", 50000)}
ELSEWHERE = {"client": ("198.51.100.7", 40000)}
DETAIL = "/api/tasks/<task_id:task_id>"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# The role cache off: every read goes through the gate; on: a known caller's cached read is
# taken by the edge (http/edge.py) before the framework. Both must be counted alike.
both_paths = pytest.mark.parametrize("user_cache_seconds", ROLE_CACHE_SECONDS, ids=ROLE_CACHE_IDS)


def parsed(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(app, scope: dict[str, Any] = LOOPBACK) -> tuple[int, str]:
    response = await app.test_client().get("/metrics", scope_base=scope)
    return response.status_code, await response.get_data(as_text=True)


async def samples(app) -> Samples:
    status, text = await scrape(app)
    assert status == 200, text
    return parsed(text)


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def requests(found: Samples, route: str, status: str, method: str = "GET") -> float:
    labels = {"route": route, "method": method, "status": status}
    return value(found, "taskapi_http_requests_total", **labels)


async def test_metrics_are_the_text_format_to_a_loopback_peer(make_apps):
    (app,) = await make_apps(1)
    response = await app.test_client().get("/metrics", scope_base=LOOPBACK)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    names = {
        family.name
        for family in text_string_to_metric_families(await response.get_data(as_text=True))
    }
    assert {
        "taskapi_http_requests",
        "taskapi_db_pool_checked_out",
        "taskapi_outbox_pending",
    } <= names


@both_paths
async def test_a_request_is_counted_by_its_route_template_never_its_path(make_apps):
    (app,) = await make_apps(1)
    account = await create_account(app)
    before = await samples(app)
    response = await app.test_client().get("/api/tasks/12345", headers=account.headers)
    assert response.status_code == 404
    _, text = await scrape(app)
    after = parsed(text)
    assert requests(after, DETAIL, "404") == requests(before, DETAIL, "404") + 1
    duration = "taskapi_http_request_duration_seconds_count"
    assert value(after, duration, route=DETAIL, method="GET") >= 1
    assert "12345" not in text


async def test_a_path_of_no_route_is_counted_as_unmatched(make_apps):
    (app,) = await make_apps(1)
    before = await samples(app)
    for path in ("/no/such/page", "/users/42/secrets"):
        assert (await app.test_client().get(path)).status_code == 404
    _, text = await scrape(app)
    assert requests(parsed(text), "unmatched", "404") == requests(before, "unmatched", "404") + 2
    assert "secrets" not in text and "/no/such" not in text


async def test_an_unknown_method_is_counted_as_other(make_apps):
    (app,) = await make_apps(1)
    before = await samples(app)
    response = await app.test_client().open("/health", method="BREW")
    assert response.status_code == 405
    after = await samples(app)
    assert (
        requests(after, "unmatched", "405", "OTHER")
        == requests(before, "unmatched", "405", "OTHER") + 1
    )


async def test_a_request_whose_client_left_before_its_answer_counts_as_499_not_500(make_apps):
    """The framework stops a request whose client has gone (no answer is sent): counted as
    nginx logs it, 499, so that clients giving up never look like server errors."""
    (app,) = await make_apps(1, user_cache_seconds=0)
    account = await create_account(app)
    before = await samples(app)
    assert await asgi_request_left(app, "GET", "/auth/me", account.headers) == []
    answered = await asgi_request(app, "GET", "/auth/me", account.headers)
    assert answered.status == 200  # the client stayed: its disconnect after the answer is fine
    after = await samples(app)
    assert requests(after, "/auth/me", "499") == requests(before, "/auth/me", "499") + 1
    assert requests(after, "/auth/me", "500") == requests(before, "/auth/me", "500")
    assert requests(after, "/auth/me", "200") == requests(before, "/auth/me", "200") + 1


@both_paths
async def test_a_cached_read_counts_one_miss_then_one_hit(make_apps):
    (app,) = await make_apps(1)
    account = await create_account(app)
    client = app.test_client()
    created = await client.post("/api/tasks/", headers=account.headers, json={"title": "t"})
    path = f"/api/tasks/{(await created.get_json())['data']['id']}"
    before = await samples(app)
    first = await client.get(path, headers=account.headers)
    second = await client.get(path, headers=account.headers)
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    after = await samples(app)
    for name in ("taskapi_cache_misses_total", "taskapi_cache_hits_total"):
        assert value(after, name, kind="detail") == value(before, name, kind="detail") + 1
    assert requests(after, DETAIL, "200") == requests(before, DETAIL, "200") + 2


async def test_a_429_is_counted_as_a_refusal_and_by_its_status(make_apps):
    (app,) = await make_apps(1, ratelimit_enabled=True, ratelimit_default="1 per minute")
    account = await create_account(app)
    client = app.test_client()
    before = await samples(app)
    assert (await client.get("/auth/me", headers=account.headers)).status_code == 200
    assert (await client.get("/auth/me", headers=account.headers)).status_code == 429
    after = await samples(app)
    refusals = "taskapi_ratelimit_refusals_total"
    assert value(after, refusals, limit="request") == value(before, refusals, limit="request") + 1
    assert requests(after, "/auth/me", "429") == requests(before, "/auth/me", "429") + 1


async def test_an_idempotent_replay_is_counted(make_apps):
    (app,) = await make_apps(1)
    account = await create_account(app)
    client = app.test_client()
    headers = {**account.headers, "Idempotency-Key": "metrics-replay-1"}
    before = await samples(app)
    for _ in range(2):
        response = await client.post("/api/tasks/", headers=headers, json={"title": "once"})
        assert response.status_code == 201
    assert response.headers["Idempotent-Replayed"] == "true"
    after = await samples(app)
    replays = "taskapi_idempotent_replays_total"
    assert value(after, replays) == value(before, replays) + 1


async def test_the_pool_and_the_outbox_are_read_at_scrape_time(make_apps):
    """With Redis the API relays nothing (the worker does): a create's e-mail stays pending in
    the outbox, and the scrape says so; the pool's size is the setting's."""
    (app,) = await make_apps(1)
    account = await create_account(app)
    response = await app.test_client().post(
        "/api/tasks/", headers=account.headers, json={"title": "its e-mail waits"}
    )
    assert response.status_code == 201
    found = await samples(app)
    assert value(found, "taskapi_outbox_pending") == 1
    assert value(found, "taskapi_outbox_oldest_seconds") > 0
    settings = app.extensions["taskapi"].settings
    assert value(found, "taskapi_db_pool_size") == settings.db_pool_size


async def test_redis_errors_and_the_open_breaker_are_counted(shared_settings):
    """An API whose Redis does not answer: its calls fail (the first at start-up), each
    failure is counted under its component, and the breaker reads open."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(replaced(shared_settings, redis_url=dead))
    before = parsed(metrics.exposition().decode())  # this process's, before the app starts
    async with app.test_app():
        account = await create_account(app)
        response = await app.test_client().get("/api/tasks/", headers=account.headers)
        assert response.status_code == 200  # served from the database
        after = await samples(app)
    errors = [
        key
        for key, seen in after.items()
        if key[0] == "taskapi_redis_errors_total" and seen > before.get(key, 0.0)
    ]
    assert errors, "no Redis error counted"
    assert value(after, "taskapi_redis_breaker_open") == 1


async def test_a_peer_outside_the_allow_list_gets_the_404_envelope(make_apps):
    (app,) = await make_apps(1)
    status, text = await scrape(app, ELSEWHERE)
    assert status == 404
    response = await app.test_client().get("/metrics", scope_base=ELSEWHERE)
    body = await response.get_json()
    assert body == {
        "status": "error",
        "error": {"message": "The requested URL was not found on the server.", "code": "not_found"},
    }
    assert "taskapi_" not in text


async def test_the_allow_list_is_the_sockets_peer_never_x_forwarded_for(make_apps):
    """A trusted proxy's X-Forwarded-For naming a loopback client does not open /metrics to a
    peer outside the list; the list's own networks open it."""
    (app,) = await make_apps(1, trusted_proxies="198.51.100.0/24")
    forged = await app.test_client().get(
        "/metrics", scope_base=ELSEWHERE, headers={"X-Forwarded-For": "127.0.0.1"}
    )
    assert forged.status_code == 404
    (listed,) = await make_apps(1, metrics_allow="198.51.100.0/24")
    assert (await scrape(listed, ELSEWHERE))[0] == 200
    assert (await scrape(listed, LOOPBACK))[0] == 404  # the list replaces the default
    assert (await scrape(listed, {"client": None}))[0] == 404  # no address: not allowed


async def test_an_ipv4_peer_written_as_ipv6_counts_as_its_ipv4_address(make_apps):
    (app,) = await make_apps(1)
    assert (await scrape(app, {"client": ("::ffff:127.0.0.1", 50000)}))[0] == 200
    assert (await scrape(app, {"client": ("::1", 50000)}))[0] == 200


async def test_metrics_turned_off_serve_nothing(make_apps):
    (app,) = await make_apps(1, metrics_enabled=False)
    assert (await scrape(app))[0] == 404
