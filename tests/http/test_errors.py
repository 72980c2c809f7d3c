"""Failures leave as the envelope: unexpected errors, an unreachable database."""

from __future__ import annotations

import logging

from taskapi.app import create_app
from taskapi.errors import APIError
from taskapi.infra.logs import RequestIdFilter
from tests.conftest import make_settings
from tests.services import free_port


async def test_unexpected_error_is_a_generic_500_with_details_only_in_the_log(settings, caplog):
    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internal detail: SELECT password_hash FROM users")

    caplog.handler.addFilter(RequestIdFilter())  # as the app's own handler does
    async with app.test_app():
        with caplog.at_level(logging.ERROR, logger="taskapi"):
            response = await app.test_client().get("/boom")
    assert response.status_code == 500
    body = await response.get_data(as_text=True)
    assert "secret" not in body and "Traceback" not in body and "SELECT" not in body
    error = (await response.get_json())["error"]
    assert error == {
        "message": "An internal server error occurred.",
        "code": "internal_error",
        "request_id": response.headers["X-Request-ID"],
    }
    assert "secret internal detail" in caplog.text
    (record,) = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert record.request_id == error["request_id"]


def test_api_error_401_always_carries_the_bearer_challenge():
    assert APIError(401).headers["WWW-Authenticate"] == "Bearer"


async def _unreachable_app(backend_settings):
    port = free_port()  # nothing listens here
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/nothing"
    return create_app(make_settings(url, jwt_secret_key=backend_settings.jwt_secret_key))


async def test_readiness_is_503_when_the_database_is_unreachable(settings):
    app = await _unreachable_app(settings)
    async with app.test_app():
        response = await app.test_client().get("/health/ready")
        liveness = await app.test_client().get("/health")
    assert response.status_code == 503
    body = await response.get_json()
    assert body == {
        "status": "error",
        "checks": {"database": "error", "redis": "disabled", "outbox": "error"},
        "outbox": {"pending": None, "oldest_seconds": None},
    }
    assert liveness.status_code == 200


async def test_requests_are_503_when_the_database_is_unreachable(settings):
    app = await _unreachable_app(settings)
    async with app.test_app():
        response = await app.test_client().post(
            "/auth/login", json={"username": "someone", "password": "whatever"}
        )
    assert response.status_code == 503
    error = (await response.get_json())["error"]
    assert error["code"] == "service_unavailable"
    assert "127.0.0.1" not in error["message"]


async def test_readiness_is_200_with_a_database(client):
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert await response.get_json() == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "disabled", "outbox": "ok"},
        "outbox": {"pending": 0, "oldest_seconds": 0.0},
    }
