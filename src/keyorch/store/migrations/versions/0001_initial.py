"""Initial schema: vaults, keystores, templates, managed keys, key targets, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from keyorch.store.schema import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _stamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "vaults",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("dual_auth", sa.Boolean, nullable=False),
        *_stamps(),
    )
    op.create_table(
        "keystores",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("vault_id", sa.String(36), sa.ForeignKey("vaults.id"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("settings", sa.Text, nullable=False),
        sa.Column("credentials_mode", sa.String(16), nullable=False),
        sa.Column("credentials", sa.LargeBinary, nullable=True),
        sa.Column("drift_policy", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        *_stamps(),
    )
    op.create_index("ix_keystores_vault", "keystores", ["vault_id"])
    op.create_table(
        "templates",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("vault_id", sa.String(36), sa.ForeignKey("vaults.id"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("naming_scheme", sa.String(128), nullable=False),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("keystore_ids", sa.Text, nullable=False),
        sa.Column("initial_state", sa.String(16), nullable=False),
        *_stamps(),
        sa.UniqueConstraint("vault_id", "name", name="uq_templates_vault_name"),
    )
    op.create_table(
        "managed_keys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("vault_id", sa.String(36), sa.ForeignKey("vaults.id"), nullable=False),
        sa.Column("template_id", sa.String(36), sa.ForeignKey("templates.id"), nullable=True),
        sa.Column("label", sa.String(128), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_code", sa.Integer, nullable=False),
        sa.Column("deletion_authorized_by", sa.String(128), nullable=True),
        sa.Column("deletion_authorized_at", UtcDateTime, nullable=True),
        sa.Column("deletion_authorization_expires_at", UtcDateTime, nullable=True),
        sa.Column("destroy_force", sa.Boolean, nullable=False),
        *_stamps(),
        sa.UniqueConstraint("vault_id", "label", name="uq_keys_vault_label"),
    )
    op.create_index("ix_keys_state", "managed_keys", ["state"])
    op.create_table(
        "key_targets",
        sa.Column("key_id", sa.String(36), sa.ForeignKey("managed_keys.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("keystore_id", sa.String(36), sa.ForeignKey("keystores.id"), primary_key=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("sync_flag", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("key_id_in_keystore", sa.String(512), nullable=True),
        sa.Column("pending_destruction_until", UtcDateTime, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("updated_at", UtcDateTime, nullable=True),
    )
    op.create_index("ix_targets_keystore", "key_targets", ["keystore_id"])
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("user", sa.String(128), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("object_type", sa.String(32), nullable=False),
        sa.Column("object_id", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("before", sa.Text, nullable=True),
        sa.Column("after", sa.Text, nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_index("ix_audit_object", "audit_log", ["object_id"])


def downgrade() -> None:
    for index, table in (
        ("ix_audit_object", "audit_log"),
        ("ix_targets_keystore", "key_targets"),
        ("ix_keys_state", "managed_keys"),
        ("ix_keystores_vault", "keystores"),
    ):
        op.drop_index(index, table_name=table)
    for table in ("audit_log", "key_targets", "managed_keys", "templates", "keystores", "vaults"):
        op.drop_table(table)
