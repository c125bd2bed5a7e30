"""Targets adopted from keys that existed in their keystore before keyorch managed them (issue 16).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04

An adopted target's key carries no keyorch identity (alias, tag, label, name): keyorch knows it only by the
provider id it recorded at adoption, so a keystore's listing (which finds keys by that identity) never decides
for it; the reconciler reads it by its id. Every target recorded before this was made by keyorch (false).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("key_targets") as batch:
        batch.add_column(sa.Column("adopted", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("key_targets") as batch:
        batch.drop_column("adopted")
