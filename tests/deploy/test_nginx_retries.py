"""nginx's retry policy (config/nginx/taskapi.conf), through the real nginx and two real taskapi
instances, one of which answers 503 because its database is unreachable: no request that an
instance answered is sent to the other (a 503 is the client's to retry, after Retry-After, and
a POST is never replayed); a request an instance could not take (its port closed) goes to the
other, POSTs included."""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from collections import Counter

import pytest

from taskapi.settings import PROJECT_ROOT
from tests.deployment import BIN, ApiInstance, HttpsClient, Nginx, production_env
from tests.services import free_port, poll
from tests.test_json_logs import json_lines

ROUNDS = 6  # requests of each kind: round robin sends half of them to each instance


@pytest.fixture
def two_instances(postgres_server, redis_server, tmp_path):
    """Instance `good` on the database, instance `down` on a database port where nothing
    listens (it answers 503 to anything that needs the database), nginx over both; and a
    token from `good`."""
    redis_server.flush()
    database_url = postgres_server.create_database(f"retries_{int(time.time() * 1000) % 10**9}")
    env = production_env(
        database_url,
        redis_server.url,
        TASKAPI_LOG_FORMAT="json",  # access lines with their request ids, to count
        TASKAPI_RATELIMIT_DEFAULT="100000 per minute",
    )
    migrate = subprocess.run(
        [str(BIN / "taskapi"), "db", "upgrade"], cwd=PROJECT_ROOT, env=env, capture_output=True
    )
    assert migrate.returncode == 0, migrate.stderr.decode()[-2000:]
    unreachable = f"postgresql://taskapi:unused@127.0.0.1:{free_port()}/taskapi"
    good = ApiInstance(free_port(), env, tmp_path / "good.log")
    down = ApiInstance(free_port(), {**env, "DATABASE_URL": unreachable}, tmp_path / "down.log")
    nginx = None
    try:
        good.start()
        down.start()
        nginx = Nginx.start(tmp_path / "nginx", [good.port, down.port], "1m")
        yield good, down, nginx, _token(good.port)
    finally:
        if nginx is not None:
            nginx.stop()
        good.stop()
        down.stop()


def _token(port: int) -> str:
    account = {"username": "retrier", "email": "r@example.com", "password": "retry-password"}
    for path in ("/auth/register", "/auth/login"):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("POST", path, json.dumps(account), {"Content-Type": "application/json"})
        answer = connection.getresponse()
        body = json.loads(answer.read())
    return body["access_token"]


def _seen(instance: ApiInstance) -> Counter[str]:
    """How many times each request id reached the instance (its access lines)."""
    lines = json_lines(instance.log)
    return Counter(e["request_id"] for e in lines if e["logger"] == "hypercorn.access")


def _answers(nginx: Nginx, method: str, path: str, token: str, body: object = None) -> list:
    """ROUNDS requests through nginx, each on a new connection: (status, request id) each."""
    answers = []
    for _ in range(ROUNDS):
        status, headers, _ = HttpsClient(nginx.https_port).request(method, path, body, token)
        answers.append((status, headers["x-request-id"]))
    return answers


def _reached_once(answers: list, good: ApiInstance, down: ApiInstance) -> None:
    """Each request reached one instance, once: a 503 the one without a database, any other
    answer the other one."""
    ids = {request_id for _, request_id in answers}

    def logged() -> bool:
        return ids <= set(_seen(good)) | set(_seen(down))

    poll(logged, "the access lines of every request", 30)
    on_good, on_down = _seen(good), _seen(down)
    for status, request_id in answers:
        counts = (on_good[request_id], on_down[request_id])
        assert counts == ((0, 1) if status == 503 else (1, 0)), (status, request_id, counts)


def test_a_post_answered_503_is_not_replayed_on_the_other_instance(two_instances):
    good, down, nginx, token = two_instances
    answers = _answers(nginx, "POST", "/api/tasks/", token, {"title": "once"})
    statuses = Counter(status for status, _ in answers)
    assert statuses == {201: ROUNDS // 2, 503: ROUNDS // 2}, answers
    _reached_once(answers, good, down)
    connection = http.client.HTTPConnection("127.0.0.1", good.port, timeout=10)
    connection.request("GET", "/api/tasks/", headers={"Authorization": f"Bearer {token}"})
    listed = json.loads(connection.getresponse().read())["data"]
    assert len(listed) == ROUNDS // 2  # the 201s, each written once


def test_a_get_answered_503_is_the_clients_to_retry(two_instances):
    """Not retried on the other instance by nginx either (it would have answered 200 from the
    same shared database being well, but our 503s come from parts every instance shares)."""
    good, down, nginx, token = two_instances
    answers = _answers(nginx, "GET", "/api/tasks/", token)
    assert Counter(status for status, _ in answers) == {200: ROUNDS // 2, 503: ROUNDS // 2}
    _reached_once(answers, good, down)


def test_an_instance_that_cannot_be_reached_is_skipped_posts_included(two_instances):
    """The one without a database stopped (its port refuses): every request, POSTs too, is
    answered by the other, once (a refused connection carried nothing)."""
    good, down, nginx, token = two_instances
    down.stop()
    answers = _answers(nginx, "POST", "/api/tasks/", token, {"title": "elsewhere"})
    assert [status for status, _ in answers] == [201] * ROUNDS
    poll(lambda: {i for _, i in answers} <= set(_seen(good)), "the access lines", 30)
    on_good = _seen(good)
    assert [on_good[request_id] for _, request_id in answers] == [1] * ROUNDS
