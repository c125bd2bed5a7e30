"""UKO's keystore fields: description, location, groups, who made and last changed it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

Keystores made before this keep working: description and location '', no groups ('[]'), and who made
and changed them NULL (not known then).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("keystores") as batch:
        batch.add_column(sa.Column("description", sa.String(1024), nullable=False, server_default=""))
        batch.add_column(sa.Column("location", sa.String(128), nullable=False, server_default=""))
        batch.add_column(sa.Column("groups", sa.Text(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("created_by", sa.String(128), nullable=True))
        batch.add_column(sa.Column("updated_by", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("keystores") as batch:
        batch.drop_column("updated_by")
        batch.drop_column("created_by")
        batch.drop_column("groups")
        batch.drop_column("location")
        batch.drop_column("description")
