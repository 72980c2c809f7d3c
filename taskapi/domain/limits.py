"""Rate-limit policy: which keys a request's budgets live under (per caller, per route; a
client address's scope), the figures of the rate-limit headers, and the keys of the failed-
login budgets. The stores (`taskapi.domain.ports`) do the atomic steps."""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import math
import urllib.parse
from collections.abc import Iterable
from typing import NamedTuple

from taskapi.domain.names import canonical
from taskapi.infra.stores import Limit, LoginBudgets, LoginKeys, Outcome
from taskapi.settings import RateLimitSpec

PREFIX = "taskapi:rl:"


def limits_from(specs: Iterable[RateLimitSpec]) -> list[Limit]:
    """Limits for limit settings (parsed and validated by taskapi.settings)."""
    return [Limit(spec.requests, spec.period_seconds) for spec in specs]


def login_budgets(
    per_address: Iterable[RateLimitSpec], per_account: Iterable[RateLimitSpec], known_days: int
) -> LoginBudgets:
    """The failed-login budgets of these settings."""
    (address_limit,) = limits_from(per_address)
    (account_limit,) = limits_from(per_account)
    return LoginBudgets(address_limit, account_limit, known_days * 86400)


@functools.lru_cache(maxsize=8192)
def address_key(address: str, ipv6_prefix: int) -> str:
    """A client address's rate-limit scope: `ip:<IPv4>`, or an IPv6 client's network of
    `ipv6_prefix` bits (`ip:2001:db8:1:2::/64`), since one host may hold a whole /64. An
    IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) counts as its IPv4 address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # not an address (e.g. "unknown"): kept, quoted, as its own scope
        return "ip:" + urllib.parse.quote(address, safe="")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address):
        return f"ip:{ip}"
    return f"ip:{ipaddress.IPv6Network((ip, ipv6_prefix), strict=False)}"


def limit_keys(scope: str, endpoint: str, limits: tuple[Limit, ...]) -> list[str]:
    """One key per limit: budgets are per caller (`ip:<addr>` or `user:<id>`) and per route."""
    head = PREFIX + scope
    return [head + suffix for suffix in _key_suffixes(endpoint, limits)]


@functools.cache
def _key_suffixes(endpoint: str, limits: tuple[Limit, ...]) -> tuple[str, ...]:
    return tuple(f":{endpoint}:{lim.count}/{lim.seconds:g}" for lim in limits)


@functools.cache
def _shortest(limits: tuple[Limit, ...]) -> int:
    """The index of the limit with the shortest window (the one the headers describe)."""
    return min(range(len(limits)), key=lambda i: limits[i].seconds)


class Quota(NamedTuple):
    """One limit's budget after a step: what it allows and when it is whole again (a tuple:
    one per limit on every request)."""

    limit: Limit
    remaining: int
    reset_seconds: int


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """What the rate-limit headers (and Retry-After) say about a step: the figures of one
    limit (the refusing one, else the shortest window's) and the budget of each limit the
    step knows (every one when it allowed, the refusing one when it refused)."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    retry_after: int = 0
    limits: tuple[Limit, ...] = ()  # the route's limits, in order
    quotas: tuple[Quota, ...] = ()


def decide(limits: tuple[Limit, ...], outcome: Outcome) -> Decision:
    """The headers' figures: the refusing limit, or the shortest window's remaining budget."""
    if not outcome.allowed:
        refused = limits[outcome.index]
        retry_after = max(1, math.ceil(outcome.retry_after_ms / 1000))
        reset = math.ceil(outcome.separations[0] / 1000)
        quota = Quota(refused, 0, reset)
        return Decision(False, refused.count, 0, reset, retry_after, limits, (quota,))
    quotas = tuple(
        [
            Quota(
                limit,
                max(0, int((limit.period_ms - separation) / limit.interval_ms)),
                math.ceil(separation / 1000),
            )
            for limit, separation in zip(limits, outcome.separations, strict=True)
        ]
    )
    shown = quotas[_shortest(limits)]
    return Decision(
        True, shown.limit.count, shown.remaining, shown.reset_seconds, 0, limits, quotas
    )


# --- failed logins ---------------------------------------------------------------------------
#
# Each login attempt is charged before its password is checked, so concurrent guesses cannot
# overdraw a budget and a refusal costs no password check; a right password refunds the charge
# and makes the address known to the account. Two budgets: the account's failures from this
# address (every address has one), and its failures from all addresses that have not logged in
# to it lately (the bound on guessing it from anywhere). A known address skips the second, so
# guessers elsewhere cannot lock the owner out. Unknown and existing usernames are treated alike.


def login_keys(username: str, address: str) -> LoginKeys:
    """Keys by the username's canonical form and the address's scope (which has no `|`)."""
    name = canonical(username)
    return LoginKeys(
        f"{PREFIX}login:pair:{address}|{name}",
        f"{PREFIX}login:account:{name}",
        f"{PREFIX}login:known:{address}|{name}",
    )
