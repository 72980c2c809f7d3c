"""Proxy trust: X-Forwarded-* and X-Request-ID count only from peers in TASKAPI_TRUSTED_PROXIES."""

from __future__ import annotations

import http.client
import ipaddress
import subprocess

import pytest

from taskapi.http.proxies import forwarded_client
from taskapi.settings import PROJECT_ROOT
from tests.conftest import create_account
from tests.deployment import BIN, NGINX_ADDRESS, ApiInstance, production_env
from tests.services import free_port

TRUSTED = "10.0.0.0/8"
PROXY = {"client": ("10.1.2.3", 40000)}
DIRECT = {"client": ("198.51.100.7", 40000)}
WRONG_LOGIN = {"username": "nobody", "password": "wrong-password"}
LIMITED = {"ratelimit_enabled": True, "ratelimit_login": "5 per minute"}


def test_the_client_is_the_right_most_hop_that_is_not_a_trusted_proxy():
    trusted = (ipaddress.ip_network("10.0.0.0/8"),)
    assert forwarded_client("10.1.2.3", ["1.2.3.4, 203.0.113.9"], trusted) == "203.0.113.9"
    assert forwarded_client("10.1.2.3", ["203.0.113.9", "10.9.9.9"], trusted) == "203.0.113.9"
    assert forwarded_client("10.1.2.3", ["10.2.2.2, 10.3.3.3"], trusted) == "10.2.2.2"
    assert forwarded_client("10.1.2.3", [], trusted) == "10.1.2.3"


async def test_a_trusted_proxy_sets_client_scheme_host_and_request_id(make_apps):
    (app,) = await make_apps(1, backend="memory", trusted_proxies=TRUSTED)
    account = await create_account(app)
    response = await app.test_client().post(
        "/api/tasks/",
        json={"title": "behind nginx"},
        scope_base=PROXY,
        headers={
            **account.headers,
            "X-Forwarded-For": "203.0.113.5",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "api.example.com",
            "X-Request-ID": "nginx-7f3a",
        },
    )
    assert response.status_code == 201
    assert response.headers["Location"].startswith("https://api.example.com/api/tasks/")
    assert response.headers["X-Request-ID"] == "nginx-7f3a"


async def test_another_peers_forwarded_headers_change_nothing(make_apps):
    (app,) = await make_apps(1, backend="memory", trusted_proxies=TRUSTED)
    account = await create_account(app)
    response = await app.test_client().post(
        "/api/tasks/",
        json={"title": "direct"},
        scope_base=DIRECT,
        headers={
            **account.headers,
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "evil.example.net",
            "X-Request-ID": "chosen-by-client",
        },
    )
    assert response.status_code == 201
    assert response.headers["Location"].startswith("http://localhost/api/tasks/")
    assert response.headers["X-Request-ID"] != "chosen-by-client"


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_clients_behind_a_trusted_proxy_have_their_own_login_budgets(make_apps, backend):
    (app,) = await make_apps(1, backend=backend, trusted_proxies=TRUSTED, **LIMITED)
    client = app.test_client()
    statuses = [
        (
            await client.post(
                "/auth/login",
                json=WRONG_LOGIN,
                scope_base=PROXY,
                headers={"X-Forwarded-For": f"203.0.113.{i}"},
            )
        ).status_code
        for i in range(8)
    ]
    assert statuses == [401] * 8


@pytest.fixture
def direct_instance(tmp_path):
    """One production hypercorn with the deployment's settings (nginx's address trusted),
    reached directly from 127.0.0.1, as another container or host on its network would."""
    env = production_env(f"sqlite:///{tmp_path / 'proxies.db'}", "")
    migrate = subprocess.run(
        [str(BIN / "taskapi"), "db", "upgrade"], cwd=PROJECT_ROOT, env=env, capture_output=True
    )
    assert migrate.returncode == 0, migrate.stderr.decode()[-2000:]
    instance = ApiInstance(free_port(), env, tmp_path / "api.log")
    instance.start()
    yield instance
    instance.stop()


def _post_login(port: int, headers: dict[str, str]) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = '{"username": "nobody", "password": "wrong-password"}'
    connection.request("POST", "/auth/login", body, {"Content-Type": "application/json", **headers})
    response = connection.getresponse()
    response.read()
    return response


def test_a_direct_client_can_neither_rotate_its_address_nor_choose_its_request_id(
    direct_instance,
):
    assert NGINX_ADDRESS != "127.0.0.1"  # the client below is not the trusted proxy
    responses = [
        _post_login(
            direct_instance.port,
            {"X-Forwarded-For": f"203.0.113.{i}", "X-Request-ID": f"chosen-{i}"},
        )
        for i in range(6)
    ]
    assert [r.status for r in responses] == [401] * 5 + [429]
    assert all(r.getheader("X-Request-ID") != f"chosen-{i}" for i, r in enumerate(responses))
