"""The shared-state seam: each behaviour that lives in this process or in Redis is a port here,
with exactly two implementations, `taskapi.infra.memory` and `taskapi.infra.redis`, side by
side. `taskapi.wiring` chooses them; nothing else asks which it has. A store that cannot answer
raises `StoreUnavailable`, and the caller applies its policy (fail open or closed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Literal, Protocol

from taskapi.infra.stores import (
    Entry,
    GateAnswer,
    GateQuery,
    IdempotencyClaim,
    JobRequest,
    JobView,
    LoginCharge,
    LoginKeys,
)


class JobName(StrEnum):
    """The background jobs, by the name their function has (`taskapi.domain.jobs`)."""

    SEND_TASK_CREATED_EMAIL = "send_task_created_email"
    PROCESS_TASK = "process_task"


class Gatekeeper(Protocol):
    """The request gate's one call: revocation, rate limit and cached answer together."""

    async def admit(self, query: GateQuery) -> GateAnswer: ...


class Revocations(Protocol):
    """The fast path's copy of the revocation record (`taskapi.domain.revocations` keeps the
    record). The gatekeeper reads it; it says "unknown" until a reload has made it whole."""

    async def revoke(self, revoked: Mapping[str, int], expired_before: int) -> None:
        """Refuse each token jti until its expiry (epoch seconds); forget the revocations
        that expired before `expired_before`."""
        ...

    async def is_whole(self) -> bool:
        """Whether a reload has made the copy whole (and nothing has emptied it since)."""
        ...

    async def claim_reload(self) -> bool:
        """Whether this process may reload the copy now (one process at a time)."""
        ...

    async def load(self, revoked: Mapping[str, int]) -> None:
        """Add a chunk of the record to the copy (a reload's)."""
        ...

    async def mark_loaded(self) -> None:
        """The reload has put the whole record in: from now on the copy answers alone."""
        ...


class AnswerStore(Protocol):
    async def put(self, key: str, entry: Entry, ttl: int) -> None:
        """Keep a fresh answer under `key` (from a gate lookup) for `ttl` seconds."""
        ...


class IdempotencyStore(Protocol):
    """The answers kept for retries of a request with an idempotency key (the key is claimed
    in the gate's step, `GateQuery.claim`). Both calls act only while the claim is still the
    request's own (it lapses after its in-flight time)."""

    async def complete(self, claim: IdempotencyClaim, entry: Entry, ttl: int) -> None:
        """Keep the claimed request's answer for its retries, `ttl` seconds."""
        ...

    async def release(self, claim: IdempotencyClaim) -> None:
        """The claimed request failed: free its key, so that a retry runs again."""
        ...


class Publisher(Protocol):
    """What a committed write hands over to the shared stores: the cache versions it makes
    stale."""

    async def publish(self, versions: Sequence[str]) -> None: ...


class LoginFailures(Protocol):
    """The failed-login budgets."""

    async def charge(self, keys: LoginKeys) -> LoginCharge:
        """Charge an attempt before its password is checked; refused when a budget is spent."""
        ...

    async def succeeded(self, charge: LoginCharge) -> None:
        """The password was right: refund the charge and make the address known."""
        ...


class JobQueue(Protocol):
    async def hand_over(self, jobs: Sequence[JobRequest]) -> None:
        """Queue the jobs under their ids, together; a job whose id the queue already has (a
        relay that retries a hand-over) is not queued again."""
        ...

    async def view(self, job_id: str) -> JobView: ...


class SharedHealth(Protocol):
    async def check(self) -> Literal["ok", "error", "disabled"]:
        """Whether the shared stores answer (`disabled`: they are this process's own)."""
        ...
