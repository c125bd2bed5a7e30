"""Tamper-evident audit chain: role, prev_seq, chain_key and hmac on every record; the chain head.

Records written before this revision are sealed here with a new random key kept in the
``audit_chain`` row (no master key is at hand during a migration); see store/audit_chain.py.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from keyorch.store.audit_chain import seal_existing
from keyorch.store.schema import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The two tables as this revision leaves them (schema.py may grow later; this must not).
_log = sa.table(
    "audit_log",
    *(sa.column(name) for name in ("seq", "user", "source", "action", "object_type", "object_id", "outcome")),
    sa.column("at", UtcDateTime),
    *(sa.column(name) for name in ("before", "after", "detail", "role", "prev_seq", "chain_key", "hmac")),
)
_chain = sa.table(
    "audit_chain",
    *(sa.column(name) for name in ("id", "last_seq", "last_hmac", "chain_key", "head_hmac")),
    sa.column("stored_key", sa.LargeBinary),
)


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("role", sa.String(64), nullable=True))
        batch.add_column(sa.Column("prev_seq", sa.Integer, nullable=True))
        batch.add_column(sa.Column("chain_key", sa.String(16), nullable=True))
        batch.add_column(sa.Column("hmac", sa.String(64), nullable=True))
    op.create_table(
        "audit_chain",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("stored_key", sa.LargeBinary, nullable=False),
        sa.Column("last_seq", sa.Integer, nullable=False),
        sa.Column("last_hmac", sa.String(64), nullable=False),
        sa.Column("chain_key", sa.String(16), nullable=False),
        sa.Column("head_hmac", sa.String(64), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_audit_chain_one_row"),
    )
    seal_existing(op.get_bind(), _log, _chain)
    with op.batch_alter_table("audit_log") as batch:
        batch.alter_column("chain_key", existing_type=sa.String(16), nullable=False)
        batch.alter_column("hmac", existing_type=sa.String(64), nullable=False)


def downgrade() -> None:
    op.drop_table("audit_chain")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("hmac")
        batch.drop_column("chain_key")
        batch.drop_column("prev_seq")
        batch.drop_column("role")
