"""Idempotency keys in this process: claims and kept answers, each until it expires; atomic
because no step awaits."""

from __future__ import annotations

import dataclasses
import time

from taskapi.infra.stores import Claimed, Entry, IdempotencyClaim


@dataclasses.dataclass(slots=True)
class _Record:
    fingerprint: str
    token: str  # the claiming request's, while it runs
    entry: Entry | None  # its answer, once kept
    until: float  # time.monotonic()


class MemoryIdempotency:
    def __init__(self) -> None:
        self._records: dict[str, _Record] = {}
        self._prune_at = 10_000

    def clear(self) -> None:
        self._records.clear()

    def claim(self, claim: IdempotencyClaim) -> Claimed:
        """Take the key if it is free; else what holds it."""
        now = time.monotonic()
        record = self._records.get(claim.key)
        if record is not None and record.until > now:
            return Claimed(False, record.fingerprint, record.entry)
        if len(self._records) >= self._prune_at:  # forget the expired now and then
            self._records = {k: r for k, r in self._records.items() if r.until > now}
            self._prune_at = max(10_000, 2 * len(self._records))
        until = now + claim.in_flight_ms / 1000
        self._records[claim.key] = _Record(claim.fingerprint, claim.token, None, until)
        return Claimed(True)

    def _held(self, claim: IdempotencyClaim) -> bool:
        record = self._records.get(claim.key)
        return (
            record is not None
            and record.entry is None
            and record.token == claim.token
            and record.until > time.monotonic()
        )

    async def complete(self, claim: IdempotencyClaim, entry: Entry, ttl: int) -> None:
        if self._held(claim):
            until = time.monotonic() + ttl
            self._records[claim.key] = _Record(claim.fingerprint, claim.token, entry, until)

    async def release(self, claim: IdempotencyClaim) -> None:
        if self._held(claim):
            del self._records[claim.key]
