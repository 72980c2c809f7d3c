"""Add the outbox: the jobs committed writes call for, until the relay has queued them.

On PostgreSQL a trigger NOTIFYs `taskapi_outbox` after every insert (delivered at commit), which
wakes the relays that LISTEN; SQLite has no such thing (its relay polls, or is woken in
process).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now() -> sa.TextClause:
    """The database's current time; on SQLite in SQLAlchemy's own text format."""
    if op.get_context().dialect.name == "sqlite":
        return sa.text("(strftime('%Y-%m-%d %H:%M:%f000', 'now'))")
    return sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("job", sa.String(64), nullable=False),
        sa.Column("args", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    pending = sa.column("sent_at").is_(None)
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["created_at"],
        postgresql_where=pending,
        sqlite_where=pending,
    )

    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION taskapi_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN PERFORM pg_notify('taskapi_outbox', ''); RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox "
            "FOR EACH STATEMENT EXECUTE FUNCTION taskapi_outbox_notify()"
        )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER outbox_notify ON outbox")
        op.execute("DROP FUNCTION taskapi_outbox_notify()")
    op.drop_index("ix_outbox_pending", table_name="outbox")
    op.drop_table("outbox")
