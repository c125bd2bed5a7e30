"""JSON representations of records, shared by the CLI (``--output json``) and the API."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from keyorch.audit import AuditRecord
from keyorch.domain.models import Keystore, KeyTemplate, ManagedKey, Target, Vault, VaultCounts

#: where the API's resources are: an object's ``href`` is its path below this (relative, as the links of UKO's
#: lists are: the client resolves them against the server it called)
API_PREFIX = "/api/v4"


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


def keystore_json(k: Keystore) -> dict[str, Any]:
    settings = {key: value for key, value in k.settings.items() if key != "ca_pem"}
    settings["custom_ca"] = "ca_pem" in k.settings
    return {
        "id": k.id,
        "vault": k.vault_id,
        "name": k.name,
        "type": k.type.value,
        "status": k.status.value,
        "settings": settings,
        "credentials": k.credentials_mode.value,
        "drift_policy": k.drift_policy.value,
        "description": k.description,
        "location": k.location,
        "groups": list(k.groups),
        "created_at": _time(k.created_at),
        "updated_at": _time(k.updated_at),
        "created_by": k.created_by,
        "updated_by": k.updated_by,
        "version": k.version,
    }


def template_json(t: KeyTemplate, keystore_names: Mapping[str, str]) -> dict[str, Any]:
    return {
        "id": t.id,
        "vault": t.vault_id,
        "name": t.name,
        "naming_scheme": t.naming_scheme,
        "algorithm": t.algorithm,
        "size": t.size,
        "keystores": [{"id": k, "name": keystore_names.get(k)} for k in t.keystore_ids],
        "initial_state": t.initial_state.value,
        "created_at": _time(t.created_at),
        "updated_at": _time(t.updated_at),
        "version": t.version,
    }


def target_json(t: Target, keystore_names: Mapping[str, str]) -> dict[str, Any]:
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
    }


def key_json(k: ManagedKey, keystore_names: Mapping[str, str]) -> dict[str, Any]:
    auth = k.deletion_authorization
    return {
        "id": k.id,
        "label": k.label,
        "name": k.name,
        "vault": k.vault_id,
        "template": k.template_id,
        "algorithm": k.algorithm,
        "size": k.size,
        "state": k.state.value,
        "state_code": k.state.code,
        "version": k.version,
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
        "created_at": _time(k.created_at),
        "updated_at": _time(k.updated_at),
        "targets": [target_json(t, keystore_names) for t in k.targets],
    }


def audit_json(r: AuditRecord) -> dict[str, Any]:
    return r.as_json()
