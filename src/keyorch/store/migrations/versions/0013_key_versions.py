"""Key rotation: a managed key's versions, its current one and when it was last rotated; each target's
version in its keystore and the provider's id of that primary version.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04

Keys made before this have one version, 1, made when the key was (by whoever made it); every keystore
serves it (key_version 1); the provider's version ids are learned at the first rotation. A downgrade forgets
every rotation (SQLite keeps managed_keys' two new columns: rebuilding that table would cascade to the keys'
targets).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from keyorch.store.schema import UtcDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _columns(table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def upgrade() -> None:
    present = _columns("managed_keys")  # SQLite keeps them across a downgrade (see there)
    with op.batch_alter_table("managed_keys") as batch:
        if "current_version" not in present:
            batch.add_column(sa.Column("current_version", sa.Integer(), nullable=False, server_default="1"))
        if "rotated_at" not in present:
            batch.add_column(sa.Column("rotated_at", UtcDateTime(), nullable=True))
    with op.batch_alter_table("key_targets") as batch:
        batch.add_column(sa.Column("key_version", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("primary_version_id", sa.String(512), nullable=True))
    op.create_table(
        "key_versions",
        sa.Column("key_id", sa.String(36), sa.ForeignKey("managed_keys.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=True),
    )
    op.execute(
        sa.text(
            "INSERT INTO key_versions (key_id, version, created_at, created_by) "
            "SELECT id, 1, created_at, created_by FROM managed_keys"
        )
    )


def downgrade() -> None:
    op.drop_table("key_versions")
    with op.batch_alter_table("key_targets") as batch:
        batch.drop_column("primary_version_id")
        batch.drop_column("key_version")
    if op.get_bind().dialect.name == "sqlite":
        # dropping a column rebuilds the table on SQLite, and dropping managed_keys would cascade to every
        # key's targets (foreign_keys=ON): the two columns stay, unused, and the upgrade finds them there
        op.execute(sa.text("UPDATE managed_keys SET current_version = 1, rotated_at = NULL"))
        return
    with op.batch_alter_table("managed_keys") as batch:
        batch.drop_column("rotated_at")
        batch.drop_column("current_version")
