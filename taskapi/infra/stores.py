"""What the shared-state stores speak: plain values passed between the domain, which decides
keys, budgets and versions, and the two implementations of each store (in this process, or in
Redis), which keep them. Nothing here knows which implementation it is talking to."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import orjson


class StoreUnavailable(Exception):
    """A shared store could not answer (now, or very recently): the caller applies its policy."""


class RetryLater(Exception):
    """Raised by a job that should run again in `delay` seconds (the queue counts its tries)."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"retry in {delay}s")
        self.delay = delay


@dataclasses.dataclass(frozen=True, slots=True)
class Limit:
    """`count` requests per `seconds`."""

    count: int
    seconds: float

    @property
    def interval_ms(self) -> float:
        return self.seconds * 1000 / self.count

    @property
    def period_ms(self) -> float:
        return self.seconds * 1000


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """A GCRA step's result. Allowed: each limit's separation (ms) after the update. Refused:
    the refusing limit's `index`, `retry_after_ms` and its separation in `separations[0]`."""

    allowed: bool
    separations: tuple[float, ...]
    index: int = 0
    retry_after_ms: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """A cached answer."""

    status: int
    headers: dict[str, str]
    body: bytes

    def dumps(self) -> bytes:
        return orjson.dumps([self.status, self.headers]) + b"\n" + self.body

    @classmethod
    def loads(cls, raw: bytes) -> Entry:
        head, _, body = raw.partition(b"\n")
        status, headers = orjson.loads(head)
        return cls(status, headers, body)


@dataclasses.dataclass(frozen=True, slots=True)
class CacheSlot:
    """Where one request's answer is cached: the entry's key is `prefix + version + suffix`,
    the version read from `version_key`; `ttl` seconds once stored."""

    prefix: str
    suffix: str
    version_key: str
    ttl: int

    def key(self, version: int | str) -> str:
        return f"{self.prefix}{version}{self.suffix}"


@dataclasses.dataclass(frozen=True, slots=True)
class Lookup:
    """A cache lookup: `key` to store a fresh answer under, and the cached `entry` if any."""

    key: str
    entry: Entry | None


@dataclasses.dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """A request's claim of its idempotency key: the store's `key`, the request's
    `fingerprint`, a `token` only this request has, held `in_flight_ms` while it runs."""

    key: str
    fingerprint: str
    token: str
    in_flight_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class Claimed:
    """What a claim found: `ours` (the key was free: this request runs), else the request that
    holds the key: its `fingerprint`, and its stored `entry` (None: it is still running)."""

    ours: bool
    fingerprint: str | None = None
    entry: Entry | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class GateQuery:
    """The shared-state work of one request, done together: is the token `jti` revoked; one
    GCRA step over `limits` on `keys` (on `fallback_keys` instead when the token is revoked,
    or not known not to be); the idempotency `claim` (not made for a revoked, unknown or
    refused request); the cached answer in `slot` (not looked up for a revoked or unknown
    token)."""

    jti: str | None = None
    limits: tuple[Limit, ...] = ()
    keys: Sequence[str] = ()
    fallback_keys: Sequence[str] | None = None
    claim: IdempotencyClaim | None = None
    slot: CacheSlot | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class GateAnswer:
    """What the stores said: `revoked` (False when no token was asked about);
    `revocation_unknown` when the store's copy of the revocations is not whole (lost, not yet
    reloaded) or could not be reached, so only the record can say (the rest is then answered
    as for a revoked token); the rate step's `outcome` (None when no limits), what the `claim`
    found (None when no claim, or revoked, unknown or refused), the cache `lookup` (None when
    no slot, or revoked or unknown)."""

    revoked: bool = False
    outcome: Outcome | None = None
    claimed: Claimed | None = None
    lookup: Lookup | None = None
    revocation_unknown: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class LoginBudgets:
    """Failed logins allowed per account: from one address, and from all the addresses that
    have not logged in to it for `known_seconds`."""

    per_address: Limit
    per_account: Limit
    known_seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class LoginKeys:
    pair: str  # the account's failures from this address
    account: str  # the account's failures from addresses not known to it
    known: str  # present while this address is known to the account


@dataclasses.dataclass(frozen=True, slots=True)
class LoginCharge:
    """An attempt's charge: `retry_after` seconds when refused (0: admitted), and whether the
    account's budget for unknown addresses was charged (so a refund gives that back too)."""

    keys: LoginKeys | None  # None: no budgets (rate limiting off)
    retry_after: int = 0
    account_charged: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class JobRequest:
    """A job to run, under its id (its outbox entry's): the job function's name and its
    arguments."""

    function: str
    task_id: int
    requested_by: int
    request_id: str | None
    job_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class JobView:
    """A job as its status endpoint shows it."""

    job_id: str
    status: str
    result: Any = None
    requested_by: int | None = None
