"""What each keystore calls a managed key (UKO's ``label_in_keystore``), kept per target.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04

Keys are now named in every keystore by their template's naming scheme, fixed when the key is made. A key made
before this was named by keyorch's identity ``keyorch-<id>`` in Azure Key Vault and Cloud KMS and by the alias
``alias/keyorch/<id>`` in AWS KMS (Key Protect: the key's own name, its alias ``keyorch-<id>``), and keeps that
name: its targets get it here, computed as that keyorch did (the rules are copied, not imported, so this migration
stays what it was whatever the adapters become). A target with no name (NULL) is found by the adapter's
``keyorch-<id>`` identity, exactly as before.
"""

from __future__ import annotations

import hashlib
import re

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_AWS_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")
_AZURE_ID = re.compile(r"[0-9a-zA-Z-]{1,118}")
_GOOGLE_ID = re.compile(r"[a-zA-Z0-9_-]{1,63}")
_IBM_ALIAS = re.compile(r"[A-Za-z0-9_-]{2,90}")


def legacy_name(kind: str, key_id: str, name: str) -> str | None:
    """What the keystore calls a key made before keys were named by their template."""
    if kind == "aws_kms":
        return f"alias/keyorch/{key_id}" if _AWS_ID.fullmatch(key_id) else None
    if kind == "azure_key_vault":
        if _AZURE_ID.fullmatch(key_id):
            return "keyorch-" + key_id.lower()
        return "keyorch-x" + hashlib.sha256(key_id.encode()).hexdigest()
    if kind == "google_kms":
        return f"keyorch-{key_id}" if _GOOGLE_ID.fullmatch(f"keyorch-{key_id}") else None
    if kind == "ibm_key_protect":
        shown = name.strip()[:90]
        if len(shown) >= 2:
            return shown
        return f"keyorch-{key_id}" if _IBM_ALIAS.fullmatch(f"keyorch-{key_id}") else None
    return None


def upgrade() -> None:
    with op.batch_alter_table("key_targets") as batch:
        batch.add_column(sa.Column("label_in_keystore", sa.String(512), nullable=True))
    bind = op.get_bind()
    targets = sa.table("key_targets", sa.column("key_id"), sa.column("keystore_id"), sa.column("label_in_keystore"))
    keys = sa.table("managed_keys", sa.column("id"), sa.column("name"))
    keystores = sa.table("keystores", sa.column("id"), sa.column("type"))
    rows = bind.execute(
        sa.select(targets.c.key_id, targets.c.keystore_id, keys.c.name, keystores.c.type).select_from(
            targets.join(keys, keys.c.id == targets.c.key_id).join(keystores, keystores.c.id == targets.c.keystore_id)
        )
    ).all()
    params = [
        {"k": key_id, "s": keystore_id, "n": found}
        for key_id, keystore_id, name, kind in rows
        if (found := legacy_name(kind, key_id, name)) is not None
    ]
    if params:
        bind.execute(
            targets.update()
            .where(targets.c.key_id == sa.bindparam("k"), targets.c.keystore_id == sa.bindparam("s"))
            .values(label_in_keystore=sa.bindparam("n")),
            params,
        )


def downgrade() -> None:
    with op.batch_alter_table("key_targets") as batch:
        batch.drop_column("label_in_keystore")
