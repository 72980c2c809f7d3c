"""The rate-limit fields of an answer that went through the rate step, 429s included: the
`RateLimit-Limit`, `-Remaining` and `-Reset` fields clients already read, and beside them the
IETF draft's `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-11),
structured-field lists with one item per limit, named by the limit itself."""

from __future__ import annotations

import functools
import math

from taskapi.domain.limits import Decision
from taskapi.infra.stores import Limit

# not kept with a cached or an idempotent request's answer: each answer gets its own
RATE_HEADER_NAMES = frozenset(
    {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "ratelimit-policy", "ratelimit"}
)


def _window(limit: Limit) -> int:
    """The limit's window in whole seconds (the draft's `w` is a positive integer)."""
    return max(1, math.ceil(limit.seconds))


@functools.cache
def policy_name(limit: Limit) -> str:
    """A limit's policy name, as its budget's key names it: `"50-per-3600s"`."""
    return f"{limit.count}-per-{_window(limit)}s"


@functools.cache
def policy_field(limits: tuple[Limit, ...]) -> str:
    """`RateLimit-Policy`: each limit's quota `q` (requests) and window `w` (seconds)."""
    return ", ".join(f'"{policy_name(lim)}";q={lim.count};w={_window(lim)}' for lim in limits)


def rate_headers(decision: Decision) -> dict[str, str]:
    """The rate-limit fields of a step's decision. `RateLimit` gives each limit's remaining
    requests `r` and `t`: the seconds until that budget is whole again, or, on a refusal
    (`r=0`), until the next request is allowed, which Retry-After says too (the draft: a
    Retry-After not earlier than the end of the effective window)."""
    headers = {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(decision.reset_seconds),
    }
    if decision.limits:
        headers["RateLimit-Policy"] = policy_field(decision.limits)
        headers["RateLimit"] = ", ".join(
            f'"{policy_name(quota.limit)}";r={quota.remaining};'
            f"t={quota.reset_seconds if decision.allowed else decision.retry_after}"
            for quota in decision.quotas
        )
    return headers
