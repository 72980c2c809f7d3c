"""A JWT key rotation across rolling restarts of two real instances behind nginx, under load:
no token that some key still verifies is ever refused, and once the old key is dropped its
tokens are refused by every instance with the contract's 401."""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import secrets
import subprocess
import threading
import time
from collections import Counter

import jwt
import pytest

from taskapi.settings import PROJECT_ROOT
from tests.deployment import BIN, ApiInstance, HttpsClient, Nginx, production_env
from tests.services import free_port, poll

OLD, NEW = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
# The rotation, each step rolled out to one instance, then the other.
STEPS = (
    ("accept the new key", {"TASKAPI_JWT_SECRET_KEY": OLD, "TASKAPI_JWT_ACCEPTED_KEYS": NEW}),
    ("sign with the new key", {"TASKAPI_JWT_SECRET_KEY": NEW, "TASKAPI_JWT_ACCEPTED_KEYS": OLD}),
    ("drop the old key", {"TASKAPI_JWT_SECRET_KEY": NEW}),
)
POSTS = ("login", "refresh (old key)", "refresh (new key)")
ROUNDS_PER_STEP = 3  # rounds of the load seen after each step, before the next one


def kid_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclasses.dataclass
class Pair:
    """A login's tokens (or a legacy copy of them), and the key that signed them."""

    access: str
    refresh: str
    signed_by: str  # OLD or NEW


@pytest.fixture
def rotation_stack(postgres_server, redis_server, tmp_path):
    """A migrated database, two instances signing with OLD, and nginx in front of them."""
    redis_server.flush()
    database_url = postgres_server.create_database(f"keys_{int(time.time() * 1000) % 10**9}")
    env = production_env(
        database_url,
        redis_server.url,
        TASKAPI_RATELIMIT_DEFAULT="100000 per minute",
        TASKAPI_RATELIMIT_LOGIN="100000 per minute",
    )
    env["TASKAPI_JWT_SECRET_KEY"] = OLD
    migrate = subprocess.run(
        [str(BIN / "taskapi"), "db", "upgrade"], cwd=PROJECT_ROOT, env=env, capture_output=True
    )
    assert migrate.returncode == 0, migrate.stderr.decode()[-2000:]
    instances = [ApiInstance(free_port(), dict(env), tmp_path / f"api{i}.log") for i in (1, 2)]
    nginx = None
    try:
        for instance in instances:
            instance.start()
        nginx = Nginx.start(tmp_path / "nginx", [i.port for i in instances], "1m")
        yield instances, nginx
    finally:
        if nginx is not None:
            nginx.stop()
        for instance in instances:
            instance.stop()


class Load:
    """Clients that log in, use and refresh every pair they hold, over and over, recording
    each answer to a token some key still verifies (`retired`: the keys no longer asked of)."""

    def __init__(self, port: int, users: list[dict[str, str]]) -> None:
        self.port = port
        self.users = users
        self.stop = threading.Event()
        self.retired: set[str] = set()
        self.lock = threading.Lock()
        self.pairs: list[Pair] = []
        self.answers: Counter[tuple[str, int, str]] = Counter()  # (what, status, code)
        self.rounds = 0
        self.threads = [threading.Thread(target=self.run, args=(user,)) for user in users]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def record(self, what: str, status: int, body: object) -> None:
        code = body.get("error", {}).get("code", "") if isinstance(body, dict) else str(body)
        with self.lock:
            self.answers[(what, status, code[:80])] += 1

    def run(self, user: dict[str, str]) -> None:
        client = HttpsClient(self.port)
        while not self.stop.is_set():
            try:
                self.round(client, user)
            except Exception as error:  # a lost request: recorded, asserted by the test
                self.record("request", 0, repr(error))
            with self.lock:
                self.rounds += 1

    def round(self, client: HttpsClient, user: dict[str, str]) -> None:
        status, _, tokens = client.request("POST", "/auth/login", user)
        self.record("login", status, tokens)
        if status == 200:
            pair = Pair(tokens["access_token"], tokens["refresh_token"], signer(tokens))
            with self.lock:
                self.pairs.append(pair)
                if len(self.pairs) == 1:  # the first, also as a token from before `kid`
                    self.pairs.append(legacy(pair))
        with self.lock:
            held = [p for p in self.pairs[:2] + self.pairs[-6:] if p.signed_by not in self.retired]
        for pair in held:
            status, _, body = client.request("GET", "/auth/me", None, pair.access)
            self.record(f"access ({which(pair)})", status, body)
            status, _, body = client.request("POST", "/auth/refresh", None, pair.refresh)
            self.record(f"refresh ({which(pair)})", status, body)
            if status == 200:
                access = body["access_token"]
                if key_of(access) not in self.retired:
                    status, _, body = client.request("GET", "/auth/me", None, access)
                    self.record("refreshed access", status, body)

    def wait_rounds(self, count: int) -> None:
        with self.lock:
            target = self.rounds + count * len(self.threads)
        poll(lambda: self.rounds >= target, f"{count} rounds of load", deadline=120)


def signer(tokens: dict[str, str]) -> str:
    return key_of(tokens["access_token"])


def key_of(token: str) -> str:
    kid = jwt.get_unverified_header(token).get("kid")
    return {kid_of(OLD): OLD, kid_of(NEW): NEW}[kid]


def which(pair: Pair) -> str:
    return "old key" if pair.signed_by == OLD else "new key"


def legacy(pair: Pair) -> Pair:
    """The pair as the code before key ids issued it: the same claims, signed, without `kid`."""
    tokens = [
        jwt.encode(jwt.decode(t, options={"verify_signature": False}), pair.signed_by, "HS256")
        for t in (pair.access, pair.refresh)
    ]
    return Pair(tokens[0], tokens[1], pair.signed_by)


def direct(port: int, method: str, path: str, token: str) -> tuple[int, dict[str, object]]:
    """One request straight to an instance, past nginx."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, headers={"Authorization": f"Bearer {token}"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_a_key_rotation_across_rolling_restarts_refuses_no_valid_token(rotation_stack):
    instances, nginx = rotation_stack
    setup = HttpsClient(nginx.https_port)
    users = []
    for n in range(2):
        user = {"username": f"rotor{n}", "email": f"rotor{n}@example.com", "password": "pw-rotor-9"}
        assert setup.request("POST", "/auth/register", user)[0] == 201
        users.append({"username": user["username"], "password": user["password"]})
    with Load(nginx.https_port, users) as load:
        load.wait_rounds(ROUNDS_PER_STEP)
        for name, keys in STEPS:
            if name == "drop the old key":
                with load.lock:
                    load.retired.add(OLD)  # its tokens are refused from here on, by design
            for instance in instances:
                instance.stop()
                instance.env = {**instance.env, "TASKAPI_JWT_ACCEPTED_KEYS": "", **keys}
                instance.start()
                load.wait_rounds(ROUNDS_PER_STEP)
    refused = {k: n for k, n in load.answers.items() if k[1] == 401}
    assert refused == {}, refused
    # Besides: a POST that nginx had sent on a keep-alive connection just as the instance
    # stopping closed it is 502, and nginx retries no POST (not idempotent). Not a refusal of
    # the token; counted, and rare (these runs saw 0 to 2 of about 1,500 POSTs).
    lost = {k: n for k, n in load.answers.items() if k[1] not in (200, 401)}
    assert all(status == 502 and what in POSTS for what, status, _ in lost), lost
    assert sum(lost.values()) <= 5, lost
    seen = {what for what, _, _ in load.answers}
    expected = {"login", "access (old key)", "refresh (old key)", "refreshed access"}
    assert expected | {"access (new key)", "refresh (new key)"} <= seen, seen
    assert sum(load.answers.values()) > 200, load.answers

    old_pairs = [p for p in load.pairs if p.signed_by == OLD]
    new_pairs = [p for p in load.pairs if p.signed_by == NEW]
    assert len(old_pairs) >= 2 and new_pairs  # the old ones include the legacy copy, no kid
    for port in (i.port for i in instances):
        for pair in old_pairs[:2] + old_pairs[-1:]:
            for method, path, token in (
                ("GET", "/auth/me", pair.access),
                ("POST", "/auth/refresh", pair.refresh),
            ):
                assert direct(port, method, path, token) == (
                    401,
                    {
                        "status": "error",
                        "error": {"message": "Invalid token.", "code": "token_invalid"},
                    },
                )
        assert direct(port, "GET", "/auth/me", new_pairs[0].access)[0] == 200
        assert direct(port, "POST", "/auth/refresh", new_pairs[0].refresh)[0] == 200
