"""Tables (SQLAlchemy Core). Alembic migrations create them; tests check the two agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

vaults = Table(
    "vaults",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("dual_auth", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    Column("description", String(1024), nullable=False, server_default=""),
    Column("recovery_key_label", String(128), nullable=True),
    Column("created_by", String(128), nullable=True),
    Column("updated_by", String(128), nullable=True),
)

keystores = Table(
    "keystores",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("vault_id", String(36), ForeignKey("vaults.id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("type", String(32), nullable=False),
    Column("settings", Text, nullable=False),
    Column("credentials_mode", String(16), nullable=False),
    Column("credentials", LargeBinary, nullable=True),
    Column("drift_policy", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    Column("description", String(1024), nullable=False, server_default=""),
    Column("location", String(128), nullable=False, server_default=""),
    Column("groups", Text, nullable=False, server_default="[]"),  # JSON list of group names
    Column("created_by", String(128), nullable=True),
    Column("updated_by", String(128), nullable=True),
    Index("ix_keystores_vault", "vault_id"),
)

templates = Table(
    "templates",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("vault_id", String(36), ForeignKey("vaults.id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("naming_scheme", String(128), nullable=False),
    Column("algorithm", String(16), nullable=False),
    Column("size", Integer, nullable=False),
    Column("keystore_ids", Text, nullable=False),
    Column("initial_state", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    Column("description", String(1024), nullable=False, server_default=""),
    Column("types", Text, nullable=False, server_default='["user_defined"]'),  # JSON list (UKO's ``type``)
    Column("state", String(16), nullable=False, server_default="unarchived"),
    Column("activation_date", String(100), nullable=True),
    Column("expiration_date", String(100), nullable=True),
    Column("keystore_groups", Text, nullable=False, server_default="[]"),  # JSON list of {group, type}
    Column("created_by", String(128), nullable=True),
    Column("updated_by", String(128), nullable=True),
    Column("deactivate_on_rotation", Boolean, nullable=False, server_default=false()),
    Column("rotation_policy", String(40), nullable=True),  # ISO 8601 duration (P90D)
    UniqueConstraint("vault_id", "name", name="uq_templates_vault_name"),
)

managed_keys = Table(
    "managed_keys",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("vault_id", String(36), ForeignKey("vaults.id"), nullable=False),
    Column("template_id", String(36), ForeignKey("templates.id"), nullable=True),
    Column("label", String(128), nullable=False),
    Column("name", String(256), nullable=False),
    Column("algorithm", String(16), nullable=False),
    Column("size", Integer, nullable=False),
    Column("state", String(32), nullable=False),
    Column("state_code", Integer, nullable=False),
    Column("deletion_authorized_by", String(128), nullable=True),
    Column("deletion_authorized_at", UtcDateTime, nullable=True),
    Column("deletion_authorization_expires_at", UtcDateTime, nullable=True),
    Column("destroy_force", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    Column("generation", Integer, nullable=False, server_default="1"),
    Column("description", String(1024), nullable=False, server_default=""),
    Column("tags", Text, nullable=False, server_default="[]"),  # JSON list of {"name", "value"}
    Column("activation_date", Date, nullable=True),
    Column("expiration_date", Date, nullable=True),
    Column("created_by", String(128), nullable=True),
    Column("updated_by", String(128), nullable=True),
    Column("template_aligned", Boolean, nullable=False, server_default=true()),
    Column("current_version", Integer, nullable=False, server_default="1"),
    Column("rotated_at", UtcDateTime, nullable=True),
    Column("deactivate_on_rotation", Boolean, nullable=False, server_default=false()),
    Column("rotation_policy", String(40), nullable=True),  # the key's own, overriding its template's
    Column("activated_at", UtcDateTime, nullable=True),
    UniqueConstraint("vault_id", "label", name="uq_keys_vault_label"),
    Index("ix_keys_state", "state"),
)

key_targets = Table(
    "key_targets",
    metadata,
    Column("key_id", String(36), ForeignKey("managed_keys.id", ondelete="CASCADE"), primary_key=True),
    Column("keystore_id", String(36), ForeignKey("keystores.id"), primary_key=True),
    Column("status", String(32), nullable=False),
    Column("sync_flag", String(16), nullable=False),
    Column("reason", String(64), nullable=True),
    Column("key_id_in_keystore", String(512), nullable=True),
    Column("pending_destruction_until", UtcDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("updated_at", UtcDateTime, nullable=True),
    Column("synced_generation", Integer, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    Column("label_in_keystore", String(512), nullable=True),
    Column("key_version", Integer, nullable=False, server_default="1"),
    Column("primary_version_id", String(512), nullable=True),
    Column("adopted", Boolean, nullable=False, server_default=false()),
    Index("ix_targets_keystore", "keystore_id"),
)

#: A managed key's versions: 1 made with the key, one more for each rotation.
key_versions = Table(
    "key_versions",
    metadata,
    Column("key_id", String(36), ForeignKey("managed_keys.id", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(128), nullable=True),
)

#: the provider's id of each version of a key in each keystore, as keyorch learned them (at each rotation there:
#: the version it rotated from and the one it made); the primary's is also the target's ``primary_version_id``
key_version_ids = Table(
    "key_version_ids",
    metadata,
    Column("key_id", String(36), ForeignKey("managed_keys.id", ondelete="CASCADE"), primary_key=True),
    Column("keystore_id", String(36), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("version_id_in_keystore", String(512), nullable=False),
)

#: The journal of mutating provider calls: written before the call ("started") and after it
#: ("succeeded" / "failed"), so a process killed in between knows a call may have happened.
intents = Table(
    "intents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_id", String(36), nullable=False),
    Column("keystore_id", String(36), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("action", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    Index("ix_intents_target", "key_id", "keystore_id"),
    Index("ix_intents_status", "status"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("user", String(128), nullable=False),
    Column("source", String(16), nullable=False),
    Column("action", String(64), nullable=False),
    Column("object_type", String(32), nullable=False),
    Column("object_id", String(64), nullable=True),
    Column("outcome", String(16), nullable=False),
    Column("before", Text, nullable=True),
    Column("after", Text, nullable=True),
    Column("detail", Text, nullable=True),
    Column("role", String(64), nullable=True),
    Column("prev_seq", Integer, nullable=True),
    Column("chain_key", String(16), nullable=False),
    Column("hmac", String(64), nullable=False),
    Index("ix_audit_object", "object_id"),
)

#: The head of the audit chain (one row, id 1): the last record's seq and HMAC, sealed, and the
#: random key that seals records when no master key is configured (see store/audit_chain.py).
audit_chain = Table(
    "audit_chain",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("stored_key", LargeBinary, nullable=False),
    Column("last_seq", Integer, nullable=False),
    Column("last_hmac", String(64), nullable=False),
    Column("chain_key", String(16), nullable=False),
    Column("head_hmac", String(64), nullable=False),
    #: the master key's check value (crypto.MasterKey.check_value), once a master key is in use
    Column("key_check", String(64), nullable=True),
    CheckConstraint("id = 1", name="ck_audit_chain_one_row"),
)

#: One row per master-key rotation: the chain key in force before record ``seq`` (the rotation's own
#: record, the first sealed with the new key), AES-GCM-encrypted under a subkey of the new chain key.
audit_chain_keys = Table(
    "audit_chain_keys",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("wrapped_key", LargeBinary, nullable=False),
)

#: Per-key leases (store/leases.py): who may act on a key now, with an epoch that grows per claim.
key_leases = Table(
    "key_leases",
    metadata,
    Column("key_id", String(36), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

#: The daemons sharing this database (store/cluster.py): each one's row lives while it heartbeats.
replicas = Table(
    "replicas",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("started_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

#: Work done once per interval for the whole cluster (the periodic listing): who does it, until when.
cluster_jobs = Table(
    "cluster_jobs",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=True),
    Column("epoch", Integer, nullable=False),
    Column("due_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

#: The latest listing of each keystore, shared by the replicas (one lists, every one plans from it).
keystore_listings = Table(
    "keystore_listings",
    metadata,
    Column("keystore_id", String(36), primary_key=True),
    Column("taken_at", UtcDateTime, nullable=False),
    Column("listed_by", String(128), nullable=False),
    Column("entries", Text, nullable=False),
)
