"""Lua fragments composed into one script, and each fragment's slice of the reply: several
pieces of Redis work in one round trip. What the fragments share (locals declared in the
book's prelude) is the composer's business, written where the book is made."""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Sequence
from typing import Any

from taskapi.infra.redis.pool import RedisPool

HEADER = """if redis.replicate_commands then pcall(redis.replicate_commands) end
local out = {$SLOTS}
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Fragment:
    """A piece of Lua that reads `keys` KEYS and `args` ARGV from `$K` and `$A` on and writes
    `slots` reply values from `out[$S]` on. It may `return out` to end the script early (the
    later fragments' slots stay nil)."""

    name: str
    keys: int
    args: int
    slots: int
    lua: str


@dataclasses.dataclass(frozen=True, slots=True)
class Part:
    """A fragment with this call's KEYS and ARGV."""

    fragment: Fragment
    keys: Sequence[str | bytes]
    args: Sequence[str | bytes | float | int]


class Reply:
    """A composed script's reply: `reply["name"]` is that fragment's slice (None when absent)."""

    def __init__(self, slices: dict[str, slice], values: Sequence[Any]) -> None:
        self._slices = slices
        self._values = values

    def __getitem__(self, name: str) -> list[Any] | None:
        where = self._slices.get(name)
        return None if where is None else list(self._values[where])


class ScriptBook:
    """Composed scripts, registered once per combination of fragments (a handful in all);
    `prelude` runs before the fragments (e.g. the locals they share)."""

    def __init__(self, pool: RedisPool, prelude: str = "") -> None:
        self.pool = pool
        self.prelude = prelude
        self._scripts: dict[tuple[Fragment, ...], tuple[Any, dict[str, slice]]] = {}

    def _compose(self, fragments: tuple[Fragment, ...]) -> tuple[Any, dict[str, slice]]:
        body, slices = [], {}
        k = a = s = 1
        for fragment in fragments:
            body.append(string.Template(fragment.lua).substitute(K=k, A=a, S=s))
            slices[fragment.name] = slice(s - 1, s - 1 + fragment.slots)
            k, a, s = k + fragment.keys, a + fragment.args, s + fragment.slots
        header = string.Template(HEADER).substitute(SLOTS=", ".join(["false"] * (s - 1)))
        lua = header + self.prelude + "\n" + "\n".join(body) + "\nreturn out\n"
        return self.pool.client.register_script(lua), slices

    async def run(self, component: str, parts: Sequence[Part]) -> Reply:
        """Run the parts as one script (one round trip); StoreUnavailable when Redis can't."""
        fragments = tuple(part.fragment for part in parts)
        entry = self._scripts.get(fragments)
        if entry is None:
            entry = self._scripts[fragments] = self._compose(fragments)
        script, slices = entry
        keys = [key for part in parts for key in part.keys]
        args = [arg for part in parts for arg in part.args]
        values = await self.pool.guarded(component, lambda: script(keys=keys, args=args))
        return Reply(slices, values)
