"""UKO's managed key fields: description, tags, activation and expiration dates, who made and last changed it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

Keys made before this keep working: description '', no tags, no dates, and who made them NULL (not known then).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("managed_keys") as batch:
        batch.add_column(sa.Column("description", sa.String(1024), nullable=False, server_default=""))
        batch.add_column(sa.Column("tags", sa.Text, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("activation_date", sa.Date, nullable=True))
        batch.add_column(sa.Column("expiration_date", sa.Date, nullable=True))
        batch.add_column(sa.Column("created_by", sa.String(128), nullable=True))
        batch.add_column(sa.Column("updated_by", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("managed_keys") as batch:
        for column in ("updated_by", "created_by", "expiration_date", "activation_date", "tags", "description"):
            batch.drop_column(column)
