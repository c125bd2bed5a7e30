"""Azure Key Vault fake: every operation in every key state, from a table written once as data.

Derived from docs/providers.md §2.2 (operations), §2.3 (state derivation:
pre-active = nbf in the future, expired = exp passed, disabled, soft-deleted, purged) and §2.5/§2.7
(errors: 404 KeyNotFound, 409 Conflict/ObjectIsDeletedButRecoverable and ObjectIsBeingDeleted,
403 Forbidden/KeyDisabled for decrypt/unwrapKey on a disabled key while encrypt/wrapKey still
work, 403 Forbidden for purge under purge protection). ListKeyVersions answers 200 even for an
unknown name (as Key Vault does), so the table records whether the key shows in the lists.

A cell reads ``"STATUS [CODE]"`` (CODE is the error code or the innererror code) or, for the list
operations, ``"listed"`` / ``"absent"``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import pytest
from tests.fakes.test_azure_client import VaultClient, oaep256_encrypt, open_vault, version_of

from keyorch.fakes.azure_crypto import b64url

STATES = (
    "enabled",
    "disabled",
    "pre_active",
    "expired",
    "soft_deleted",
    "soft_deleted_protected",
    "being_deleted",
    "purged",
    "never_existed",
)
OK, GONE, NF = "200", "204", "404 KeyNotFound"
FB, KD = "403 Forbidden", "403 KeyDisabled"
DBR, BD = "409 ObjectIsDeletedButRecoverable", "409 ObjectIsBeingDeleted"
IN, OUT = "listed", "absent"
# fmt: off
TABLE: dict[str, tuple[str, ...]] = {
    # operation            enabled  disabled pre-act  expired  deleted  del+prot deleting purged   never
    "GetKey":             (OK,      OK,      OK,      OK,      NF,      NF,      NF,      NF,      NF),
    "GetKeyVersion":      (OK,      OK,      OK,      OK,      NF,      NF,      NF,      NF,      NF),
    "ListKeys":           (IN,      IN,      IN,      IN,      OUT,     OUT,     OUT,     OUT,     OUT),
    "ListKeyVersions":    (IN,      IN,      IN,      IN,      OUT,     OUT,     OUT,     OUT,     OUT),
    "Enable":             (OK,      OK,      OK,      OK,      NF,      NF,      NF,      NF,      NF),
    "Disable":            (OK,      OK,      OK,      OK,      NF,      NF,      NF,      NF,      NF),
    "CreateKey":          (OK,      OK,      OK,      OK,      DBR,     DBR,     BD,      OK,      OK),
    "RotateKey":          (OK,      OK,      OK,      OK,      NF,      NF,      NF,      NF,      NF),
    "GetRotationPolicy":  (OK,      OK,      OK,      OK,      NF,      NF,      NF,      NF,      NF),
    "PutRotationPolicy":  (OK,      OK,      OK,      OK,      NF,      NF,      NF,      NF,      NF),
    "DeleteKey":          (OK,      OK,      OK,      OK,      NF,      NF,      NF,      NF,      NF),
    "GetDeletedKey":      (NF,      NF,      NF,      NF,      OK,      OK,      NF,      NF,      NF),
    "ListDeletedKeys":    (OUT,     OUT,     OUT,     OUT,     IN,      IN,      OUT,     OUT,     OUT),
    "RecoverDeletedKey":  (NF,      NF,      NF,      NF,      OK,      OK,      BD,      NF,      NF),
    "PurgeDeletedKey":    (NF,      NF,      NF,      NF,      GONE,    FB,      BD,      NF,      NF),
    "Encrypt":            (OK,      OK,      FB,      FB,      NF,      NF,      NF,      NF,      NF),
    "Decrypt":            (OK,      KD,      OK,      OK,      NF,      NF,      NF,      NF,      NF),
    "WrapKey":            (OK,      OK,      FB,      FB,      NF,      NF,      NF,      NF,      NF),
    "UnwrapKey":          (OK,      KD,      OK,      OK,      NF,      NF,      NF,      NF,      NF),
}
# fmt: on
CRYPTO = ("Encrypt", "Decrypt", "WrapKey", "UnwrapKey")
PLAINTEXT = b"thirty-two bytes of key material"
CELLS = [(operation, state, row[i]) for operation, row in TABLE.items() for i, state in enumerate(STATES)]


def test_table_is_complete() -> None:
    assert all(len(row) == len(STATES) for row in TABLE.values())


@dataclass
class Subject:
    name: str
    version: str
    bundle: dict[str, Any] | None


async def put_in_state(vault: VaultClient, state: str, kty: str) -> Subject:
    name = f"k-{state.replace('_', '-')}-{secrets.token_hex(4)}"
    if state == "never_existed":
        return Subject(name, secrets.token_hex(16), None)
    now = int(vault.fake.clock.now().timestamp())
    attributes = {"pre_active": {"nbf": now + 3600}, "expired": {"exp": now - 60}}.get(state, {})
    bundle = await vault.create(name, kty, attributes=attributes)
    version = version_of(bundle)
    if state == "disabled":
        assert (await vault.call("PATCH", f"/keys/{name}/{version}", {"attributes": {"enabled": False}})).status == 200
    if state in ("soft_deleted", "soft_deleted_protected", "being_deleted", "purged"):
        assert (await vault.call("DELETE", f"/keys/{name}")).status == 200
    if state == "purged":
        assert (await vault.call("DELETE", f"/deletedkeys/{name}")).status == 204
    return Subject(name, version, bundle)


async def perform(vault: VaultClient, operation: str, subject: Subject) -> tuple[int, Any]:
    name, version = subject.name, subject.version
    body: dict[str, Any] = {"alg": "RSA-OAEP-256", "value": "AAECAwQFBgc"}
    if operation in ("Decrypt", "UnwrapKey") and subject.bundle is not None:
        body["value"] = oaep256_encrypt(subject.bundle, PLAINTEXT)
    requests: dict[str, tuple[str, str, Any]] = {
        "GetKey": ("GET", f"/keys/{name}", None),
        "GetKeyVersion": ("GET", f"/keys/{name}/{version}", None),
        "ListKeys": ("GET", "/keys", None),
        "ListKeyVersions": ("GET", f"/keys/{name}/versions", None),
        "Enable": ("PATCH", f"/keys/{name}/{version}", {"attributes": {"enabled": True}}),
        "Disable": ("PATCH", f"/keys/{name}", {"attributes": {"enabled": False}}),
        "CreateKey": ("POST", f"/keys/{name}/create", {"kty": "EC"}),
        "RotateKey": ("POST", f"/keys/{name}/rotate", None),
        "GetRotationPolicy": ("GET", f"/keys/{name}/rotationpolicy", None),
        "PutRotationPolicy": ("PUT", f"/keys/{name}/rotationpolicy", {"lifetimeActions": []}),
        "DeleteKey": ("DELETE", f"/keys/{name}", None),
        "GetDeletedKey": ("GET", f"/deletedkeys/{name}", None),
        "ListDeletedKeys": ("GET", "/deletedkeys", None),
        "RecoverDeletedKey": ("POST", f"/deletedkeys/{name}/recover", None),
        "PurgeDeletedKey": ("DELETE", f"/deletedkeys/{name}", None),
        "Encrypt": ("POST", f"/keys/{name}/{version}/encrypt", body),
        "Decrypt": ("POST", f"/keys/{name}/{version}/decrypt", body),
        "WrapKey": ("POST", f"/keys/{name}/{version}/wrapkey", body),
        "UnwrapKey": ("POST", f"/keys/{name}/{version}/unwrapkey", body),
    }
    method, path, payload = requests[operation]
    reply = await vault.call(method, path, payload)
    if operation in ("Decrypt", "UnwrapKey") and reply.status == 200:
        assert reply.body["value"] == b64url(PLAINTEXT)
    if operation.startswith("List"):
        assert reply.status == 200, reply.body
        assert reply.body["nextLink"] is None
        listed = any(f"/keys/{name}" in item["kid"] for item in reply.body["value"])
        return reply.status, "listed" if listed else "absent"
    return reply.status, reply


def expected_codes(reply: Any) -> set[str]:
    error = reply.body["error"]
    return {error["code"], (error.get("innererror") or {}).get("code", "")}


@pytest.mark.parametrize(("operation", "state", "expected"), CELLS, ids=[f"{o}-{s}" for o, s, _ in CELLS])
async def test_state_table_cell(operation: str, state: str, expected: str) -> None:
    vault_options: dict[str, dict[str, Any]] = {
        "soft_deleted_protected": {"purge_protection": True},
        "being_deleted": {"settle_seconds": 30},
    }
    options = vault_options.get(state, {})
    async with open_vault(**options) as vault:
        subject = await put_in_state(vault, state, "RSA" if operation in CRYPTO else "EC")
        status, outcome = await perform(vault, operation, subject)
        if expected in ("listed", "absent"):
            assert outcome == expected
            return
        want_status, _, want_code = expected.partition(" ")
        assert status == int(want_status), outcome.body
        if want_code:
            assert want_code in expected_codes(outcome), outcome.body
        elif status == 200:
            assert "error" not in (outcome.body or {})
