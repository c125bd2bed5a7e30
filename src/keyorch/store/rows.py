"""Conversion between table rows and frozen domain records."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from keyorch.audit import AuditRecord
from keyorch.domain.models import (
    CredentialsMode,
    DeletionAuthorization,
    DriftPolicy,
    GroupEntry,
    Keystore,
    KeystoreStatus,
    KeystoreType,
    KeyTemplate,
    ManagedKey,
    SyncFlag,
    SyncReason,
    Tag,
    Target,
    TargetStatus,
    TemplateState,
    Vault,
)
from keyorch.domain.states import KeyState

Row = Mapping[Any, Any]


def vault_from_row(row: Row) -> Vault:
    return Vault(
        id=row["id"],
        name=row["name"],
        dual_auth=bool(row["dual_auth"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
        description=row["description"],
        recovery_key_label=row["recovery_key_label"],
        created_by=row["created_by"],
        updated_by=row["updated_by"],
    )


def vault_to_row(v: Vault) -> dict[str, Any]:
    return {
        "id": v.id,
        "name": v.name,
        "dual_auth": v.dual_auth,
        "created_at": v.created_at,
        "updated_at": v.updated_at,
        "version": v.version,
        "description": v.description,
        "recovery_key_label": v.recovery_key_label,
        "created_by": v.created_by,
        "updated_by": v.updated_by,
    }


def keystore_from_row(row: Row) -> Keystore:
    return Keystore(
        id=row["id"],
        vault_id=row["vault_id"],
        name=row["name"],
        type=KeystoreType(row["type"]),
        settings=json.loads(row["settings"]),
        credentials_mode=CredentialsMode(row["credentials_mode"]),
        drift_policy=DriftPolicy(row["drift_policy"]),
        status=KeystoreStatus(row["status"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
        description=row["description"],
        location=row["location"],
        groups=tuple(json.loads(row["groups"])),
        created_by=row["created_by"],
        updated_by=row["updated_by"],
    )


def keystore_to_row(k: Keystore) -> dict[str, Any]:
    return {
        "id": k.id,
        "vault_id": k.vault_id,
        "name": k.name,
        "type": k.type.value,
        "settings": json.dumps(k.settings, sort_keys=True),
        "credentials_mode": k.credentials_mode.value,
        "drift_policy": k.drift_policy.value,
        "status": k.status.value,
        "created_at": k.created_at,
        "updated_at": k.updated_at,
        "version": k.version,
        "description": k.description,
        "location": k.location,
        "groups": json.dumps(list(k.groups)),
        "created_by": k.created_by,
        "updated_by": k.updated_by,
    }


def template_from_row(row: Row) -> KeyTemplate:
    groups = tuple(GroupEntry(g["group"], KeystoreType(g["type"])) for g in json.loads(row["keystore_groups"]))
    return KeyTemplate(
        id=row["id"],
        vault_id=row["vault_id"],
        name=row["name"],
        naming_scheme=row["naming_scheme"],
        algorithm=row["algorithm"],
        size=row["size"],
        keystore_ids=tuple(json.loads(row["keystore_ids"])),
        initial_state=KeyState(row["initial_state"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
        description=row["description"],
        types=tuple(json.loads(row["types"])),
        state=TemplateState(row["state"]),
        activation_date=row["activation_date"],
        expiration_date=row["expiration_date"],
        groups=groups,
        created_by=row["created_by"],
        updated_by=row["updated_by"],
        deactivate_on_rotation=bool(row["deactivate_on_rotation"]),
        rotation_policy=row["rotation_policy"],
    )


def template_to_row(t: KeyTemplate) -> dict[str, Any]:
    return {
        "id": t.id,
        "vault_id": t.vault_id,
        "name": t.name,
        "naming_scheme": t.naming_scheme,
        "algorithm": t.algorithm,
        "size": t.size,
        "keystore_ids": json.dumps(list(t.keystore_ids)),
        "initial_state": t.initial_state.value,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
        "version": t.version,
        "description": t.description,
        "types": json.dumps(list(t.types)),
        "state": t.state.value,
        "activation_date": t.activation_date,
        "expiration_date": t.expiration_date,
        "keystore_groups": json.dumps([{"group": g.group, "type": g.type.value} for g in t.groups]),
        "deactivate_on_rotation": t.deactivate_on_rotation,
        "created_by": t.created_by,
        "updated_by": t.updated_by,
        "rotation_policy": t.rotation_policy,
    }


def target_from_row(row: Row) -> Target:
    return Target(
        keystore_id=row["keystore_id"],
        status=TargetStatus(row["status"]),
        sync_flag=SyncFlag(row["sync_flag"]),
        reason=SyncReason(row["reason"]) if row["reason"] else None,
        key_id_in_keystore=row["key_id_in_keystore"],
        pending_destruction_until=row["pending_destruction_until"],
        last_error=row["last_error"],
        updated_at=row["updated_at"],
        synced_generation=row["synced_generation"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        label_in_keystore=row["label_in_keystore"],
        key_version=row["key_version"],
        primary_version_id=row["primary_version_id"],
        adopted=bool(row["adopted"]),
    )


def target_to_row(key_id: str, t: Target) -> dict[str, Any]:
    return {
        "key_id": key_id,
        "keystore_id": t.keystore_id,
        "status": t.status.value,
        "sync_flag": t.sync_flag.value,
        "reason": t.reason.value if t.reason else None,
        "key_id_in_keystore": t.key_id_in_keystore,
        "pending_destruction_until": t.pending_destruction_until,
        "last_error": t.last_error,
        "updated_at": t.updated_at,
        "synced_generation": t.synced_generation,
        "attempts": t.attempts,
        "next_attempt_at": t.next_attempt_at,
        "label_in_keystore": t.label_in_keystore,
        "key_version": t.key_version,
        "primary_version_id": t.primary_version_id,
        "adopted": t.adopted,
    }


def key_from_row(row: Row, targets: Iterable[Target]) -> ManagedKey:
    auth = None
    if row["deletion_authorized_by"]:
        auth = DeletionAuthorization(
            authorized_by=row["deletion_authorized_by"],
            authorized_at=row["deletion_authorized_at"],
            expires_at=row["deletion_authorization_expires_at"],
        )
    return ManagedKey(
        id=row["id"],
        label=row["label"],
        name=row["name"],
        vault_id=row["vault_id"],
        template_id=row["template_id"],
        algorithm=row["algorithm"],
        size=row["size"],
        state=KeyState(row["state"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        targets=tuple(sorted(targets, key=lambda t: t.keystore_id)),
        deletion_authorization=auth,
        destroy_force=bool(row["destroy_force"]),
        version=row["version"],
        generation=row["generation"],
        description=row["description"],
        tags=tuple(Tag(name=t["name"], value=t["value"]) for t in json.loads(row["tags"])),
        activation_date=row["activation_date"],
        expiration_date=row["expiration_date"],
        created_by=row["created_by"],
        updated_by=row["updated_by"],
        template_aligned=bool(row["template_aligned"]),
        current_version=row["current_version"],
        rotated_at=row["rotated_at"],
        deactivate_on_rotation=bool(row["deactivate_on_rotation"]),
        rotation_policy=row["rotation_policy"],
        activated_at=row["activated_at"],
    )


def key_to_row(k: ManagedKey) -> dict[str, Any]:
    auth = k.deletion_authorization
    return {
        "id": k.id,
        "vault_id": k.vault_id,
        "template_id": k.template_id,
        "label": k.label,
        "name": k.name,
        "algorithm": k.algorithm,
        "size": k.size,
        "state": k.state.value,
        "state_code": k.state.code,
        "deletion_authorized_by": auth.authorized_by if auth else None,
        "deletion_authorized_at": auth.authorized_at if auth else None,
        "deletion_authorization_expires_at": auth.expires_at if auth else None,
        "destroy_force": k.destroy_force,
        "generation": k.generation,
        "template_aligned": k.template_aligned,
        "current_version": k.current_version,
        "rotated_at": k.rotated_at,
        "deactivate_on_rotation": k.deactivate_on_rotation,
        "rotation_policy": k.rotation_policy,
        "activated_at": k.activated_at,
        "created_at": k.created_at,
        "updated_at": k.updated_at,
        "version": k.version,
        "description": k.description,
        "tags": json.dumps([{"name": t.name, "value": t.value} for t in k.tags]),
        "activation_date": k.activation_date,
        "expiration_date": k.expiration_date,
        "created_by": k.created_by,
        "updated_by": k.updated_by,
    }


def audit_from_row(row: Row) -> AuditRecord:
    return AuditRecord(
        seq=row["seq"],
        at=row["at"],
        user=row["user"],
        source=row["source"],
        action=row["action"],
        object_type=row["object_type"],
        object_id=row["object_id"],
        outcome=row["outcome"],
        before=row["before"],
        after=row["after"],
        detail=row["detail"],
        role=row["role"],
    )


def audit_to_row(r: AuditRecord) -> dict[str, Any]:
    return {
        "at": r.at,
        "user": r.user,
        "source": r.source,
        "action": r.action,
        "object_type": r.object_type,
        "object_id": r.object_id,
        "outcome": r.outcome,
        "before": r.before,
        "after": r.after,
        "detail": r.detail,
        "role": r.role,
    }
