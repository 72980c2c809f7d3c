"""Revocations, cached answers, the gate's step and a write's cache versions, in this process."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Literal

from aiocache import SimpleMemoryCache
from aiocache.serializers import NullSerializer

from taskapi.infra.memory.gcra import MemoryGcra
from taskapi.infra.memory.idempotency import MemoryIdempotency
from taskapi.infra.stores import (
    CacheSlot,
    Entry,
    GateAnswer,
    GateQuery,
    Lookup,
)


class MemoryRevocations:
    """Revoked token ids, each until its token would have expired anyway: this process's copy
    of the record, unknown until it has been loaded from it."""

    def __init__(self) -> None:
        self._until: dict[str, int] = {}
        self._loaded = False

    def clear(self) -> None:
        """Forget every revocation (the tests empty the record with it: an empty copy of an
        empty record is whole)."""
        self._until.clear()

    async def is_whole(self) -> bool:
        return self._loaded

    async def revoke(self, revoked: Mapping[str, int], expired_before: int) -> None:
        self._until.update(revoked)
        if len(self._until) > 10_000:  # forget the ones that expired on their own
            self._until = {k: v for k, v in self._until.items() if v >= expired_before}

    async def claim_reload(self) -> bool:
        return True

    async def load(self, revoked: Mapping[str, int]) -> None:
        self._until.update(revoked)

    async def mark_loaded(self) -> None:
        self._loaded = True

    def is_revoked(self, jti: str) -> bool | None:
        """True when revoked, False when not, None when not loaded (and not known revoked)."""
        until = self._until.get(jti)
        if until is not None and until > time.time():
            return True
        return False if self._loaded else None


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
    revoked token (or one not known not to be); then the idempotency claim, skipped for a
    revoked, unknown or refused request; then the cached answer, skipped for a revoked or
    unknown token."""

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
        state = False if query.jti is None else self.revocations.is_revoked(query.jti)
        unproven = state is not False  # revoked, or not known not to be
        outcome = None
        if query.limits:
            keys = query.keys
            if unproven and query.fallback_keys is not None:
                keys = query.fallback_keys
            outcome = self.gcra.hit(keys, query.limits)
        claimed = None
        if query.claim is not None and not unproven and (outcome is None or outcome.allowed):
            claimed = self.idempotency.claim(query.claim)
        lookup = None
        if query.slot is not None and not unproven:
            lookup = await self.answers.lookup(query.slot)
        return GateAnswer(state is True, outcome, claimed, lookup, revocation_unknown=state is None)


class MemoryPublisher:
    """A committed write's cache versions, bumped."""

    def __init__(self, answers: MemoryAnswers) -> None:
        self.answers = answers

    async def publish(self, versions: Sequence[str]) -> None:
        self.answers.bump(versions)


class MemoryHealth:
    async def check(self) -> Literal["ok", "error", "disabled"]:
        return "disabled"
