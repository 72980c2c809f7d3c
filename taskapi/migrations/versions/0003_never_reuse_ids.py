"""Ids are never reused (SQLite AUTOINCREMENT) and tokens carry the account's generation.

On SQLite both tables are rebuilt (copy and move) with AUTOINCREMENT, which SQLite can only
declare inline on the column: the primary keys lose their `pk_*` names there, every other
constraint, index and foreign key keeps its name. PostgreSQL's sequences never hand out an id
twice, so there only the column is added. Existing accounts start at generation 0, the value a
token issued before this revision is read as.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TASK_INDEXES: dict[str, list[str | sa.TextClause]] = {
    "ix_tasks_owner_created": ["owner_id", sa.text("created_at DESC"), sa.text("id DESC")],
    "ix_tasks_owner_status_created": [
        "owner_id",
        "status",
        sa.text("created_at DESC"),
        sa.text("id DESC"),
    ],
}


def _refuse_foreign_keys_on() -> None:
    """Rebuilding `users` drops the old table: with foreign keys on, SQLite would cascade that
    to every task. Our migration engine never turns them on; a caller's connection might."""
    if op.get_bind().exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "migration 0003 rebuilds the users table: run it on a SQLite connection with "
            "PRAGMA foreign_keys=OFF (as `taskapi db upgrade` does), or the tasks would be deleted"
        )


def _generation() -> sa.Column[int]:
    return sa.Column("token_generation", sa.BigInteger(), server_default="0", nullable=False)


def _rebuild_sqlite_tables(autoincrement: bool) -> None:
    """Copy both tables into new ones with (or without) AUTOINCREMENT and the generation column,
    the indexes recreated as they were (batch mode's reflection would lose their DESC order)."""
    _refuse_foreign_keys_on()
    for name in TASK_INDEXES:
        op.drop_index(name, table_name="tasks")
    kwargs = {"sqlite_autoincrement": autoincrement}
    with op.batch_alter_table("users", recreate="always", table_kwargs=kwargs) as batch_op:
        if autoincrement:
            batch_op.add_column(_generation())
        else:
            batch_op.drop_column("token_generation")
    with op.batch_alter_table("tasks", recreate="always", table_kwargs=kwargs):
        pass
    for name, columns in TASK_INDEXES.items():
        op.create_index(name, "tasks", columns)


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        _rebuild_sqlite_tables(autoincrement=True)
    else:
        op.add_column("users", _generation())


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        _rebuild_sqlite_tables(autoincrement=False)
    else:
        op.drop_column("users", "token_generation")
