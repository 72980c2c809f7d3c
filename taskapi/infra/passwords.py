"""Password hashing (argon2id) off the event loop, on a small pool of its own."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from taskapi.settings import Settings


class PasswordHasher:
    """argon2id hashing and verification, each run in a thread so the loop keeps serving.

    The pool is as wide as the machine has cores: more threads would only queue for the CPU,
    while the loop's own threads (and aiosqlite's) stay free.
    """

    def __init__(self, settings: Settings) -> None:
        self._argon2 = argon2.PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_cost_kib,
            parallelism=settings.argon2_parallelism,
        )
        self._pool: ThreadPoolExecutor | None = None
        self._dummy_hash: str | None = None

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            workers = max(2, os.cpu_count() or 2)
            self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        return self._pool

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(), self._argon2.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True when the password matches; with no hash, spends the same time and says False."""
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(self._executor(), self._check, password_hash, password)
        return ok and password_hash is not None

    def _check(self, password_hash: str | None, password: str) -> bool:
        try:
            return self._argon2.verify(password_hash or self._dummy(), password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _dummy(self) -> str:
        """The hash an unknown name is checked against: made once, in a pool thread like any."""
        if self._dummy_hash is None:
            self._dummy_hash = self._argon2.hash("taskapi-dummy-password")
        return self._dummy_hash

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
