"""Accounts: create, authenticate, look up, change (role, active, token generation), delete.
Plain async functions over a connection (or a unit of work, for a deletion)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Row, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from taskapi.domain import tasks
from taskapi.domain.effects import Change
from taskapi.domain.models import User, new_token_generation
from taskapi.domain.names import canonical
from taskapi.domain.work import UnitOfWork
from taskapi.errors import APIError
from taskapi.infra.passwords import PasswordHasher

TAKEN = "Username or email already exists"
USERS = User.__table__


def normalise_email(email: str) -> str:
    """The address with its domain in lower case (domains are case-blind; the local part is
    the mail server's business, so it stays as given)."""
    local, at, domain = email.rpartition("@")
    return f"{local}{at}{domain.lower()}" if at else email


async def register_user(
    connection: AsyncConnection,
    passwords: PasswordHasher,
    *,
    username: str,
    email: str,
    password: str,
    role: str = "user",
) -> Row[Any]:
    """Create an account in one INSERT (atomic on its own; inside a caller's transaction, part
    of it); 409 when another account has the same canonical username or e-mail (also under a
    race: the unique indexes on the canonical columns decide)."""
    email = normalise_email(email)
    username_key, email_key = canonical(username), canonical(email)
    taken = await connection.scalar(
        select(USERS.c.id)
        .where(
            or_(USERS.c.username_canonical == username_key, USERS.c.email_canonical == email_key)
        )
        .limit(1)
    )
    if taken is not None:
        raise APIError(409, TAKEN, code="conflict")
    values = {
        "username": username,
        "username_canonical": username_key,
        "email": email,
        "email_canonical": email_key,
        "password_hash": await passwords.hash(password),
        "role": role,
        "token_generation": new_token_generation(),
    }
    try:
        user: Row[Any] = (
            await connection.execute(insert(USERS).values(values).returning(USERS))
        ).one()
    except IntegrityError:
        raise APIError(409, TAKEN, code="conflict") from None
    return user


async def authenticate(
    connection: AsyncConnection, passwords: PasswordHasher, username: str, password: str
) -> Row[Any] | None:
    """The user whose credentials these are, or None; equally slow for unknown names. The name
    matches by its canonical form: only one account can have it. A deactivated account's
    credentials are still its own: whether it may log in is the caller's question."""
    query = select(USERS).where(USERS.c.username_canonical == canonical(username))
    user = (await connection.execute(query)).first()
    ok = await passwords.verify(user.password_hash if user else None, password)
    return user if ok else None


async def account_id_named(connection: AsyncConnection, username: str) -> int | None:
    """The id of the account whose username has this canonical form (as at login), or None."""
    user_id: int | None = await connection.scalar(
        select(USERS.c.id).where(USERS.c.username_canonical == canonical(username))
    )
    return user_id


async def role_and_generation_of(
    connection: AsyncConnection, user_id: int
) -> tuple[str, int] | None:
    """The user's current role and token generation, or None when the account is gone or
    deactivated."""
    query = select(User.role, User.token_generation).where(User.id == user_id, User.is_active)
    row = (await connection.execute(query)).first()
    return None if row is None else (row[0], row[1])


class RoleCache:
    """Roles and token generations of existing, active users, reused for `ttl` seconds by this
    process (0: never), answering only for tokens of the account's current generation.

    A demoted, deleted or deactivated user, or one whose tokens were all revoked (a new
    generation), keeps the old role (or access) for at most `ttl` seconds in each process; a
    missing or deactivated user is never remembered, so such an account is refused as soon as
    its entry expires. A token of another generation (an account that had this id before) is
    refused at once: it never matches the cached entry and is then checked against the database.

    With `ttl` > 0, the requests that find a user's entry missing while a lookup of that user
    is already running wait for that lookup instead of sending their own: when the entry of a
    client with thousands of requests in flight expires, the database is asked once, not once
    per request. With `ttl` 0 every request asks the database itself.
    """

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[int, tuple[str, int, float]] = {}
        self._lookups: dict[int, asyncio.Future[tuple[str, int] | None]] = {}

    def cached_role(self, user_id: int, generation: int) -> str | None:
        """The role remembered for a token's user, if fresh and of the token's generation;
        None: ask `role_of`."""
        entry = self._entries.get(user_id)
        if entry is not None and entry[2] > self._clock() and entry[1] == generation:
            return entry[0]
        return None

    async def role_of(
        self,
        connection_of: Callable[[], Awaitable[AsyncConnection]],
        user_id: int,
        generation: int,
    ) -> str | None:
        """The role of a token's user; None when the account is gone or is not the one the
        token was issued to (another `generation`)."""
        role = self.cached_role(user_id, generation)
        if role is not None:
            return role
        account = await self._account(connection_of, user_id)
        if account is None:
            return None
        role, current = account
        return role if current == generation else None

    async def _account(
        self, connection_of: Callable[[], Awaitable[AsyncConnection]], user_id: int
    ) -> tuple[str, int] | None:
        if self.ttl <= 0:
            return await role_and_generation_of(await connection_of(), user_id)
        while (running := self._lookups.get(user_id)) is not None:
            try:
                return await asyncio.shield(running)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not running.cancelled() or (task is not None and task.cancelling()):
                    raise  # this request was cancelled, not (only) the lookup
            # that lookup ended without an answer (its request failed or was cancelled, and
            # answers for it): this request asks, or waits for the next one to
        lookup: asyncio.Future[tuple[str, int] | None] = asyncio.get_running_loop().create_future()
        self._lookups[user_id] = lookup
        now = self._clock()
        try:
            account = await role_and_generation_of(await connection_of(), user_id)
        except BaseException:
            lookup.cancel()
            raise
        finally:
            if self._lookups.get(user_id) is lookup:
                del self._lookups[user_id]
        if account is not None:
            if len(self._entries) > 100_000:
                self._entries.clear()
            self._entries[user_id] = (*account, now + self.ttl)
        lookup.set_result(account)
        return account

    def clear(self) -> None:
        """Forget every remembered role (what a fresh process knows)."""
        self._entries.clear()


async def delete_user(unit: UnitOfWork, user_id: int) -> bool:
    """Delete an account and its tasks, in the unit's transaction; False when there was none.
    Every cached answer that showed them goes stale when the unit commits, so no later account
    (nor the admin's lists) is served them."""
    await tasks.delete_tasks_of(unit, user_id, requested_by=user_id)
    deleted = await unit.connection.scalar(
        delete(USERS).where(USERS.c.id == user_id).returning(USERS.c.id)
    )
    if deleted is None:
        return False
    unit.changed(Change("account_deleted", None, user_id, user_id))
    return True


async def replace_password(
    connection: AsyncConnection, passwords: PasswordHasher, user_id: int, password: str
) -> None:
    """Give an account a new password and a new token generation, so that no token issued
    under the old password is accepted any more."""
    password_hash = await passwords.hash(password)
    await connection.execute(
        update(USERS)
        .where(USERS.c.id == user_id)
        .values(password_hash=password_hash, token_generation=new_token_generation())
    )


async def set_role(connection: AsyncConnection, user_id: int, role: str) -> bool:
    """Give an account a role (`user` or `admin`); False when there is no such account. Every
    process serves the new role within `TASKAPI_USER_CACHE_SECONDS` (the gate reads the
    database's role, never the token's)."""
    changed = await connection.scalar(
        update(USERS).where(USERS.c.id == user_id).values(role=role).returning(USERS.c.id)
    )
    return changed is not None


async def revoke_all_tokens(connection: AsyncConnection, user_id: int) -> bool:
    """Give an account a new token generation, so that every token issued to it so far (access
    and refresh, in every process) is refused; False when there is no such account. Written
    in the database alone, so that losing Redis brings none of them back."""
    changed = await connection.scalar(
        update(USERS)
        .where(USERS.c.id == user_id)
        .values(token_generation=new_token_generation())
        .returning(USERS.c.id)
    )
    return changed is not None


async def set_active(connection: AsyncConnection, user_id: int, active: bool) -> bool:
    """Deactivate an account (it cannot log in, and every token issued to it is refused: a new
    token generation) or activate it again (it may log in; its old tokens stay refused);
    False when there is no such account."""
    values: dict[str, object] = {"is_active": active}
    if not active:
        values["token_generation"] = new_token_generation()
    changed = await connection.scalar(
        update(USERS).where(USERS.c.id == user_id).values(values).returning(USERS.c.id)
    )
    return changed is not None


async def get_user(connection: AsyncConnection, user_id: int) -> Row[Any] | None:
    return (await connection.execute(select(USERS).where(USERS.c.id == user_id))).first()
