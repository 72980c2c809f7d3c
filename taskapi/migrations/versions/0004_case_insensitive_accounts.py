"""Usernames and e-mail addresses unique whatever their case (unique indexes on lower()).

Rows that already differ only by case are not merged or dropped: the upgrade stops with a
message naming them, for an operator to rename or delete one of each pair first.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {"uq_users_username_lower": "username", "uq_users_email_lower": "email"}
SHOWN = 10


def _refuse_case_duplicates() -> None:
    bind = op.get_bind()
    problems = []
    for column in INDEXES.values():
        rows = bind.execute(
            sa.text(
                f"SELECT lower({column}), count(*) FROM users GROUP BY lower({column}) "
                f"HAVING count(*) > 1 ORDER BY lower({column}) LIMIT {SHOWN + 1}"
            )
        ).all()
        if rows:
            shown = ", ".join(f"{value!r} ({count} rows)" for value, count in rows[:SHOWN])
            more = ", ..." if len(rows) > SHOWN else ""
            problems.append(f"{column}: {shown}{more}")
    if problems:
        raise RuntimeError(
            "migration 0004 makes usernames and e-mails unique regardless of case, but some "
            "accounts differ only by case; rename or delete one of each before upgrading. "
            + "; ".join(problems)
        )


def upgrade() -> None:
    _refuse_case_duplicates()
    for name, column in INDEXES.items():
        op.create_index(name, "users", [sa.text(f"lower({column})")], unique=True)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="users")
