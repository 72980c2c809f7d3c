"""Add users.is_active: a deactivated account cannot log in, and its tokens are refused.

Existing accounts start active.

SQLite adds and drops the column in place (ALTER TABLE ADD/DROP COLUMN), so the table keeps
its AUTOINCREMENT and its indexes; no rebuild.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "users", sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False)
    )


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute("ALTER TABLE users DROP COLUMN is_active")  # SQLite 3.35+, in place
    else:
        op.drop_column("users", "is_active")
