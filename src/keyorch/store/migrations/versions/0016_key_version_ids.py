"""The provider's id of each version of a key in each keystore (``key versions`` shows them for every version, not
only each keystore's primary).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04

Keys rotated before this have only their primaries' ids (key_targets.primary_version_id); the ids of older
versions are learned from the next rotation on. A downgrade drops the table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_version_ids",
        sa.Column("key_id", sa.String(36), sa.ForeignKey("managed_keys.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("keystore_id", sa.String(36), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("version_id_in_keystore", sa.String(512), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("key_version_ids")
