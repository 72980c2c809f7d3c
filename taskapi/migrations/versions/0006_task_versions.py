"""Add tasks.version: each task's version, the validator of its ETag (existing rows start at 1).

SQLite adds and drops the column in place (ALTER TABLE ADD/DROP COLUMN), so the table keeps
its AUTOINCREMENT and its indexes; no rebuild.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("version", sa.Integer(), server_default="1", nullable=False))


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute("ALTER TABLE tasks DROP COLUMN version")  # SQLite 3.35+, in place
    else:
        op.drop_column("tasks", "version")
