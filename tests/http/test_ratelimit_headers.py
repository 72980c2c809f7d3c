"""The IETF draft's RateLimit-Policy and RateLimit fields (draft-ietf-httpapi-ratelimit-headers-11)
beside the RateLimit-Limit/-Remaining/-Reset fields: both parse as structured-field lists, say
the same as the old ones, and come on every limited answer, 429s, 401s and cache hits
included."""

from __future__ import annotations

import http_sf
import pytest

from taskapi.domain.limits import Decision, Quota
from taskapi.http.ratelimit_headers import policy_field, rate_headers
from taskapi.infra.stores import Limit
from tests.conftest import create_account
from tests.domain.test_limits import StillClock, hold_clock

# a short and a long window, the long one listed first (as the default limits are)
TWO_LIMITS = {"ratelimit_enabled": True, "ratelimit_default": "10 per hour;3 per minute"}
POLICY = '"10-per-3600s";q=10;w=3600, "3-per-60s";q=3;w=60'


def parsed(headers) -> tuple[dict[str, dict], dict[str, dict]]:
    """RateLimit-Policy and RateLimit as an RFC 9651 parser reads them: name → parameters."""
    policy = http_sf.parse(headers["RateLimit-Policy"].encode(), tltype="list")
    limit = http_sf.parse(headers["RateLimit"].encode(), tltype="list")
    return dict(policy), dict(limit)


def assert_agrees_with_the_old_fields(headers) -> None:
    """The item of the limit the old fields describe (the one with their RateLimit-Limit):
    its quota is RateLimit-Limit, its r RateLimit-Remaining, its t RateLimit-Reset (or, on a
    refusal, Retry-After)."""
    policies, limits = parsed(headers)
    (name,) = [n for n in limits if policies[n]["q"] == int(headers["RateLimit-Limit"])]
    assert limits[name]["r"] == int(headers["RateLimit-Remaining"])
    if "Retry-After" in headers:
        assert limits[name]["t"] == int(headers["Retry-After"])
    else:
        assert limits[name]["t"] == int(headers["RateLimit-Reset"])


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> StillClock:
    still = StillClock()
    hold_clock(monkeypatch, still)
    return still


async def test_each_limit_is_a_policy_and_each_budget_an_item(make_apps, clock):
    """Exact figures while the in-process limiter's clock stands still: every limit of the
    route is a policy; while allowed, each has its remaining requests and the seconds until it
    is whole; the old fields describe the shortest window."""
    (app,) = await make_apps(1, backend="memory", **TWO_LIMITS)
    account = await create_account(app)
    client = app.test_client()
    answers = [await client.get("/auth/me", headers=account.headers) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    for answer in answers:
        assert answer.headers["RateLimit-Policy"] == POLICY
        policies, _ = parsed(answer.headers)
        assert policies == {"10-per-3600s": {"q": 10, "w": 3600}, "3-per-60s": {"q": 3, "w": 60}}
        assert_agrees_with_the_old_fields(answer.headers)
    assert [a.headers["RateLimit"] for a in answers[:3]] == [
        '"10-per-3600s";r=9;t=360, "3-per-60s";r=2;t=20',
        '"10-per-3600s";r=8;t=720, "3-per-60s";r=1;t=40',
        '"10-per-3600s";r=7;t=1080, "3-per-60s";r=0;t=60',
    ]
    refused = answers[3]
    # the refusing limit alone (its budget is the one known), t until the next request
    assert refused.headers["RateLimit"] == '"3-per-60s";r=0;t=20'
    assert refused.headers["Retry-After"] == "20"
    assert refused.headers["RateLimit-Reset"] == "60"  # the old field: until it is whole


@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_every_limited_answer_carries_both_kinds(make_apps, backend):
    """A 200, a cached read's MISS and HIT, a 404, a 401 (counted by address) and a 429:
    all carry both kinds of field, and they agree."""
    (app,) = await make_apps(1, backend=backend, **TWO_LIMITS)
    account = await create_account(app)
    client = app.test_client()
    created = await client.post("/api/tasks/", headers=account.headers, json={"title": "t"})
    task = f"/api/tasks/{(await created.get_json())['data']['id']}"
    answers = [
        created,
        await client.get(task, headers=account.headers),
        await client.get(task, headers=account.headers),
        await client.get("/api/tasks/999999", headers=account.headers),
    ]
    assert [a.status_code for a in answers] == [201, 200, 200, 404]
    assert [a.headers.get("X-Cache") for a in answers[1:3]] == ["MISS", "HIT"]
    refused = await client.get(task, headers=account.headers)
    assert refused.status_code == 429
    unauthenticated = await client.get("/auth/me")
    assert unauthenticated.status_code == 401
    for answer in [*answers, refused, unauthenticated]:
        assert answer.headers["RateLimit-Policy"] == POLICY
        assert_agrees_with_the_old_fields(answer.headers)
    _, limits = parsed(refused.headers)
    assert limits == {"3-per-60s": {"r": 0, "t": int(refused.headers["Retry-After"])}}


async def test_an_unlimited_route_has_neither(make_apps):
    (app,) = await make_apps(1, backend="memory", **TWO_LIMITS)
    answer = await app.test_client().get("/health")
    assert answer.status_code == 200
    assert not {"RateLimit", "RateLimit-Policy", "RateLimit-Limit"} & set(answer.headers.keys())


def test_a_window_is_whole_seconds_and_names_stay_unique():
    """The draft's `w` is a positive integer; two limits that differ only in count or only in
    window have different names."""
    limits = (Limit(5, 900), Limit(50, 900), Limit(5, 60))
    assert policy_field(limits) == (
        '"5-per-900s";q=5;w=900, "50-per-900s";q=50;w=900, "5-per-60s";q=5;w=60'
    )
    decision = Decision(True, 5, 4, 12, 0, limits, tuple(Quota(lim, 4, 12) for lim in limits))
    headers = rate_headers(decision)
    policies, budgets = parsed(headers)
    assert list(policies) == list(budgets) == ["5-per-900s", "50-per-900s", "5-per-60s"]
