"""Add revocations: the record of revoked tokens (by jti) until they would have expired.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "revocations",
        sa.Column("jti", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("pushed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_revocations")),
    )
    op.create_index("ix_revocations_expires_at", "revocations", ["expires_at"])
    unpushed = sa.column("pushed").is_(sa.false())
    op.create_index(
        "ix_revocations_unpushed",
        "revocations",
        ["jti"],
        postgresql_where=unpushed,
        sqlite_where=unpushed,
    )


def downgrade() -> None:
    op.drop_index("ix_revocations_unpushed", table_name="revocations")
    op.drop_index("ix_revocations_expires_at", table_name="revocations")
    op.drop_table("revocations")
