"""Revocations, cached answers, the gate's step and a write's hand-over, in this process."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

from aiocache import SimpleMemoryCache
from aiocache.serializers import NullSerializer

from taskapi.infra.memory.gcra import MemoryGcra
from taskapi.infra.memory.idempotency import MemoryIdempotency
from taskapi.infra.memory.queue import InProcessQueue
from taskapi.infra.stores import (
    CacheSlot,
    Entry,
    GateAnswer,
    GateQuery,
    JobRequest,
    Lookup,
)


class MemoryRevocations:
    """Revoked token ids, each until its token would have expired anyway."""

    def __init__(self) -> None:
        self._until: dict[str, int] = {}

    def clear(self) -> None:
        self._until.clear()

    async def revoke(self, jti: str, expires_at: int) -> None:
        now = int(time.time())
        if expires_at > now:
            self._until[jti] = expires_at
        if len(self._until) > 10_000:  # forget the ones that expired on their own
            self._until = {k: v for k, v in self._until.items() if v > now}

    def is_revoked(self, jti: str) -> bool:
        until = self._until.get(jti)
        return until is not None and until > time.time()


class MemoryAnswers:
    """Cached answers (in aiocache's in-memory cache, as they are: entries expire) and their
    versions."""

    def __init__(self) -> None:
        self._cache = SimpleMemoryCache(serializer=NullSerializer())
        self._versions: dict[str, int] = {}

    async def clear(self) -> None:
        await self._cache.clear()
        self._versions.clear()

    async def lookup(self, slot: CacheSlot) -> Lookup:
        key = slot.key(self._versions.get(slot.version_key, 0))
        entry: Entry | None = await self._cache.get(key)
        return Lookup(key, entry)

    async def put(self, key: str, entry: Entry, ttl: int) -> None:
        await self._cache.set(key, entry, ttl=ttl)

    def bump(self, versions: Sequence[str]) -> None:
        for name in versions:
            self._versions[name] = self._versions.get(name, 0) + 1


class MemoryGatekeeper:
    """The gate's step: revocation first; then the rate step, on the fallback keys for a
    revoked token; then the idempotency claim, skipped for a revoked or refused request; then
    the cached answer, skipped for a revoked token."""

    def __init__(
        self,
        revocations: MemoryRevocations,
        gcra: MemoryGcra,
        idempotency: MemoryIdempotency,
        answers: MemoryAnswers,
    ) -> None:
        self.revocations = revocations
        self.gcra = gcra
        self.idempotency = idempotency
        self.answers = answers

    async def admit(self, query: GateQuery) -> GateAnswer:
        revoked = query.jti is not None and self.revocations.is_revoked(query.jti)
        outcome = None
        if query.limits:
            keys = query.keys
            if revoked and query.fallback_keys is not None:
                keys = query.fallback_keys
            outcome = self.gcra.hit(keys, query.limits)
        claimed = None
        if query.claim is not None and not revoked and (outcome is None or outcome.allowed):
            claimed = self.idempotency.claim(query.claim)
        lookup = None
        if query.slot is not None and not revoked:
            lookup = await self.answers.lookup(query.slot)
        return GateAnswer(revoked, outcome, claimed, lookup)


class MemoryPublisher:
    """A committed write's effects: the versions bumped, the jobs started on this loop."""

    def __init__(self, answers: MemoryAnswers, queue: InProcessQueue) -> None:
        self.answers = answers
        self.queue = queue

    async def publish(self, versions: Sequence[str], jobs: Sequence[JobRequest]) -> None:
        self.answers.bump(versions)
        for job in jobs:
            await self.queue.enqueue(job)


class MemoryHealth:
    async def check(self) -> Literal["ok", "error", "disabled"]:
        return "disabled"
