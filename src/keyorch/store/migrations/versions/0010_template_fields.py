"""UKO's template fields (description, type, state, the keys' planned activation and expiration, keystore
groups, who made and last changed it) and the managed key's ``template_aligned`` flag.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

Templates made before this keep working: description '', type ["user_defined"], unarchived, no planned
dates, no groups (their explicit keystores stay their distribution); who made them is taken from the audit
trail (NULL where it has no record of it).
Keys made before this are aligned with their template (nothing has changed it since).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("templates") as batch:
        batch.add_column(sa.Column("description", sa.String(1024), nullable=False, server_default=""))
        batch.add_column(sa.Column("types", sa.Text(), nullable=False, server_default='["user_defined"]'))
        batch.add_column(sa.Column("state", sa.String(16), nullable=False, server_default="unarchived"))
        batch.add_column(sa.Column("activation_date", sa.String(100), nullable=True))
        batch.add_column(sa.Column("expiration_date", sa.String(100), nullable=True))
        batch.add_column(sa.Column("keystore_groups", sa.Text(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("created_by", sa.String(128), nullable=True))
        batch.add_column(sa.Column("updated_by", sa.String(128), nullable=True))
    # who made each template is in the audit trail (its accepted template.create record); nothing changed
    # templates after that but disconnecting a keystore, which keyorch did, so the maker is its last changer too
    op.execute(
        sa.text(
            'UPDATE templates SET created_by = (SELECT a."user" FROM audit_log a WHERE a.object_id = templates.id '
            "AND a.action = 'template.create' AND a.outcome = 'accepted' ORDER BY a.seq LIMIT 1)"
        )
    )
    op.execute(sa.text("UPDATE templates SET updated_by = created_by"))
    with op.batch_alter_table("managed_keys") as batch:
        batch.add_column(sa.Column("template_aligned", sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("managed_keys") as batch:
        batch.drop_column("template_aligned")
    with op.batch_alter_table("templates") as batch:
        for column in (
            "updated_by",
            "created_by",
            "keystore_groups",
            "expiration_date",
            "activation_date",
            "state",
            "types",
            "description",
        ):
            batch.drop_column(column)
