"""TASKAPI_MAX_REQUESTS_IN_FLIGHT on a real hypercorn and PostgreSQL: with the one place held by
a request stuck in the database, the next waits; one whose client closes its connection while
it waits leaves the line at once (the place is still held), and the one after it is answered
when the place frees."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import make_settings, migrate_to_head
from tests.deployment import ApiInstance, production_env
from tests.services import PostgresServer, RedisServer, free_port, poll

PASSWORD = "In-Flight-Pass-31!"


def call(port: int, method: str, path: str, body: Any = None, token: str = "") -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    connection.request(method, path, json.dumps(body) if body is not None else None, headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, json.loads(data) if data else None


def gauges(port: int) -> dict[str, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("taskapi_http_requests_in_flight", "taskapi_http_requests_waiting"):
                found[sample.name.rsplit("_", 1)[1]] = sample.value
            if (
                sample.name == "taskapi_http_requests_total"
                and sample.labels["route"] == "/auth/me"
            ):
                found[f"/auth/me {sample.labels['status']}"] = sample.value
    return found


class TableLock:
    """psql holding ACCESS EXCLUSIVE on the tasks table (every read of it waits) until released."""

    def __init__(self, postgres: PostgresServer, database: str) -> None:
        self.psql = subprocess.Popen(
            [str(postgres.bindir / "psql"), "-h", "127.0.0.1", "-p", str(postgres.port)]
            + ["-U", "postgres", "-d", database, "-q", "-v", "ON_ERROR_STOP=1"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.psql.stdin and self.psql.stdout
        self.psql.stdin.write("BEGIN;\nLOCK TABLE tasks IN ACCESS EXCLUSIVE MODE;\n\\echo locked\n")
        self.psql.stdin.flush()
        assert self.psql.stdout.readline().strip() == "locked"

    def release(self) -> None:
        assert self.psql.stdin
        self.psql.stdin.write("COMMIT;\n\\q\n")
        self.psql.stdin.flush()
        self.psql.wait(timeout=30)


def test_a_client_leaving_the_line_is_dropped_while_the_place_is_still_held(
    postgres_server: PostgresServer, redis_server: RedisServer, tmp_path: Path
):
    database = "taskapi_in_flight"
    url = postgres_server.create_database(database)
    migrate_to_head(make_settings(url))
    redis_server.flush()
    env = production_env(
        url,
        redis_server.url,
        TASKAPI_MAX_REQUESTS_IN_FLIGHT="1",
        TASKAPI_CACHE_ENABLED="false",  # the list reads the tasks table
    )
    api = ApiInstance(free_port(), env, tmp_path / "api.log")
    api.start()
    lock = None
    try:
        port = api.port
        account = {"username": "inflight", "email": "inflight@example.com", "password": PASSWORD}
        assert call(port, "POST", "/auth/register", account)[0] == 201
        status, tokens = call(port, "POST", "/auth/login", account)
        assert status == 200
        token = tokens["access_token"]
        assert call(port, "GET", "/auth/me", token=token)[0] == 200  # its role now cached

        lock = TableLock(postgres_server, database)
        answers: dict[str, int] = {}
        stuck = threading.Thread(
            target=lambda: answers.update(held=call(port, "GET", "/api/tasks/", token=token)[0])
        )
        stuck.start()
        poll(lambda: gauges(port).get("flight") == 1, "the list to hold the one place")

        leaving = socket.create_connection(("127.0.0.1", port))
        request = f"GET /auth/me HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n"
        leaving.sendall(f"{request}\r\n".encode())
        poll(lambda: gauges(port).get("waiting") == 1, "the next request to wait")
        leaving.close()
        poll(lambda: gauges(port).get("waiting") == 0, "the one whose client left to go", 10)
        now = gauges(port)
        assert now["flight"] == 1 and "held" not in answers  # the place was never freed for it
        assert now.get("/auth/me 499") == 1

        after = threading.Thread(
            target=lambda: answers.update(after=call(port, "GET", "/auth/me", token=token)[0])
        )
        after.start()
        poll(lambda: gauges(port).get("waiting") == 1, "the one after it to wait")
        lock.release()
        lock = None
        stuck.join(timeout=60)
        after.join(timeout=60)
        assert answers == {"held": 200, "after": 200}
        final = gauges(port)
        assert final["/auth/me 200"] == 2 and final["/auth/me 499"] == 1
        assert final["flight"] == 0 and final["waiting"] == 0
    finally:
        if lock is not None:
            lock.release()
        api.stop()
