"""UKO's ``deactivate_on_rotation`` on key templates (what keys made from them get) and on managed keys.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04

Templates and keys made before this have it off: a rotation leaves the older versions enabled, as before. On
SQLite a downgrade keeps both columns, unused (dropping a column rebuilds the table, and rebuilding templates or
managed_keys breaks the foreign keys of the keys and targets that refer to them), and the upgrade finds them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

COLUMN = "deactivate_on_rotation"
TABLES = ("templates", "managed_keys")


def _columns(table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def upgrade() -> None:
    for table in TABLES:
        if COLUMN in _columns(table):  # kept by a downgrade on SQLite (see there)
            op.execute(sa.text(f"UPDATE {table} SET deactivate_on_rotation = false"))  # noqa: S608 (a constant)
            continue
        with op.batch_alter_table(table) as batch:
            # a literal default, so SQLite adds the column in place: an expression (sa.false()) would make Alembic
            # rebuild the table, which breaks the foreign keys of the keys and targets that refer to it
            batch.add_column(sa.Column(COLUMN, sa.Boolean(), nullable=False, server_default="0"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return  # the columns stay (see the module's note); the upgrade resets them
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column(COLUMN)
