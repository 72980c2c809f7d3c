"""The failed-login budgets in Redis, shared by every process: one script (one round trip) to
charge an attempt, one to record a success; every key expires."""

from __future__ import annotations

import math
from typing import Any

from taskapi.infra.redis.pool import RedisPool
from taskapi.infra.stores import LoginBudgets, LoginCharge, LoginKeys


def _seconds(milliseconds: float) -> int:
    return max(1, math.ceil(milliseconds / 1000))


_LOGIN_HEADER = """if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
"""

# KEYS: pair, account, known. ARGV: (interval ms, period ms) of the pair's and the account's
# budgets. Reply: {1, account charged (0/1)}, or {0, ms until the refusing budget admits one}.
_CHARGE_LUA = (
    _LOGIN_HEADER
    + """
local unknown = redis.call('EXISTS', KEYS[3]) == 0
local budgets = unknown and 2 or 1
local tats = {}
for i = 1, budgets do
  local interval, period = tonumber(ARGV[2*i - 1]), tonumber(ARGV[2*i])
  local stored = redis.call('GET', KEYS[i])
  local tat = now
  if stored then tat = math.max(tonumber(stored), now) end
  if tat - now > period - interval then return {0, tostring(tat - (period - interval) - now)} end
  tats[i] = tat + interval
end
for i = 1, budgets do
  redis.call('SET', KEYS[i], tostring(tats[i]), 'PX', math.ceil(tats[i] - now))
end
return {1, budgets - 1}
"""
)

# KEYS: pair, account, known. ARGV: the pair's and the account's intervals (ms), 1 when the
# account was charged, how long the address stays known (ms).
_SUCCEEDED_LUA = (
    _LOGIN_HEADER
    + """
for i = 1, 1 + tonumber(ARGV[3]) do
  local stored = redis.call('GET', KEYS[i])
  if stored then
    local tat = tonumber(stored) - tonumber(ARGV[i])
    if tat > now then
      redis.call('SET', KEYS[i], tostring(tat), 'PX', math.ceil(tat - now))
    else
      redis.call('DEL', KEYS[i])
    end
  end
end
redis.call('SET', KEYS[3], '1', 'PX', ARGV[4])
return 0
"""
)


class RedisLoginFailures:
    """The budgets in Redis, shared by every process: one script (one round trip) to charge
    an attempt, one to record a success."""

    def __init__(self, budgets: LoginBudgets | None, pool: RedisPool) -> None:
        self.budgets = budgets
        self.pool = pool
        self._scripts: dict[str, Any] = {}

    def _script(self, lua: str) -> Any:
        script = self._scripts.get(lua)
        if script is None:
            script = self._scripts[lua] = self.pool.client.register_script(lua)
        return script

    async def charge(self, keys: LoginKeys) -> LoginCharge:
        if self.budgets is None:
            return LoginCharge(None)
        pair, account = self.budgets.per_address, self.budgets.per_account
        script = self._script(_CHARGE_LUA)
        reply = await self.pool.guarded(
            "login limiter",
            lambda: script(
                keys=[keys.pair, keys.account, keys.known],
                args=[pair.interval_ms, pair.period_ms, account.interval_ms, account.period_ms],
            ),
        )
        admitted, value = int(reply[0]), reply[1]
        if not admitted:
            return LoginCharge(keys, _seconds(float(value)))
        return LoginCharge(keys, 0, bool(int(value)))

    async def succeeded(self, charge: LoginCharge) -> None:
        keys = charge.keys
        if self.budgets is None or keys is None or charge.retry_after:
            return
        budgets = self.budgets
        args = [
            budgets.per_address.interval_ms,
            budgets.per_account.interval_ms,
            int(charge.account_charged),
            math.ceil(budgets.known_seconds * 1000),
        ]
        script = self._script(_SUCCEEDED_LUA)
        await self.pool.guarded(
            "login limiter",
            lambda: script(keys=[keys.pair, keys.account, keys.known], args=args),
        )
