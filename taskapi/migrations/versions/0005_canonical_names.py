"""Usernames and e-mail addresses unique in their canonical form (NFKC, then case folding).

The canonical forms are computed in Python and stored in `username_canonical` and
`email_canonical`, which lookups, limits and uniqueness compare on both databases; unique
indexes on them replace the ones on lower(), which SQLite applies to ASCII only and PostgreSQL
by its own rules (`İ` becomes `i` there, not in Python). The function is imported from
taskapi.domain.names rather than copied, so the stored forms are the ones the code looks up.

Rows whose canonical forms collide are not merged or dropped: the upgrade stops, naming them
(ids and names), before it changes anything, for an operator to rename or delete all but one
of each group. The downgrade stops the same way when the database's lower() would fold two
rows together (on PostgreSQL `İnfo@x.org` and `info@x.org`, which are distinct canonically).

On SQLite the users table is rebuilt (copy and move) to make the columns NOT NULL, keeping
AUTOINCREMENT and every named constraint; PostgreSQL alters the columns in place.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-15
"""

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import RowMapping

from taskapi.domain.names import canonical

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("username", "email")
CANONICAL_INDEXES = {
    "uq_users_username_canonical": "username_canonical",
    "uq_users_email_canonical": "email_canonical",
}
LOWER_INDEXES = {"uq_users_username_lower": "username", "uq_users_email_lower": "email"}
SHOWN = 10
USERS_TABLE = {"sqlite_autoincrement": True}  # as 0003 declared it: never reuse an id
KeyOf = Callable[[RowMapping, str], str]  # (a row of users, a column) -> what the index compares


def _shared(rows: Sequence[RowMapping], column: str, key_of: KeyOf) -> str | None:
    """The groups of rows whose `column` has the same key, by id and value; None if none."""
    groups: dict[str, list[RowMapping]] = {}
    for row in rows:
        groups.setdefault(key_of(row, column), []).append(row)
    shared = [group for group in groups.values() if len(group) > 1]
    if not shared:
        return None
    described = [
        " and ".join(f"id {row['id']} {row[column]!r}" for row in group) for group in shared[:SHOWN]
    ]
    more = f", and {len(shared) - SHOWN} more" if len(shared) > SHOWN else ""
    return f"{column}: " + ", ".join(described) + more


def _refuse(rows: Sequence[RowMapping], key_of: KeyOf, message: str) -> None:
    """Stop with `message` and every group of rows that would break a unique index."""
    problems = [found for column in COLUMNS if (found := _shared(rows, column, key_of))]
    if problems:
        raise RuntimeError(message + " " + "; ".join(problems))


def _refuse_foreign_keys_on() -> None:
    """Rebuilding `users` drops the old table: with foreign keys on, SQLite would cascade that
    to every task. Our migration engine never turns them on; a caller's connection might."""
    if op.get_bind().exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "migration 0005 rebuilds the users table: run it on a SQLite connection with "
            "PRAGMA foreign_keys=OFF (as `taskapi db upgrade` does), or the tasks would be deleted"
        )


def upgrade() -> None:
    query = sa.text("SELECT id, username, email FROM users ORDER BY id")
    users = list(op.get_bind().execute(query).mappings())
    _refuse(
        users,
        lambda row, column: canonical(row[column]),
        "migration 0005 makes usernames and e-mails unique in their canonical form (NFKC, "
        "case folded), but some accounts share one; rename or delete all but one of each "
        "before upgrading.",
    )
    if op.get_context().dialect.name == "sqlite":
        _refuse_foreign_keys_on()
    for name in LOWER_INDEXES:
        op.drop_index(name, table_name="users")
    for name in CANONICAL_INDEXES.values():
        op.add_column("users", sa.Column(name, sa.Text(), nullable=True))
    if users:
        op.get_bind().execute(
            sa.text(
                "UPDATE users SET username_canonical = :username, email_canonical = :email "
                "WHERE id = :id"
            ),
            [
                {
                    "id": row["id"],
                    "username": canonical(row["username"]),
                    "email": canonical(row["email"]),
                }
                for row in users
            ],
        )
    with op.batch_alter_table("users", table_kwargs=USERS_TABLE) as batch_op:
        for name in CANONICAL_INDEXES.values():
            batch_op.alter_column(name, existing_type=sa.Text(), nullable=False)
    for index, name in CANONICAL_INDEXES.items():
        op.create_index(index, "users", [name], unique=True)


def downgrade() -> None:
    query = sa.text(
        "SELECT id, username, email, lower(username) AS lower_username, "
        "lower(email) AS lower_email FROM users ORDER BY id"
    )
    users = list(op.get_bind().execute(query).mappings())
    _refuse(
        users,
        lambda row, column: row[f"lower_{column}"],
        "downgrading 0005 restores the unique indexes on lower(), but this database's lower() "
        "folds some accounts together that differ canonically; rename or delete all but one "
        "of each before downgrading.",
    )
    if op.get_context().dialect.name == "sqlite":
        _refuse_foreign_keys_on()
    for index in CANONICAL_INDEXES:
        op.drop_index(index, table_name="users")
    with op.batch_alter_table("users", table_kwargs=USERS_TABLE) as batch_op:
        for name in CANONICAL_INDEXES.values():
            batch_op.drop_column(name)
    for index, column in LOWER_INDEXES.items():
        op.create_index(index, "users", [sa.text(f"lower({column})")], unique=True)
