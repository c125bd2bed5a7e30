"""JSON representations of records, shared by the CLI (``--output json``) and the API."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from keyorch.audit import AuditRecord
from keyorch.domain import rotation, uko
from keyorch.domain.alignment import Realignment
from keyorch.domain.models import (
    Keystore,
    KeyTemplate,
    KeyVersion,
    ManagedKey,
    SyncFlag,
    Target,
    TargetStatus,
    TemplateFacts,
    Vault,
    VaultCounts,
)
from keyorch.domain.rotation import older_versions
from keyorch.domain.uko import uko_state, uko_status, uko_sync_detail, uko_sync_flag, uko_type
from keyorch.providers.base import Health, HealthStatus
from keyorch.providers.endpoints import effective_endpoint
from keyorch.providers.identity import label_in_keystore
from keyorch.service.associations import Association
from keyorch.service.directory import Directory
from keyorch.service.inventory import Scan, UnmanagedKey

#: where the API's resources are: an object's ``href`` is its path below this (relative, as the links of UKO's
#: lists are: the client resolves them against the server it called)
API_PREFIX = "/api/v4"


#: algorithms whose keys UKO calls ``secret_key`` instances (the others are ``key_pair``)
SYMMETRIC = frozenset({"aes", "hmac"})


def keystore_group(keystore: Keystore) -> str:
    """The keystore group UKO shows for an instance: the keystore's first group (UKO requires one; a keystore in
    no group shows ``""``)."""
    return keystore.groups[0] if keystore.groups else ""


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def href(collection: str, object_id: str) -> str:
    """An object's ``href`` as UKO gives it: its URL path (``/api/v4/<collection>/<id>``)."""
    return f"{API_PREFIX}/{collection}/{object_id}"


def reference(collection: str, object_id: str, name: str | None, **extra: str) -> dict[str, Any]:
    """A reference to another object as UKO sends one (``vault``, ``template``, a keystore): ``{id, name, href}``
    and any of UKO's extra fields (a template's or keystore's ``type``); ``name`` is left out where it is not
    known (UKO's schemas take no null)."""
    doc: dict[str, Any] = {"id": object_id, **({"name": name} if name is not None else {}), **extra}
    doc["href"] = href(collection, object_id)
    return doc


def vault_json(v: Vault, counts: VaultCounts) -> dict[str, Any]:
    """A vault as UKO v4 shows one (with keyorch's ``dual_auth`` and ``version``)."""
    return {
        "id": v.id,
        "name": v.name,
        "description": v.description,
        "recovery_key_label": v.recovery_key_label,
        "dual_auth": v.dual_auth,
        "keys_count": counts.keys,
        "key_templates_count": counts.key_templates,
        "keystores_count": counts.keystores,
        "created_at": _time(v.created_at),
        "updated_at": _time(v.updated_at),
        "created_by": v.created_by,
        "updated_by": v.updated_by,
        "href": href("vaults", v.id),
        "version": v.version,
    }


def keystore_json(k: Keystore, vault_name: str | None = None) -> dict[str, Any]:
    """A keystore as UKO v4 shows one: its type by UKO's name, the type's own fields (credentials never: those
    UKO declares say ``[redacted]``), ``vault`` as a reference (``name`` where the caller knows it), ``href``;
    keyorch's ``status``, ``settings``, ``credentials`` (where they come from), ``drift_policy``, ``version``."""
    hidden = ("ca_pem", uko.UKO_SETTINGS)
    settings = {key: value for key, value in k.settings.items() if key not in hidden}
    settings["custom_ca"] = "ca_pem" in k.settings
    doc: dict[str, Any] = {
        "id": k.id,
        "vault": reference("vaults", k.vault_id, vault_name),
        "name": k.name,
        "type": uko.uko_type(k.type),
        "description": k.description,
        "location": k.location,
        "groups": list(k.groups),
        **uko.uko_keystore_fields(k.type, k.settings, effective_endpoint(k.type, k.settings)),
        "status": k.status.value,
        "settings": settings,
        "credentials": k.credentials_mode.value,
        "drift_policy": k.drift_policy.value,
        "created_at": _time(k.created_at),
        "updated_at": _time(k.updated_at),
    }
    doc.update({f: v for f, v in (("created_by", k.created_by), ("updated_by", k.updated_by)) if v is not None})
    doc["href"] = href("keystores", k.id)
    doc["version"] = k.version
    return doc


def _distribution_json(t: KeyTemplate, facts: TemplateFacts) -> list[dict[str, Any]]:
    """A template's ``keystores`` as UKO lists them (``{group, type}``), and keyorch's keystores named by id
    (``{id, name, type, href}``; ``type`` by UKO's name)."""
    entries: list[dict[str, Any]] = [{"group": g.group, "type": uko_type(g.type)} for g in t.groups]
    for keystore_id in t.keystore_ids:
        known = facts.keystores.get(keystore_id)
        extra = {"type": uko_type(known.type)} if known is not None else {}
        entries.append(reference("keystores", keystore_id, known.name if known is not None else None, **extra))
    return entries


def keystore_status_json(k: Keystore, health: Health | None, at: datetime | None) -> dict[str, Any]:
    """UKO's KeystoreStatus of a live check (``health``, made ``at``), with keyorch's id, name, type and status;
    a disconnected keystore is not checked (``health`` None)."""
    if health is None:
        health = Health(HealthStatus.CONFIGURATION_ERROR, f"keystore {k.name} is disconnected; connect it again")
    doc: dict[str, Any] = {"health_status": health.status.value, "message": health.message or health.status.value}
    if at is not None:
        doc["last_heartbeat"] = _time(at)
    return {**doc, "id": k.id, "name": k.name, "type": k.type.value, "status": k.status.value}


def keystore_dry_run_json(k: Keystore, vault_name: str | None, health: Health, at: datetime) -> dict[str, Any]:
    """A connect's dry run: the keystore it would connect, without what only a stored one has (id, href,
    version), with the connection test's KeystoreStatus fields."""
    doc = keystore_json(k, vault_name)
    for stored_only in ("id", "href", "version"):
        del doc[stored_only]
    status = keystore_status_json(k, health, at)
    return {**doc, "dry_run": True, **{f: status[f] for f in ("health_status", "message", "last_heartbeat")}}


def template_json(t: KeyTemplate, facts: TemplateFacts) -> dict[str, Any]:
    """A template as UKO v4 shows one, with keyorch's ``algorithm``, ``size`` (a number) and ``initial_state``."""
    key: dict[str, Any] = {"size": str(t.size), "algorithm": t.algorithm, "state": uko_state(t.initial_state)}
    for name, value in (
        ("activation_date", t.activation_date),
        ("expiration_date", t.expiration_date),
        ("rotation_policy", t.rotation_policy),  # keyorch's addition
    ):
        if value is not None:  # UKO's schemas take no null: a date not planned is left out
            key[name] = value
    key["deactivate_on_rotation"] = t.deactivate_on_rotation
    return {
        "id": t.id,
        "vault": reference("vaults", t.vault_id, facts.vault_names.get(t.vault_id)),
        "name": t.name,
        "description": t.description,
        "type": list(t.types),
        "state": t.state.value,
        "keys_count": facts.keys_counts.get(t.id, 0),
        "key": key,
        "naming_scheme": t.naming_scheme,
        "keystores": _distribution_json(t, facts),
        "algorithm": t.algorithm,
        "size": t.size,
        "initial_state": t.initial_state.value,
        "created_at": _time(t.created_at),
        "updated_at": _time(t.updated_at),
        "version": t.version,
        "href": href("templates", t.id),
        "created_by": t.created_by or "",
        "updated_by": t.updated_by or t.created_by or "",
    }


def target_json(t: Target, keystore_names: Mapping[str, str]) -> dict[str, Any]:
    """keyorch's own record of a key in one keystore (the ``targets`` of a key): its statuses and retries."""
    return {
        "keystore": t.keystore_id,
        "keystore_name": keystore_names.get(t.keystore_id),
        "status": t.status.value,
        "sync_flag": t.sync_flag.value,
        "reason": t.reason.value if t.reason else None,
        "key_id_in_keystore": t.key_id_in_keystore,
        "pending_destruction_until": _time(t.pending_destruction_until),
        "last_error": t.last_error,
        "updated_at": _time(t.updated_at),
        "key_version": t.key_version,
        "primary_version_id": t.primary_version_id,
    }


def keystore_reference(keystore_id: str, directory: Directory) -> dict[str, Any]:
    """UKO's ``TargetKeystoreReference``: ``{id, name, type, href}`` (a keystore keyorch no longer knows has no
    name and the type UKO cannot leave out is then unknown: such a target is not shown)."""
    keystore = directory.keystores[keystore_id]
    return reference("keystores", keystore_id, keystore.name, type=uko_type(keystore.type))


def status_json(key: ManagedKey, t: Target, directory: Directory) -> dict[str, Any]:
    """UKO's ``StatusInKeystore`` of the key in one keystore, with keyorch's pending-destruction end."""
    doc: dict[str, Any] = {
        "keystore": keystore_reference(t.keystore_id, directory),
        "status": uko_status(t),
        "keystore_sync_flag": uko_sync_flag(t),
        "keystore_sync_flag_detail": uko_sync_detail(key.state, t),
    }
    if t.key_id_in_keystore is not None:
        doc["key_id_in_keystore"] = t.key_id_in_keystore
    if t.last_error:
        code = t.reason.value.upper() if t.reason is not None else "KEYSTORE_ERROR"
        doc["error"] = {"errors": [{"code": code, "message": t.last_error}]}
    if t.pending_destruction_until is not None:
        doc["pending_destruction_until"] = _time(t.pending_destruction_until)
    return doc


def shown_targets(key: ManagedKey, directory: Directory) -> list[Target]:
    """The key's targets UKO lists: in a keystore keyorch knows, not unlinked from it."""
    return [t for t in key.targets if t.keystore_id in directory.keystores and t.status is not TargetStatus.REMOVED]


def statuses_json(key: ManagedKey, directory: Directory) -> list[dict[str, Any]]:
    return [status_json(key, t, directory) for t in shown_targets(key, directory)]


def instance_json(key: ManagedKey, t: Target, directory: Directory) -> dict[str, Any]:
    """UKO's ``KeyInstance``: the key's copy in one keystore, named as the provider names it."""
    keystore = directory.keystores[t.keystore_id]
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"keyorch:{key.id}:{t.keystore_id}")),
        "label_in_keystore": label_in_keystore(keystore.type, key.id, key.name, t.label_in_keystore),
        "type": "secret_key" if key.algorithm.lower() in SYMMETRIC else "key_pair",
        "keystore": {"group": keystore_group(keystore), "type": uko_type(keystore.type)},
    }


def key_json(k: ManagedKey, directory: Directory) -> dict[str, Any]:
    """A managed key as UKO v4 shows one, with keyorch's additions: ``state_code``, ``version``, ``out_of_sync``,
    dual authorization, ``destroy_force`` and ``targets`` (keyorch's record of each keystore)."""
    auth = k.deletion_authorization
    shown = shown_targets(k, directory)
    doc: dict[str, Any] = {
        "id": k.id,
        "label": k.label,
        "name": k.name,
        "vault": reference("vaults", k.vault_id, directory.vaults.get(k.vault_id)),
        "algorithm": k.algorithm.lower(),
        "size": str(k.size),
        "state": uko_state(k.state),
        "state_code": k.state.code,
        "referenced_keystores": [keystore_reference(t.keystore_id, directory) for t in shown],
        "instances": [instance_json(k, t, directory) for t in shown],
        "status_in_keystores": [status_json(k, t, directory) for t in shown],
        "href": href("managed_keys", k.id),
        "version": k.version,
        "current_version": k.current_version,
        "out_of_sync": k.out_of_sync,
        "deletion_authorization": (
            {
                "authorized_by": auth.authorized_by,
                "authorized_at": _time(auth.authorized_at),
                "expires_at": _time(auth.expires_at),
            }
            if auth
            else None
        ),
        "destroy_force": k.destroy_force,
        "deactivate_on_rotation": k.deactivate_on_rotation,
        "older_versions_in_keystores": [
            {
                "keystore": keystore_reference(t.keystore_id, directory),
                "older_versions": older_versions(directory.keystores[t.keystore_id].type, k.deactivate_on_rotation),
            }
            for t in shown
        ],
        "created_at": _time(k.created_at),
        "updated_at": _time(k.updated_at),
        "targets": [target_json(t, directory.keystore_names) for t in k.targets],
    }
    if k.template_id is not None:
        alignment = "aligned" if k.template_aligned else "unaligned"
        doc["template"] = reference(
            "templates", k.template_id, directory.templates.get(k.template_id), alignment_status=alignment
        )
    doc["description"] = k.description
    doc["tags"] = [{"name": t.name, "value": t.value} for t in k.tags]
    optional = {
        "activation_date": k.activation_date.isoformat() if k.activation_date else None,
        "expiration_date": k.expiration_date.isoformat() if k.expiration_date else None,
        "created_by": k.created_by,
        "updated_by": k.updated_by,
        "rotated_at": _time(k.rotated_at) if k.rotated_at else None,
        **schedule_json(k, directory),
    }
    doc.update({name: value for name, value in optional.items() if value is not None})
    return doc


def schedule_json(k: ManagedKey, directory: Directory) -> dict[str, Any]:
    """keyorch's rotation schedule of a key: its policy (its own, else its template's), where that comes from,
    and when it rotates next (an active key only); empty for a key on no schedule."""
    schedule = rotation.schedule_of(k, directory.rotation_policies.get(k.template_id or ""))
    if schedule is None:
        return {}
    doc: dict[str, Any] = {"rotation_policy": schedule.policy, "rotation_policy_from": schedule.source}
    due = rotation.next_rotation_at(k, schedule)
    if due is not None:
        doc["next_rotation_at"] = _time(due)
    return doc


def realignment_json(plan: Realignment, shown: ManagedKey, directory: Directory, dry_run: bool) -> dict[str, Any]:
    """A key realigned with its template (``shown``: with ``dry_run``, as it would be), and each change."""
    doc = key_json(shown, directory)
    doc["changes"] = [{"field": c.field, "description": c.description, "blocked": c.blocked} for c in plan.changes]
    doc["dry_run"] = dry_run
    return doc


def versions_json(
    k: ManagedKey,
    versions: Sequence[KeyVersion],
    directory: Directory,
    ids: Mapping[tuple[str, int], str] | None = None,
) -> dict[str, Any]:
    """A key's versions; for each, the keystores serving it as their primary (``version_id_in_keystore``:
    the provider's id of that version, null until keyorch has learned it), and ``version_ids_in_keystores``: every
    keystore whose id of the version keyorch learned (``ids``, by keystore id and version), primary or not."""
    live = [t for t in k.targets if t.status is not TargetStatus.REMOVED and t.keystore_id in directory.keystores]
    known = dict(ids or {})
    for t in live:
        if t.primary_version_id is not None:
            known[(t.keystore_id, t.key_version)] = t.primary_version_id
    return {
        "id": k.id,
        "label": k.label,
        "current_version": k.current_version,
        "versions": [
            {
                "version": v.version,
                "created_at": _time(v.created_at),
                "created_by": v.created_by,
                "current": v.version == k.current_version,
                "keystores": [
                    {
                        "keystore": keystore_reference(t.keystore_id, directory),
                        "version_id_in_keystore": t.primary_version_id,
                        "in_sync": t.sync_flag is SyncFlag.IN_SYNC,
                    }
                    for t in live
                    if t.key_version == v.version
                ],
                "version_ids_in_keystores": [
                    {
                        "keystore": keystore_reference(t.keystore_id, directory),
                        "version_id_in_keystore": known[(t.keystore_id, v.version)],
                        "primary": t.key_version == v.version,
                    }
                    for t in live
                    if (t.keystore_id, v.version) in known
                ],
            }
            for v in versions
        ],
    }


def audit_json(r: AuditRecord) -> dict[str, Any]:
    return r.as_json()


def associated_resource_json(a: Association, vault_name: str | None) -> dict[str, Any]:
    """UKO's ``AssociatedResource``: a cloud resource registered with the key's copy in one keystore. Its name,
    service and service instance are read from the resource's CRN (``crn:v1:<cloud>:<type>:<service>:<location>:
    <scope>:<service instance>:<resource type>:<resource>``); its id is derived from keystore, key and CRN."""
    r = a.registration
    parts = r.resource_crn.split(":")

    def segment(i: int) -> str:
        return parts[i] if len(parts) > i else ""

    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"keyorch:{a.keystore.id}:{r.key_id_in_keystore}:{r.resource_crn}")),
        "vault": reference("vaults", a.key.vault_id, vault_name),
        "managed_key": {"id": a.key.id, "label": a.key.label, "href": href("managed_keys", a.key.id)},
        "referenced_keystore": reference("keystores", a.keystore.id, a.keystore.name, type=uko_type(a.keystore.type)),
        "key_id_in_keystore": r.key_id_in_keystore,
        "name": segment(9) or segment(7) or r.resource_crn,
        "type": uko.IBM_REGISTRATION_TYPE,
        uko.IBM_REGISTRATION_TYPE: {
            "prevents_key_deletion": r.prevents_key_deletion,
            "service_name": segment(4),
            "service_instance_name": segment(7),
            "crn": r.resource_crn,
            "description": r.description,
        },
    }


def unmanaged_key_json(u: UnmanagedKey) -> dict[str, Any]:
    """A key of a keystore that no managed key targets (issue 16's scan), as the API and ``keystore scan`` show it:
    what the keystore holds (its id, name, aliases, tags as UKO's ``{name, value}``, state, versions, creation
    date) and who seems to have made it (``made_by``: uko, keyorch or unknown, with the ``evidence``)."""
    k = u.key
    doc: dict[str, Any] = {
        "key_id_in_keystore": k.key_id_in_keystore,
        "label_in_keystore": k.name,
        "aliases": list(k.aliases),
        "tags": [{"name": name, "value": value} for name, value in sorted(k.labels.items())],
        "state": uko_state(k.state),
        "state_in_keystore": k.raw_state,
        "destruction_pending": k.destruction_pending,
        "versions": [
            {"id": v.version_id, "primary": v.primary, "enabled": v.enabled}
            | ({"created_at": _time(v.created_at)} if v.created_at is not None else {})
            for v in k.versions
        ],
        "created_at": _time(k.created_at),
        "description": k.description,
        "made_by": u.made_by.value,
        "evidence": list(u.evidence),
    }
    optional = {
        "pending_until": _time(k.pending_until),
        "key_type": k.key_type,
        "origin": k.origin,
        "managed_key_id": k.managed_key_id,
        "uko_managed_key_id": u.uko_managed_key_id,
    }
    doc |= {name: value for name, value in optional.items() if value is not None}
    if doc["label_in_keystore"] is None:
        del doc["label_in_keystore"]
    if doc["created_at"] is None:
        del doc["created_at"]
    return doc


def scan_json(scan: Scan) -> dict[str, Any]:
    """``keystore scan --output json``: the keystore, its counts, and every key no managed key targets."""
    ks = scan.keystore
    return {
        "keystore": reference("keystores", ks.id, ks.name, type=uko_type(ks.type)),
        "keys_in_keystore": scan.total,
        "managed_in_keystore": scan.managed,
        "unmanaged_keys": [unmanaged_key_json(u) for u in scan.unmanaged],
    }
