"""Accounts: create, authenticate, look up. Plain async functions over a session."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from taskapi.errors import APIError
from taskapi.models import User
from taskapi.security import PasswordHasher

TAKEN = "Username or email already exists"


async def register_user(
    session: AsyncSession,
    passwords: PasswordHasher,
    *,
    username: str,
    email: str,
    password: str,
    role: str = "user",
) -> User:
    """Create an account; 409 when the username or e-mail is taken (also under a race)."""
    taken = await session.scalar(
        select(User.id).where(or_(User.username == username, User.email == email)).limit(1)
    )
    if taken is not None:
        raise APIError(409, TAKEN, code="conflict")
    user = User(
        username=username,
        email=email,
        password_hash=await passwords.hash(password),
        role=role,
    )
    session.add(user)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise APIError(409, TAKEN, code="conflict") from None
    return user


async def authenticate(
    session: AsyncSession, passwords: PasswordHasher, username: str, password: str
) -> User | None:
    """The user whose credentials these are, or None; equally slow for unknown names."""
    user = await session.scalar(select(User).where(User.username == username))
    ok = await passwords.verify(user.password_hash if user else None, password)
    return user if ok else None


async def role_of(connection: AsyncConnection, user_id: int) -> str | None:
    """The user's current role, or None when the account no longer exists."""
    role: str | None = await connection.scalar(select(User.role).where(User.id == user_id))
    return role


class RoleCache:
    """Roles of existing users, reused for `ttl` seconds by this process (0: never).

    A demoted or deleted user keeps the old role (or access) for at most `ttl` seconds in each
    process; a missing user is never remembered, so a deleted account is refused as soon as its
    entry expires.
    """

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[int, tuple[str, float]] = {}

    def cached_role(self, user_id: int) -> str | None:
        """The role remembered for this user, if still fresh; None: ask `role_of`."""
        entry = self._entries.get(user_id)
        if entry is not None and entry[1] > self._clock():
            return entry[0]
        return None

    async def role_of(
        self, connection_of: Callable[[], Awaitable[AsyncConnection]], user_id: int
    ) -> str | None:
        role = self.cached_role(user_id)
        if role is not None:
            return role
        now = self._clock()
        role = await role_of(await connection_of(), user_id)
        if role is not None and self.ttl > 0:
            if len(self._entries) > 100_000:
                self._entries.clear()
            self._entries[user_id] = (role, now + self.ttl)
        return role


async def get_user(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)
