"""The GCRA step in this process: the same arithmetic as the Redis script, atomic because it
never awaits."""

from __future__ import annotations

import time
from collections.abc import Sequence

from taskapi.infra.stores import Limit, Outcome


class MemoryGcra:
    """Theoretical arrival times per key, forgotten once they are in the past."""

    def __init__(self) -> None:
        self._tats: dict[str, float] = {}
        self._hits = 0

    def clear(self) -> None:
        self._tats.clear()

    def hit(self, keys: Sequence[str], limits: Sequence[Limit]) -> Outcome:
        """One request against every limit, recorded only when all of them allow it."""
        now = time.time() * 1000
        tats = []
        for index, (key, limit) in enumerate(zip(keys, limits, strict=True)):
            tat = max(self._tats.get(key, now), now)
            if tat - now > limit.period_ms - limit.interval_ms:
                retry = tat - (limit.period_ms - limit.interval_ms) - now
                return Outcome(False, (tat - now,), index, retry)
            tats.append(tat)
        separations = []
        for key, limit, tat in zip(keys, limits, tats, strict=True):
            self._tats[key] = new_tat = tat + limit.interval_ms
            separations.append(new_tat - now)
        self._hits += 1
        if self._hits % 10_000 == 0:
            self._tats = {k: v for k, v in self._tats.items() if v > now}
        return Outcome(True, tuple(separations))

    def refund(self, keys: Sequence[str], limits: Sequence[Limit]) -> None:
        """Give back one request of each key's budget (as if it had not been counted)."""
        now = time.time() * 1000
        for key, limit in zip(keys, limits, strict=True):
            tat = self._tats.get(key)
            if tat is None:
                continue
            if tat - limit.interval_ms > now:
                self._tats[key] = tat - limit.interval_ms
            else:
                del self._tats[key]
