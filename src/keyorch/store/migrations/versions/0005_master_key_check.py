"""The master key's check value on the chain head, and the chain keys of earlier master keys.

``audit_chain.key_check`` stays empty here (no master key is at hand during a migration); the
first change made with a master key records it, after checking that key against the chain's
head when the head is sealed with a master key (see store/audit_keys.py).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_chain") as batch:
        batch.add_column(sa.Column("key_check", sa.String(64), nullable=True))
    op.create_table(
        "audit_chain_keys",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_chain_keys")
    with op.batch_alter_table("audit_chain") as batch:
        batch.drop_column("key_check")
