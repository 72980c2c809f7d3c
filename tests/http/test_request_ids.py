"""Request ids, security headers and structured logs."""

from __future__ import annotations

import json
import logging
import re

from taskapi.infra.logs import RequestIdFilter, configure_logging, current_request_id
from tests.conftest import create_account
from tests.services import until

PROXY = {"client": ("10.1.2.3", 40000)}  # a peer in the trusted proxies of these tests


async def test_every_response_gets_a_new_request_id(client):
    first, second = await client.get("/health"), await client.get("/nope")
    ids = [first.headers["X-Request-ID"], second.headers["X-Request-ID"]]
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in ids)
    assert ids[0] != ids[1]


async def test_a_clients_own_request_id_is_not_trusted(client):
    response = await client.get("/health", headers={"X-Request-ID": "client-chosen"})
    assert response.headers["X-Request-ID"] != "client-chosen"


async def test_a_trusted_proxys_request_id_is_kept(make_apps):
    (app,) = await make_apps(1, backend="memory", trusted_proxies="10.0.0.0/8")
    client = app.test_client()
    kept = await client.get("/health", headers={"X-Request-ID": "nginx-0a1b2c"}, scope_base=PROXY)
    assert kept.headers["X-Request-ID"] == "nginx-0a1b2c"
    hostile = await client.get(
        "/health", headers={"X-Request-ID": "bad id\twith spaces"}, scope_base=PROXY
    )
    assert hostile.headers["X-Request-ID"] != "bad id\twith spaces"


async def test_a_request_id_from_a_peer_that_is_not_a_trusted_proxy_is_replaced(make_apps):
    (app,) = await make_apps(1, backend="memory", trusted_proxies="10.0.0.0/8")
    direct = {"client": ("198.51.100.7", 40000)}
    response = await app.test_client().get(
        "/health", headers={"X-Request-ID": "nginx-0a1b2c"}, scope_base=direct
    )
    assert response.headers["X-Request-ID"] != "nginx-0a1b2c"


async def test_security_headers_hold_without_nginx(client, make_account):
    account = await make_account()
    for response in (
        await client.get("/health"),
        await client.get("/api/tasks/", headers=account.headers),
        await client.get("/api/tasks/"),
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "no-referrer"
    authed = await client.get("/api/tasks/", headers=account.headers)
    assert authed.headers["Cache-Control"] == "no-store"
    assert "Cache-Control" not in (await client.get("/health")).headers


async def test_a_jobs_log_lines_carry_the_request_id_that_queued_it(make_apps, caplog):
    (app,) = await make_apps(1, backend="memory", trusted_proxies="10.0.0.0/8")
    account = await create_account(app)
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO, logger="taskapi.infra.mail"):
        response = await app.test_client().post(
            "/api/tasks/",
            headers={**account.headers, "X-Request-ID": "trace-42"},
            json={"title": "traced"},
            scope_base=PROXY,
        )
        assert response.headers["X-Request-ID"] == "trace-42"
        await until(
            lambda: any(r.name == "taskapi.infra.mail" for r in caplog.records), "the mail log"
        )
    (record,) = [r for r in caplog.records if r.name == "taskapi.infra.mail"]
    assert record.request_id == "trace-42"


async def test_json_log_lines_are_objects_with_the_request_id(make_apps, capsys):
    """A line logged while a request is handled carries the id the app gave that request."""
    (app,) = await make_apps(1, backend="memory")
    logger = logging.getLogger("taskapi")
    saved = (logger.level, list(logger.handlers), logger.propagate)
    configure_logging("INFO", "json")
    try:
        async with app.test_request_context("/health"):
            await app.preprocess_request()  # the app's before-request steps assign the id
            request_id = current_request_id()
            logging.getLogger("taskapi.example").info("hello %s", "world")
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        logger.setLevel(saved[0])
        logger.handlers[:] = saved[1]
        logger.propagate = saved[2]
    entry = json.loads(line)
    assert entry["message"] == "hello world"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "taskapi.example"
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert entry["request_id"] == request_id
