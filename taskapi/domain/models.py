"""The tables: users, their tasks, the outbox of the jobs their writes call for, and the
record of revoked tokens."""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    column,
    false,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from taskapi.infra.db import Base, UTCDateTime, utcnow, utcnow_after

MAX_ID = 2**31 - 1  # the id columns are 32-bit integers


def new_token_generation() -> int:
    """A random 63-bit generation for a new account, so that no other account's token (even one
    that once had the same id) carries it."""
    return secrets.randbits(63)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('user', 'admin')", name="role"),
        {"sqlite_autoincrement": True},  # never reuse an id (PostgreSQL never does)
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    email: Mapped[str] = mapped_column(String(120), unique=True)
    # canonical(username), canonical(email): what lookups, limits and uniqueness compare. Text,
    # not String(n): NFKC and case folding can lengthen a name (e.g. "ß" becomes "ss").
    username_canonical: Mapped[str] = mapped_column(Text)
    email_canonical: Mapped[str] = mapped_column(Text)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), server_default="user")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), server_default=utcnow())
    # Carried in every token ("gen"): a token whose generation is not the account's is refused.
    # Accounts that predate it are at 0, as are the tokens issued before it (no claim).
    token_generation: Mapped[int] = mapped_column(
        BigInteger, default=new_token_generation, server_default="0"
    )
    # A deactivated account cannot log in, and its tokens are refused (taskapi users deactivate).
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=true())


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(150))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), server_default="pending")
    due_date: Mapped[dt.date | None] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), server_default=utcnow())
    # every UPDATE of a task moves it forward, whichever statement writes (service, jobs)
    updated_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime(), server_default=utcnow(), onupdate=utcnow_after(column("updated_at"))
    )
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # the task's version (its ETag's validator): every UPDATE of a task adds one, in the
    # statement that writes, whichever statement it is (service, jobs)
    version: Mapped[int] = mapped_column(
        Integer, server_default="1", onupdate=column("version") + 1
    )

    __table_args__ = (
        CheckConstraint("status IN ('pending', 'completed')", name="status"),
        {"sqlite_autoincrement": True},  # never reuse an id (PostgreSQL never does)
    )


class OutboxEntry(Base):
    """A job a committed write calls for, written in the write's own atomic unit; the relay
    moves it into the queue (under its id, as the job's id) and marks it sent."""

    __tablename__ = "outbox"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the job's id
    job: Mapped[str] = mapped_column(String(64))  # the job function's name
    args: Mapped[str] = mapped_column(Text)  # the job's arguments, a JSON object
    requested_by: Mapped[int] = mapped_column(Integer)  # who may read the job's status
    request_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), server_default=utcnow())
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class Revocation(Base):
    """A revoked token (by its jti) until it would have expired: the record of revocations
    (Redis holds a copy, the fast path, that is reloaded from here when it is lost)."""

    __tablename__ = "revocations"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(BigInteger)  # the token's expiry, epoch seconds
    # false until the revocation is known to be in the fast path's copy too
    pushed: Mapped[bool] = mapped_column(Boolean, server_default=false())


# Pruning's query (expired rows), and the sync's (revocations not yet in the fast path).
Index("ix_revocations_expires_at", Revocation.expires_at)
Index(
    "ix_revocations_unpushed",
    Revocation.jti,
    postgresql_where=Revocation.pushed.is_(false()),
    sqlite_where=Revocation.pushed.is_(false()),
)

# The relay's query: the oldest pending entries first.
Index(
    "ix_outbox_pending",
    OutboxEntry.created_at,
    postgresql_where=OutboxEntry.sent_at.is_(None),
    sqlite_where=OutboxEntry.sent_at.is_(None),
)

# The list query's indexes: a user's tasks newest first, with and without the status filter.
Index("ix_tasks_owner_created", Task.owner_id, Task.created_at.desc(), Task.id.desc())
Index(
    "ix_tasks_owner_status_created",
    Task.owner_id,
    Task.status,
    Task.created_at.desc(),
    Task.id.desc(),
)
# Usernames and e-mail addresses are unique in their canonical form (taskapi.domain.names).
Index("uq_users_username_canonical", User.username_canonical, unique=True)
Index("uq_users_email_canonical", User.email_canonical, unique=True)
