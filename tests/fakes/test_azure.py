"""Azure Key Vault fake: wire shapes, versions, pagination, soft-delete windows on the fake clock,
the Entra token flow and the key operations (docs/providers.md §2.7)."""

from __future__ import annotations

import base64
import os
import re
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from tests.fakes.test_azure_client import API, VaultClient, oaep256_encrypt, open_vault, rsa_public, version_of
from yarl import URL

from keyorch.fakes.azure import AzureKeyVaultFake
from keyorch.fakes.faults import ProviderFaults

DAY = 86400
#: stable api-versions (docs/providers.md §2.1)
REFERENCE_API_VERSIONS = ("7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01", "2026-04-01")


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def now_of(vault: VaultClient) -> int:
    return int(vault.fake.clock.now().timestamp())


# -- auth -----------------------------------------------------------------------------------


async def test_challenge_token_flow_end_to_end() -> None:
    async with open_vault(login=False, strict_tokens=True) as vault:
        first = await vault.call("GET", "/keys", auth=False)
        assert first.status == 401
        assert first.codes[0] == "Unauthorized"
        match = re.fullmatch(r'Bearer authorization="([^"]+)", resource="([^"]+)"', first.headers["WWW-Authenticate"])
        assert match is not None
        authority, resource = match.groups()
        creds = await vault.credentials()
        assert set(creds) == {"tenant_id", "client_id", "client_secret", "authority_host"}
        assert authority == f"{vault.url}/{creds['tenant_id']}" and resource == "https://vault.azure.net"
        form = {
            "grant_type": "client_credentials",
            "client_id": creds["client_id"],
            "client_secret": creds["client_secret"],
            "scope": resource + "/.default",
        }
        token = await vault.raw("POST", authority + "/oauth2/v2.0/token", data=form)
        assert token.status == 200
        assert set(token.body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
        assert token.body["token_type"] == "Bearer" and token.body["expires_in"] == 3600
        vault.token = token.body["access_token"]
        assert (await vault.call("GET", "/keys")).status == 200
        await vault.advance(3601, relogin=False)
        expired = await vault.call("GET", "/keys")
        assert expired.status == 401 and "WWW-Authenticate" in expired.headers
        await vault.login()
        assert (await vault.call("GET", "/keys")).status == 200
        assert (await vault.raw("DELETE", vault.url + "/_fake/tokens")).status == 200
        assert (await vault.call("GET", "/keys")).status == 401
        vault.token = "made-up-token"
        assert (await vault.call("GET", "/keys")).status == 401  # strict: only issued tokens


TOKEN_ERRORS: list[tuple[dict[str, str], int, str, int]] = [
    ({"client_secret": "wrong"}, 401, "invalid_client", 7000215),
    ({"client_secret": ""}, 401, "invalid_client", 7000216),
    ({"tenant": "00000000-0000-0000-0000-000000000000"}, 400, "invalid_request", 90002),
    ({"client_id": "11111111-1111-1111-1111-111111111111"}, 400, "unauthorized_client", 700016),
    ({"grant_type": ""}, 400, "invalid_request", 900144),
    ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
    ({"scope": ""}, 400, "invalid_request", 900144),
    ({"scope": "https://vault.azure.net/keys.read"}, 400, "invalid_scope", 1002012),
    ({"scope": "https://storage.azure.com/.default"}, 400, "invalid_resource", 500011),
]


@pytest.mark.parametrize(("overrides", "status", "error", "aadsts"), TOKEN_ERRORS)
async def test_token_endpoint_errors_in_entra_form(
    overrides: dict[str, str], status: int, error: str, aadsts: int
) -> None:
    async with open_vault(login=False) as vault:
        reply = await vault.request_token(**overrides)
        assert reply.status == status
        assert reply.body["error"] == error
        assert reply.body["error_codes"] == [aadsts]
        assert reply.body["error_description"].startswith(f"AADSTS{aadsts}: ")
        assert {"timestamp", "trace_id", "correlation_id"} <= set(reply.body)
        assert vault.fake.tokens.issued_count == 0


async def test_token_endpoint_refuses_json_body() -> None:
    async with open_vault(login=False) as vault:
        creds = await vault.credentials()
        url = f"{vault.url}/{creds['tenant_id']}/oauth2/v2.0/token"
        reply = await vault.raw("POST", url, json={"grant_type": "client_credentials"})
        assert reply.status == 400 and reply.body["error"] == "invalid_request"


# -- api-version ----------------------------------------------------------------------------


async def test_api_version_is_required_and_checked() -> None:
    async with open_vault() as vault:
        missing = await vault.call("GET", "/keys", api_version=None)
        assert missing.status == 400 and missing.codes[0] == "BadParameter"
        for bad in ("7.9", "2024-01-01", "latest"):
            reply = await vault.call("GET", "/keys", api_version=bad)
            assert reply.status == 400 and reply.codes[0] == "BadParameter" and bad in reply.body["error"]["message"]
        for good in REFERENCE_API_VERSIONS:
            assert (await vault.call("GET", "/keys", api_version=good)).status == 200


# -- keys and versions ----------------------------------------------------------------------


async def test_create_again_makes_new_version_and_versions_are_addressable() -> None:
    async with open_vault() as vault:
        first = await vault.create("orders", "EC", crv="P-384", tags={"owner": "keyorch"})
        await vault.advance(10)
        second = await vault.create("orders", "RSA", key_size=3072, attributes={"enabled": False})
        for bundle in (first, second):
            assert re.fullmatch(re.escape(vault.url) + r"/keys/orders/[0-9a-f]{32}", bundle["key"]["kid"])
        assert first["key"]["crv"] == "P-384" and {"x", "y"} <= set(first["key"])
        assert "d" not in first["key"] and "d" not in second["key"] and "p" not in second["key"]
        assert rsa_public(second).key_size == 3072
        assert first["tags"] == {"owner": "keyorch"} and "tags" not in second
        assert 10 <= second["attributes"]["created"] - first["attributes"]["created"] < 60  # fake clock moved 10 s
        latest = await vault.call("GET", "/keys/ORDERS")  # names are case-insensitive
        assert latest.status == 200 and latest.body["key"]["kid"] == second["key"]["kid"]
        assert latest.body["attributes"]["enabled"] is False
        for path in ("/keys/orders/", f"/keys/orders/{version_of(first)}"):
            reply = await vault.call("GET", path)
            assert reply.status == 200
        assert (await vault.call("GET", f"/keys/orders/{version_of(first)}")).body["key"]["kid"] == first["key"]["kid"]
        versions = await vault.call("GET", "/keys/orders/versions")
        assert sorted(item["kid"] for item in versions.body["value"]) == sorted(
            b["key"]["kid"] for b in (first, second)
        )
        keys = await vault.call("GET", "/keys")
        assert [item["kid"] for item in keys.body["value"]] == [f"{vault.url}/keys/orders"]
        assert (await vault.call("GET", f"/keys/orders/{'0' * 32}")).codes == ("KeyNotFound", None)


async def test_attributes_are_unix_seconds_with_recovery_fields() -> None:
    async with open_vault(retention_days=30) as vault:
        now = now_of(vault)
        bundle = await vault.create("times", attributes={"nbf": now - 5, "exp": now + DAY})
        attrs = bundle["attributes"]
        assert attrs["nbf"] == now - 5 and attrs["exp"] == now + DAY
        assert abs(attrs["created"] - now) <= 1 and attrs["updated"] == attrs["created"]
        assert all(type(attrs[k]) is int for k in ("created", "updated", "nbf", "exp"))
        assert attrs["recoverableDays"] == 30 and attrs["recoveryLevel"] == "CustomizedRecoverable+Purgeable"


@pytest.mark.parametrize(
    ("options", "level", "days"),
    [
        ({}, "Recoverable+Purgeable", 90),
        ({"purge_protection": True}, "Recoverable", 90),
        ({"retention_days": 7}, "CustomizedRecoverable+Purgeable", 7),
        ({"retention_days": 7, "purge_protection": True}, "CustomizedRecoverable", 7),
    ],
)
async def test_recovery_level_follows_vault_settings(options: dict[str, Any], level: str, days: int) -> None:
    async with open_vault(**options) as vault:
        attrs = (await vault.create("lvl"))["attributes"]
        assert (attrs["recoveryLevel"], attrs["recoverableDays"]) == (level, days)


@pytest.mark.parametrize("days", [0, 6, 91, 365])
def test_retention_days_outside_7_to_90_refused(days: int) -> None:
    with pytest.raises(ValueError, match="retention_days"):
        AzureKeyVaultFake(retention_days=days)


async def test_patch_versionless_changes_latest_only_and_versioned_changes_that_one() -> None:
    async with open_vault() as vault:
        old = await vault.create("pk")
        new = await vault.create("pk")
        await vault.advance(60)
        reply = await vault.call("PATCH", "/keys/pk", {"attributes": {"enabled": False}, "tags": {"a": "b"}})
        assert reply.status == 200 and reply.body["key"]["kid"] == new["key"]["kid"]
        assert reply.body["attributes"]["enabled"] is False and reply.body["tags"] == {"a": "b"}
        assert reply.body["attributes"]["updated"] == new["attributes"]["updated"] + 60
        untouched = await vault.call("GET", f"/keys/pk/{version_of(old)}")
        assert untouched.body["attributes"]["enabled"] is True
        reply = await vault.call("PATCH", f"/keys/pk/{version_of(old)}", {"attributes": {"enabled": False, "exp": 5}})
        assert reply.body["attributes"]["enabled"] is False and reply.body["attributes"]["exp"] == 5
        cleared = await vault.call("PATCH", f"/keys/pk/{version_of(old)}", {"attributes": {"exp": None}})
        assert cleared.status == 200 and "exp" not in cleared.body["attributes"]
        assert (await vault.call("PATCH", "/keys/pk", {"attributes": {"enabled": "no"}})).codes[0] == "BadParameter"
        assert (await vault.call("PATCH", "/keys/nope", {"attributes": {}})).codes[0] == "KeyNotFound"


async def test_rotate_adds_a_version_of_the_same_type() -> None:
    async with open_vault() as vault:
        first = await vault.create("rot", "EC", crv="P-521", key_ops=["sign"])
        rotated = await vault.call("POST", "/keys/rot/rotate")
        assert rotated.status == 200
        assert rotated.body["key"]["crv"] == "P-521" and rotated.body["key"]["key_ops"] == ["sign"]
        assert rotated.body["key"]["kid"] != first["key"]["kid"]
        assert len((await vault.call("GET", "/keys/rot/versions")).body["value"]) == 2


# -- pagination -----------------------------------------------------------------------------


async def test_list_keys_follows_next_link_with_skiptoken() -> None:
    async with open_vault() as vault:
        names = {f"page-{i:02d}" for i in range(30)}
        for name in names:
            await vault.create(name)
        seen: list[str] = []
        reply = await vault.call("GET", "/keys", maxresults="7")
        pages = 1
        while reply.body["nextLink"]:
            link = reply.body["nextLink"]
            assert link.startswith(vault.url + "/keys?") and "$skiptoken=" in link and f"api-version={API}" in link
            assert len(reply.body["value"]) == 7
            seen += [item["kid"].rsplit("/", 1)[1] for item in reply.body["value"]]
            reply = await vault.raw("GET", link, headers={"Authorization": f"Bearer {vault.token}"})
            pages += 1
        seen += [item["kid"].rsplit("/", 1)[1] for item in reply.body["value"]]
        assert pages == 5 and sorted(seen) == sorted(names) and len(seen) == 30
        default_page = await vault.call("GET", "/keys")
        assert len(default_page.body["value"]) == 25 and default_page.body["nextLink"]
        for bad in ("0", "26", "-1", "x", "1.5"):
            assert (await vault.call("GET", "/keys", maxresults=bad)).codes[0] == "BadParameter"
        for token in ("garbage!", b64(b"not json"), b64(b"[1]"), b64(b'{"after": 5}')):
            assert (await vault.call("GET", "/keys", query={"$skiptoken": token})).codes[0] == "BadParameter"


async def test_a_page_continues_after_its_last_name_even_when_that_key_is_gone() -> None:
    """The skip token holds a position, not an index: keys deleted or added before it shift nothing."""
    async with open_vault() as vault:
        for i in range(6):
            await vault.create(f"p-{i}")
        first = await vault.call("GET", "/keys", maxresults="2")
        assert [item["kid"].rsplit("/", 1)[1] for item in first.body["value"]] == ["p-0", "p-1"]
        assert (await vault.call("DELETE", "/keys/p-1")).status == 200
        await vault.create("a-new")  # sorts before the position: not on the later pages
        second = await vault.raw("GET", first.body["nextLink"], headers={"Authorization": f"Bearer {vault.token}"})
        assert [item["kid"].rsplit("/", 1)[1] for item in second.body["value"]] == ["p-2", "p-3"]


async def test_list_versions_of_unknown_key_is_an_empty_page() -> None:
    async with open_vault() as vault:
        reply = await vault.call("GET", "/keys/ghost/versions")
        assert reply.status == 200 and reply.body == {"value": [], "nextLink": None}


# -- soft delete, recover, purge on the fake clock -----------------------------------------


async def test_delete_returns_deleted_bundle_with_purge_date_from_retention() -> None:
    async with open_vault(retention_days=14) as vault:
        bundle = await vault.create("gone")
        now = now_of(vault)
        deleted = await vault.call("DELETE", "/keys/gone")
        assert deleted.status == 200
        assert deleted.body["recoveryId"] == f"{vault.url}/deletedkeys/gone"
        assert abs(deleted.body["deletedDate"] - now) <= 1
        assert deleted.body["scheduledPurgeDate"] == deleted.body["deletedDate"] + 14 * DAY
        assert deleted.body["key"]["kid"] == bundle["key"]["kid"]
        listed = await vault.call("GET", "/deletedkeys")
        assert [item["recoveryId"] for item in listed.body["value"]] == [deleted.body["recoveryId"]]
        assert listed.body["value"][0]["kid"] == f"{vault.url}/keys/gone"


async def test_deleted_key_is_purged_automatically_at_scheduled_purge_date() -> None:
    async with open_vault(retention_days=7, purge_protection=True) as vault:
        await vault.create("auto")
        deleted = (await vault.call("DELETE", "/keys/auto")).body
        await vault.advance(deleted["scheduledPurgeDate"] - now_of(vault) - 5)
        assert (await vault.call("GET", "/deletedkeys/auto")).status == 200
        assert (await vault.call("POST", "/keys/auto/create", {"kty": "EC"})).status == 409
        await vault.advance(10)
        assert (await vault.call("GET", "/deletedkeys/auto")).codes[0] == "KeyNotFound"
        assert (await vault.call("GET", "/keys/auto")).codes[0] == "KeyNotFound"
        assert vault.fake.state_snapshot()["deleted_keys"] == []
        fresh = await vault.call("POST", "/keys/auto/create", {"kty": "EC"})
        assert fresh.status == 200
        assert len((await vault.call("GET", "/keys/auto/versions")).body["value"]) == 1


async def test_recover_brings_back_every_version_with_its_enabled_flag() -> None:
    async with open_vault() as vault:
        old = await vault.create("rec")
        new = await vault.create("rec")
        await vault.call("PATCH", f"/keys/rec/{version_of(old)}", {"attributes": {"enabled": False}})
        await vault.call("DELETE", "/keys/rec")
        recovered = await vault.call("POST", "/deletedkeys/rec/recover")
        assert recovered.status == 200 and recovered.body["key"]["kid"] == new["key"]["kid"]
        assert "recoveryId" not in recovered.body
        assert (await vault.call("GET", f"/keys/rec/{version_of(old)}")).body["attributes"]["enabled"] is False
        assert (await vault.call("GET", f"/keys/rec/{version_of(new)}")).body["attributes"]["enabled"] is True
        assert (await vault.call("GET", "/deletedkeys/rec")).codes[0] == "KeyNotFound"
        assert (await vault.call("POST", "/deletedkeys/rec/recover")).codes[0] == "KeyNotFound"


async def test_purge_then_recreate_and_purge_protection() -> None:
    async with open_vault() as vault:
        await vault.create("pg")
        await vault.call("DELETE", "/keys/pg")
        purged = await vault.call("DELETE", "/deletedkeys/pg")
        assert purged.status == 204 and purged.body is None
        assert (await vault.call("DELETE", "/deletedkeys/pg")).codes[0] == "KeyNotFound"
        assert (await vault.call("POST", "/keys/pg/create", {"kty": "EC"})).status == 200
    async with open_vault(purge_protection=True) as vault:
        await vault.create("pp")
        await vault.call("DELETE", "/keys/pp")
        refused = await vault.call("DELETE", "/deletedkeys/pp")
        assert refused.status == 403 and refused.codes[0] == "Forbidden"
        assert "purge protection" in refused.body["error"]["message"]
        assert (await vault.call("GET", "/deletedkeys/pp")).status == 200


async def test_async_delete_and_purge_windows() -> None:
    async with open_vault(settle_seconds=30, purge_block_seconds=20) as vault:
        await vault.create("slow")
        assert (await vault.call("DELETE", "/keys/slow")).status == 200
        for method, path in (("GET", "/keys/slow"), ("GET", "/deletedkeys/slow")):
            assert (await vault.call(method, path)).codes[0] == "KeyNotFound"  # transitional: neither
        for method, path in (("DELETE", "/deletedkeys/slow"), ("POST", "/deletedkeys/slow/recover")):
            assert (await vault.call(method, path)).codes == ("Conflict", "ObjectIsBeingDeleted")
        await vault.advance(30)
        assert (await vault.call("GET", "/deletedkeys/slow")).status == 200
        assert (await vault.call("DELETE", "/deletedkeys/slow")).status == 204
        create = {"kty": "EC"}
        assert (await vault.call("POST", "/keys/slow/create", create)).codes == ("Conflict", "ObjectIsBeingDeleted")
        await vault.advance(40)  # purge lands at +30, name stays blocked 20 s more
        assert (await vault.call("POST", "/keys/slow/create", create)).codes == ("Conflict", "ObjectIsBeingDeleted")
        await vault.advance(11)
        assert (await vault.call("POST", "/keys/slow/create", create)).status == 200
        await vault.call("DELETE", "/keys/slow")
        await vault.advance(30)
        assert (await vault.call("POST", "/deletedkeys/slow/recover")).status == 200
        assert (await vault.call("GET", "/keys/slow")).codes[0] == "KeyNotFound"  # recover still running
        assert (await vault.call("POST", "/keys/slow/create", create)).codes[0] == "Conflict"
        await vault.advance(30)
        assert (await vault.call("GET", "/keys/slow")).status == 200


# -- key operations -------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RSA-OAEP", "RSA-OAEP-256", "RSA1_5"])
async def test_rsa_wrap_unwrap_and_encrypt_with_local_public_key(alg: str) -> None:
    async with open_vault() as vault:
        bundle = await vault.create("rsa", "RSA")
        secret = os.urandom(32)
        wrapped = await vault.call("POST", "/keys/rsa//wrapkey", {"alg": alg, "value": b64(secret)})
        assert wrapped.status == 200 and wrapped.body["kid"] == bundle["key"]["kid"]
        assert unb64(wrapped.body["value"]) != secret
        unwrapped = await vault.call(
            "POST", f"/keys/rsa/{version_of(bundle)}/unwrapkey", {"alg": alg, "value": wrapped.body["value"]}
        )
        assert unb64(unwrapped.body["value"]) == secret
        pads = {
            "RSA-OAEP": padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None),
            "RSA-OAEP-256": padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
            "RSA1_5": padding.PKCS1v15(),
        }
        local = rsa_public(bundle).encrypt(secret, pads[alg])
        decrypted = await vault.call("POST", "/keys/rsa//decrypt", {"alg": alg, "value": b64(local)})
        assert unb64(decrypted.body["value"]) == secret
        tampered = await vault.call("POST", "/keys/rsa//decrypt", {"alg": alg, "value": b64(local[:-1] + b"\0")})
        if alg == "RSA1_5":  # implicit rejection (Marvin countermeasure): random bytes, not an error
            assert tampered.status == 200 and unb64(tampered.body["value"]) != secret
        else:
            assert tampered.status == 400 and tampered.codes[0] == "BadParameter"


async def test_key_ops_disabled_and_expiry_rules_for_operations() -> None:
    async with open_vault() as vault:
        bundle = await vault.create("ops", "RSA", key_ops=["encrypt", "decrypt"])
        body = {"alg": "RSA-OAEP-256", "value": b64(b"x")}
        assert (await vault.call("POST", "/keys/ops//wrapkey", body)).codes == ("Forbidden", "KeyOperationForbidden")
        await vault.call("PATCH", "/keys/ops", {"attributes": {"enabled": False}})
        assert (await vault.call("POST", "/keys/ops//encrypt", body)).status == 200
        cipher = {"alg": "RSA-OAEP-256", "value": oaep256_encrypt(bundle, b"x")}
        assert (await vault.call("POST", "/keys/ops//decrypt", cipher)).codes == ("Forbidden", "KeyDisabled")
        await vault.call("PATCH", "/keys/ops", {"attributes": {"enabled": True, "exp": now_of(vault) + 100}})
        assert (await vault.call("POST", "/keys/ops//encrypt", body)).status == 200
        await vault.advance(101)
        assert (await vault.call("POST", "/keys/ops//encrypt", body)).codes[0] == "Forbidden"
        assert (await vault.call("POST", "/keys/ops//decrypt", cipher)).status == 200
        ec_key = await vault.create("ec", "EC", key_ops=["encrypt"])
        assert (await vault.call("POST", f"/keys/ec/{version_of(ec_key)}/encrypt", body)).codes[0] == "BadParameter"


async def test_oct_keys_only_on_managed_hsm_with_aes_kw_and_gcm() -> None:
    async with open_vault() as vault:
        assert (await vault.call("POST", "/keys/aes/create", {"kty": "oct-HSM"})).codes[0] == "BadParameter"
    async with open_vault(managed_hsm=True) as vault:
        bundle = await vault.create("aes", "oct-HSM", key_size=256)
        assert set(bundle["key"]) == {"kid", "kty", "key_ops"}  # never the key bytes
        cek = os.urandom(32)
        wrapped = await vault.call("POST", "/keys/aes//wrapkey", {"alg": "A256KW", "value": b64(cek)})
        assert len(unb64(wrapped.body["value"])) == 40
        unwrapped = await vault.call("POST", "/keys/aes//unwrapkey", {"alg": "A256KW", "value": wrapped.body["value"]})
        assert unb64(unwrapped.body["value"]) == cek
        sealed = await vault.call(
            "POST", "/keys/aes//encrypt", {"alg": "A256GCM", "value": b64(b"hi"), "aad": b64(b"a")}
        )
        assert {"iv", "tag", "value"} <= set(sealed.body)
        opened = await vault.call("POST", "/keys/aes//decrypt", sealed.body | {"alg": "A256GCM"})
        assert unb64(opened.body["value"]) == b"hi"
        forged = await vault.call("POST", "/keys/aes//decrypt", sealed.body | {"alg": "A256GCM", "aad": b64(b"b")})
        assert forged.codes[0] == "BadParameter"
        assert (await vault.call("POST", "/keys/aes//wrapkey", {"alg": "A128KW", "value": b64(cek)})).status == 400


# -- service plumbing -----------------------------------------------------------------------


async def test_throttle_fault_is_429_with_retry_after_in_key_vault_form() -> None:
    async with open_vault() as vault:
        vault.fake.faults.configure(
            ProviderFaults.model_validate(
                {"rules": [{"operation": "CreateKey", "sequence": [{"kind": "throttle", "retry_after_seconds": 7}]}]}
            )
        )
        throttled = await vault.call("POST", "/keys/t/create", {"kty": "EC"})
        assert throttled.status == 429 and throttled.headers["Retry-After"] == "7"
        assert set(throttled.body["error"]) >= {"code", "message"}
        assert (await vault.call("POST", "/keys/t/create", {"kty": "EC"})).status == 200


async def test_request_log_names_operations_and_headers() -> None:
    async with open_vault() as vault:
        bundle = await vault.create("log")
        headers = {"Authorization": f"Bearer {vault.token}", "x-ms-client-request-id": "abc-123"}
        reply = await vault.raw("GET", f"{vault.url}/keys/log?api-version={API}", headers=headers)
        assert reply.headers["x-ms-client-request-id"] == "abc-123"
        assert re.fullmatch(r"[0-9a-f-]{36}", reply.headers["x-ms-request-id"])
        await vault.call("PATCH", f"/keys/log/{version_of(bundle)}", {"attributes": {"enabled": False}})
        await vault.call("GET", "/keys/log/versions")
        await vault.call("DELETE", "/keys/log")
        await vault.call("GET", "/deletedkeys")
        await vault.call("POST", "/deletedkeys/log/recover")
        await vault.call("GET", "/nowhere")
        by_operation = (await vault.raw("GET", vault.url + "/_fake/requests?entries=false")).body["by_operation"]
        assert by_operation == {
            "Token": 1,
            "CreateKey": 1,
            "GetKey": 1,
            "UpdateKey": 1,
            "ListKeyVersions": 1,
            "DeleteKey": 1,
            "ListDeletedKeys": 1,
            "RecoverDeletedKey": 1,
            "unknown": 1,
        }


async def test_snapshot_and_reset() -> None:
    async with open_vault() as vault:
        await vault.create("live")
        await vault.create("dead")
        await vault.call("DELETE", "/keys/dead")
        snap = (await vault.raw("GET", vault.url + "/_fake/state")).body
        assert [k["name"] for k in snap["keys"]] == ["live"] and [k["name"] for k in snap["deleted_keys"]] == ["dead"]
        assert snap["keys"][0]["versions"][0]["enabled"] is True
        assert snap["deleted_keys"][0]["scheduledPurgeDate"] - snap["deleted_keys"][0]["deletedDate"] == 90 * DAY
        assert (await vault.raw("POST", vault.url + "/_fake/reset")).status == 200
        snap = vault.fake.state_snapshot()
        assert snap["keys"] == [] and snap["deleted_keys"] == []
        assert (await vault.call("POST", "/keys/dead/create", {"kty": "EC"})).status == 200


@pytest.mark.parametrize(
    ("name", "status"), [("a" * 127, 200), ("A-9", 200), ("a" * 128, 400), ("a_b", 400), ("abc%0A", 400)]
)
async def test_key_names_follow_the_spec_pattern(name: str, status: int) -> None:
    async with open_vault() as vault:
        reply = await vault.raw(
            "POST",
            URL(f"{vault.url}/keys/{name}/create?api-version={API}", encoded=True),
            json={"kty": "EC"},
            headers={"Authorization": f"Bearer {vault.token}"},
        )
        assert reply.status == status
        if status == 400:
            assert reply.codes[0] == "BadParameter"
