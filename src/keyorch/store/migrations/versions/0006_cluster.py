"""Replicas sharing one database: membership, cluster-wide jobs, shared listings (store/cluster.py).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from keyorch.store.schema import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("started_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "cluster_jobs",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=True),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("due_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "keystore_listings",
        sa.Column("keystore_id", sa.String(36), primary_key=True),
        sa.Column("taken_at", UtcDateTime, nullable=False),
        sa.Column("listed_by", sa.String(128), nullable=False),
        sa.Column("entries", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("keystore_listings")
    op.drop_table("cluster_jobs")
    op.drop_table("replicas")
