"""Reconciler bookkeeping: key generations, per-target sync generation and retry state, intents journal.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from keyorch.store.schema import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("managed_keys") as batch:
        batch.add_column(sa.Column("generation", sa.Integer, nullable=False, server_default="1"))
    with op.batch_alter_table("key_targets") as batch:
        batch.add_column(sa.Column("synced_generation", sa.Integer, nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("next_attempt_at", UtcDateTime, nullable=True))
    op.create_table(
        "intents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key_id", sa.String(36), nullable=False),
        sa.Column("keystore_id", sa.String(36), nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("started_at", UtcDateTime, nullable=False),
        sa.Column("finished_at", UtcDateTime, nullable=True),
    )
    op.create_index("ix_intents_target", "intents", ["key_id", "keystore_id"])
    op.create_index("ix_intents_status", "intents", ["status"])


def downgrade() -> None:
    op.drop_index("ix_intents_status", table_name="intents")
    op.drop_index("ix_intents_target", table_name="intents")
    op.drop_table("intents")
    with op.batch_alter_table("key_targets") as batch:
        batch.drop_column("next_attempt_at")
        batch.drop_column("attempts")
        batch.drop_column("synced_generation")
    with op.batch_alter_table("managed_keys") as batch:
        batch.drop_column("generation")
