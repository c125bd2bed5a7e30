"""Error shapes for every kind of bad request, keystore connect (credentials), hooks."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from keyorch.api.errors import MAX_BODY_BYTES
from tests.api.conftest import API, Api, ApiFactory, auth, error_of, target_of


@pytest.mark.parametrize(
    ("method", "path", "data", "status", "code"),
    [
        ("GET", "/api/v4/nothing-here", None, 404, "not_found"),
        ("GET", "/elsewhere", None, 404, "not_found"),
        ("PUT", "/api/v4/vaults", None, 405, "method_not_allowed"),
        ("PATCH", "/api/v4/managed_keys", None, 405, "method_not_allowed"),
        ("POST", "/api/v4/vaults", b"{not json", 400, "invalid_json"),
        ("POST", "/api/v4/vaults", b"", 400, "invalid_json"),
        ("POST", "/api/v4/vaults", b"[1, 2]", 400, "invalid_json"),
        ("POST", "/api/v4/vaults", b'{"name": NaN}', 400, "invalid_json"),
        ("POST", "/api/v4/vaults", b'{"name": "\\ud800"}', 400, "invalid_input"),
        ("POST", "/api/v4/vaults", b"\xff\xfe", 400, "invalid_json"),
        ("POST", "/api/v4/vaults", b"[" * 100_000 + b"]" * 100_000, 400, "invalid_json"),
        ("POST", "/api/v4/vaults", b'{"name": "' + b"a" * (MAX_BODY_BYTES + 1) + b'"}', 413, "request_too_large"),
        ("POST", "/api/v4/vaults", b'{"name": 7}', 400, "invalid_input"),
        ("POST", "/api/v4/vaults", b'{"name": "ok", "dual_auth": "yes"}', 400, "invalid_input"),
        ("POST", "/api/v4/vaults", b'{"name": "ok", "color": "red"}', 400, "invalid_input"),
        ("POST", "/api/v4/vaults", b'{"name": "bad name!"}', 400, "invalid_input"),
        ("POST", "/api/v4/templates", b'{"vault": "v", "name": "t", "keystores": []}', 400, "invalid_input"),
        ("GET", "/api/v4/managed_keys/unknown", None, 404, "not_found"),
        ("GET", "/api/v4/managed_keys?state=%ED%A0%80", None, 400, "invalid_input"),
    ],
)
async def test_error_shapes(api: Api, method: str, path: str, data: bytes | None, status: int, code: str) -> None:
    payload = io.BytesIO(data) if data is not None and len(data) > 1024 * 1024 else data  # large: stream it
    headers = {**auth("admin"), "Content-Type": "application/json"} if data is not None else auth("admin")
    resp = await api.client.request(method, path, data=payload, headers=headers)
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    doc = await error_of(resp)
    assert doc["errors"][0]["code"] == code
    if status == 405:
        assert resp.headers["Allow"]


async def test_validation_error_names_field_value_and_allowed(api: Api) -> None:
    resp = await api.request(
        "POST",
        "/keystores",
        json={"vault": "v", "name": "k", "type": "oracle_kms", "credentials_from_environment": True},
    )
    err = (await error_of(resp))["errors"][0]
    assert target_of(err) == ("field", "type")
    assert "'oracle_kms'" in err["message"] and "aws_kms" in err["message"]
    missing = await error_of(await api.request("POST", "/managed_keys", json={"label": "x"}))
    assert missing["errors"][0] == {
        "code": "invalid_input",
        "message": "body field template is required",
        "more_info": "/api/v4/docs",
        "message_params": ["template"],
        "target": {"type": "field", "name": "template"},
    }


async def test_connect_with_inline_credentials_stores_them_encrypted_and_never_returns_them(api: Api) -> None:
    vault, _ = await api.shared()
    body: dict[str, Any] = {
        "vault": vault,
        "name": "aws-main",
        "type": "aws_kms",
        "region": "us-east-1",
        "credentials": {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "very-secret-value"},
    }
    resp = await api.request("POST", "/keystores", json=body)
    assert resp.status == 201, await resp.text()
    doc = await resp.json()
    assert doc["credentials"] == "stored" and "very-secret-value" not in json.dumps(doc)
    async with api.store.transaction() as tx:
        blob = await tx.keystore_credentials(doc["id"])
        audit = await tx.list_audit(object_id=doc["id"])
    assert blob is not None and b"very-secret-value" not in blob
    assert all("very-secret-value" not in json.dumps(r.as_json()) for r in audit)
    for path in (f"/keystores/{doc['id']}", "/keystores", f"/keystores/{doc['id']}/status"):
        assert "very-secret-value" not in await (await api.request("GET", path)).text()

    bad = dict(body, name="aws-2", credentials={"access_key_id": "AKIA", "secret_access_key": 5, "x": "hidden-1"})
    err = await error_of(await api.request("POST", "/keystores", json=bad))
    assert err["status_code"] == 400 and target_of(err["errors"][0]) == ("field", "credentials")
    assert "hidden-1" not in json.dumps(err)
    both = dict(body, name="aws-3", credentials_from_environment=True)
    assert (await api.request("POST", "/keystores", json=both)).status == 400
    neither = {k: v for k, v in body.items() if k != "credentials"} | {"name": "aws-4"}
    assert (await api.request("POST", "/keystores", json=neither)).status == 400
    dup = await api.request("POST", "/keystores", json=body)
    assert dup.status == 409
    ca = dict(body, name="aws-5", ca_pem="not a certificate")
    ca_err = (await error_of(await api.request("POST", "/keystores", json=ca)))["errors"][0]
    assert target_of(ca_err) == ("field", "ca_pem")


async def test_connect_with_credentials_but_no_master_key_is_409(api_factory: ApiFactory) -> None:
    api = await api_factory(master_key=None)
    vault = await api.vault()
    body = {
        "vault": vault,
        "name": "aws",
        "type": "aws_kms",
        "region": "us-east-1",
        "credentials": {"access_key_id": "AKIA", "secret_access_key": "s"},
    }
    err = await error_of(await api.request("POST", "/keystores", json=body))
    assert err["status_code"] == 409 and err["errors"][0]["code"] == "master_key_missing"
    env = {k: v for k, v in body.items() if k != "credentials"} | {"credentials_from_environment": True}
    resp = await api.request("POST", "/keystores", json=env)
    assert resp.status == 201 and (await resp.json())["credentials"] == "environment"


async def test_disconnect_refused_while_an_active_key_targets_it(api: Api) -> None:
    key = await api.key(state="active")
    keystore = key.targets[0].keystore_id
    resp = await api.request(
        "DELETE", f"/keystores/{keystore}", headers={"If-Match": await api.etag(f"/keystores/{keystore}")}
    )
    assert resp.status == 409 and (await error_of(resp))["errors"][0]["code"] == "rule_violation"


async def test_sync_without_a_reconciler_is_503_and_a_failing_on_change_does_not_fail(api_factory: ApiFactory) -> None:
    def explode(_key_id: str) -> None:
        raise RuntimeError("daemon queue closed")

    api = await api_factory(sync_key=None, on_change=explode)
    key = await api.key(state="pre_active")
    resp = await api.request("POST", f"/managed_keys/{key.id}/sync_status_in_keystores")
    err = await error_of(resp)
    assert resp.status == 503 and "reconciler" in err["errors"][0]["message"]
    etag = await api.etag(f"/managed_keys/{key.id}")
    assert (await api.request("POST", f"/managed_keys/{key.id}/activate", headers={"If-Match": etag})).status == 200


async def test_unexpected_failure_is_a_generic_500(api_factory: ApiFactory) -> None:
    async def broken_sync(_key_id: str) -> dict[str, Any]:
        raise KeyError("internal")

    api = await api_factory(sync_key=broken_sync)
    key = await api.key(state="active")
    resp = await api.request("POST", f"/managed_keys/{key.id}/sync_status_in_keystores")
    assert resp.status == 503  # a failing reconciler is unavailability, not a crash of the API
    assert "internal" not in (await resp.text()).replace("KeyError", "")


async def test_openapi_is_public_and_errors_have_json_content_type(api: Api) -> None:
    resp = await api.client.get(API + "/openapi.json")
    assert resp.status == 200 and (await resp.json())["openapi"].startswith("3.")
