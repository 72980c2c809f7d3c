"""The failed-login budgets in this process; atomic because no step awaits."""

from __future__ import annotations

import math
import time

from taskapi.infra.memory.gcra import MemoryGcra
from taskapi.infra.stores import Limit, LoginBudgets, LoginCharge, LoginKeys


def _seconds(milliseconds: float) -> int:
    return max(1, math.ceil(milliseconds / 1000))


class MemoryLoginFailures:
    """An attempt is charged to the pair's budget, and to the account's when its address is
    not known to the account; a success refunds the charge and makes the address known."""

    def __init__(self, budgets: LoginBudgets | None) -> None:
        self.budgets = budgets
        self._gcra = MemoryGcra()
        self._known: dict[str, float] = {}  # key → until when (time.time())
        self._prune_at = 10_000

    def clear(self) -> None:
        self._gcra.clear()
        self._known.clear()

    def _budgets(self, keys: LoginKeys, account: bool) -> tuple[list[str], list[Limit]]:
        """The keys and limits of a charge: the pair's, and the account's when `account`."""
        assert self.budgets is not None
        if account:
            return [keys.pair, keys.account], [self.budgets.per_address, self.budgets.per_account]
        return [keys.pair], [self.budgets.per_address]

    async def charge(self, keys: LoginKeys) -> LoginCharge:
        if self.budgets is None:
            return LoginCharge(None)
        unknown = self._known.get(keys.known, 0.0) <= time.time()
        outcome = self._gcra.hit(*self._budgets(keys, unknown))
        if not outcome.allowed:
            return LoginCharge(keys, _seconds(outcome.retry_after_ms))
        return LoginCharge(keys, 0, unknown)

    async def succeeded(self, charge: LoginCharge) -> None:
        keys = charge.keys
        if self.budgets is None or keys is None or charge.retry_after:
            return
        self._gcra.refund(*self._budgets(keys, charge.account_charged))
        now = time.time()
        if len(self._known) >= self._prune_at:  # forget expired addresses now and then
            self._known = {k: until for k, until in self._known.items() if until > now}
            self._prune_at = max(10_000, 2 * len(self._known))
        self._known[keys.known] = now + self.budgets.known_seconds
