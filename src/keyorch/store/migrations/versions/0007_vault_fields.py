"""UKO's vault fields: description, recovery key label, who made and last changed it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

Vaults made before this keep working: description '' and the rest NULL (not known then).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vaults") as batch:
        batch.add_column(sa.Column("description", sa.String(1024), nullable=False, server_default=""))
        batch.add_column(sa.Column("recovery_key_label", sa.String(128), nullable=True))
        batch.add_column(sa.Column("created_by", sa.String(128), nullable=True))
        batch.add_column(sa.Column("updated_by", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vaults") as batch:
        batch.drop_column("updated_by")
        batch.drop_column("created_by")
        batch.drop_column("recovery_key_label")
        batch.drop_column("description")
