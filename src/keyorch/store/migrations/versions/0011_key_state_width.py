"""A managed key's state column holds UKO's longest state name, destroyed_compromised (21 characters).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04

managed_keys.state was VARCHAR(16): PostgreSQL refused to store destroyed_compromised, so destroying a
compromised key failed there (SQLite does not enforce a VARCHAR's length). Widened to 32 on PostgreSQL; on
SQLite the declared length changes nothing, and changing it would mean rebuilding managed_keys (whose DROP
would cascade to key_targets under foreign_keys=ON), so SQLite is left as it is.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "managed_keys", "state", type_=sa.String(32), existing_type=sa.String(16), existing_nullable=False
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "managed_keys", "state", type_=sa.String(16), existing_type=sa.String(32), existing_nullable=False
        )
