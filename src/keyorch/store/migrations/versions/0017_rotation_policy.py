"""Rotation schedules: a rotation policy (an ISO 8601 duration) on templates and keys, and when a key first
became active (a schedule counts from the key's last rotation, else from then, else from its creation).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04

Templates and keys made before this are on no schedule; a key active already counts from its creation. A
downgrade forgets every policy (SQLite keeps the new columns, cleared: rebuilding those tables would break the
keys' references or cascade to their targets).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from keyorch.store.schema import UtcDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def _columns(table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def upgrade() -> None:
    if "rotation_policy" not in _columns("templates"):  # SQLite keeps it across a downgrade (see there)
        with op.batch_alter_table("templates") as batch:
            batch.add_column(sa.Column("rotation_policy", sa.String(40), nullable=True))
    present = _columns("managed_keys")  # SQLite keeps them across a downgrade (see there)
    with op.batch_alter_table("managed_keys") as batch:
        if "rotation_policy" not in present:
            batch.add_column(sa.Column("rotation_policy", sa.String(40), nullable=True))
        if "activated_at" not in present:
            batch.add_column(sa.Column("activated_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # dropping a column rebuilds the table on SQLite, and dropping templates or managed_keys would break the
        # keys' references to them or cascade to their targets (foreign_keys=ON): the columns stay, unused and
        # cleared, and the upgrade finds them there
        op.execute(sa.text("UPDATE templates SET rotation_policy = NULL"))
        op.execute(sa.text("UPDATE managed_keys SET rotation_policy = NULL, activated_at = NULL"))
        return
    with op.batch_alter_table("templates") as batch:
        batch.drop_column("rotation_policy")
    with op.batch_alter_table("managed_keys") as batch:
        batch.drop_column("activated_at")
        batch.drop_column("rotation_policy")
