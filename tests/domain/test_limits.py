"""The in-process GCRA's figures, exactly, read off the headers while the limiter's clock stands
still (the Redis script keeps Redis's own clock; its figures are checked in test_ratelimit)."""

from __future__ import annotations

import pytest

from taskapi.domain.limits import address_key
from taskapi.infra.memory import gcra, login_failures
from tests.conftest import create_account

LIMITED = {"ratelimit_enabled": True, "ratelimit_default": "2 per minute"}


class StillClock:
    """Stands in for the `time` module of the in-process limiters: time moves only when told."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


def hold_clock(monkeypatch: pytest.MonkeyPatch, still: StillClock) -> None:
    """The in-process limiters (rate limits, failed logins) read `still` for the time."""
    monkeypatch.setattr(gcra, "time", still)
    monkeypatch.setattr(login_failures, "time", still)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> StillClock:
    still = StillClock()
    hold_clock(monkeypatch, still)
    return still


def figures(response) -> tuple[int, str, str, str, str | None]:
    headers = response.headers
    return (
        response.status_code,
        headers["RateLimit-Limit"],
        headers["RateLimit-Remaining"],
        headers["RateLimit-Reset"],
        headers.get("Retry-After"),
    )


async def test_two_per_minute_spaces_requests_thirty_seconds_apart(make_apps, clock):
    (app,) = await make_apps(1, backend="memory", **LIMITED)
    account = await create_account(app)
    client = app.test_client()

    async def me() -> tuple[int, str, str, str, str | None]:
        return figures(await client.get("/auth/me", headers=account.headers))

    assert await me() == (200, "2", "1", "30", None)
    assert await me() == (200, "2", "0", "60", None)
    assert await me() == (429, "2", "0", "60", "30")
    clock.now += 29.999  # one millisecond short of the emission interval: still refused
    assert (await me())[0] == 429
    clock.now += 0.001  # exactly one interval later: one request is allowed again
    assert await me() == (200, "2", "0", "60", None)
    assert (await me())[0] == 429


async def test_a_refused_request_does_not_use_up_the_budget(make_apps, clock):
    (app,) = await make_apps(1, backend="memory", **LIMITED)
    account = await create_account(app)
    client = app.test_client()
    for _ in range(2):
        assert (await client.get("/auth/me", headers=account.headers)).status_code == 200
    for _ in range(5):
        assert (await client.get("/auth/me", headers=account.headers)).status_code == 429
    clock.now += 60
    statuses = [(await client.get("/auth/me", headers=account.headers)).status_code for _ in "abc"]
    assert statuses == [200, 200, 429]


async def test_the_headers_describe_the_shortest_limit(make_apps, clock):
    (app,) = await make_apps(
        1,
        backend="memory",
        ratelimit_enabled=True,
        ratelimit_default="100 per hour",
        ratelimit_login="3 per minute",
    )
    client = app.test_client()
    attempt = {"username": "nobody", "password": "wrong-password"}
    response = await client.post("/auth/login", json=attempt)
    assert response.status_code == 401
    assert figures(response)[1:4] == ("3", "2", "20")


async def test_a_named_limit_adds_to_the_defaults(make_apps, clock):
    (app,) = await make_apps(
        1,
        backend="memory",
        ratelimit_enabled=True,
        ratelimit_default="2 per minute",
        ratelimit_login="5 per minute",
    )
    client = app.test_client()
    attempt = {"username": "nobody", "password": "wrong-password"}
    statuses = [(await client.post("/auth/login", json=attempt)).status_code for _ in "abc"]
    assert statuses == [401, 401, 429]


@pytest.mark.parametrize(
    ("address", "prefix", "key"),
    [
        ("203.0.113.9", 64, "ip:203.0.113.9"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64, "ip:2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", 64, "ip:2001:db8:1:2::/64"),
        ("2001:DB8:1:2::1", 64, "ip:2001:db8:1:2::/64"),  # one spelling per network
        ("2001:db8:1:3::1", 64, "ip:2001:db8:1:3::/64"),
        ("2001:db8:1:2::1", 48, "ip:2001:db8:1::/48"),
        ("2001:db8:1:2::1", 128, "ip:2001:db8:1:2::1/128"),
        ("::ffff:203.0.113.9", 64, "ip:203.0.113.9"),  # IPv4-mapped: the IPv4 address
        ("::ffff:cb00:7109", 64, "ip:203.0.113.9"),
        ("fe80::1%eth0", 64, "ip:fe80::/64"),
        ("::1", 64, "ip:::/64"),
        ("unknown", 64, "ip:unknown"),
        ("not an address|x", 64, "ip:not%20an%20address%7Cx"),  # never holds a `|`
    ],
)
def test_an_address_key_is_the_ipv4_address_or_the_ipv6_network(address, prefix, key):
    assert address_key(address, prefix) == key
