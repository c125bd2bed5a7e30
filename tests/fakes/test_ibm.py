"""IBM Key Protect fake: IAM token flow, envelope, keys, aliases, wrap/unwrap, policies, registrations.

Also holds the small client the other ``test_ibm_*`` modules use (they import it from here).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from keyorch.fakes.base import RunningFake, start_fake
from keyorch.fakes.ibm import KeyProtectFake
from keyorch.fakes.ibm_wire import b64

KEY_TYPE = "application/vnd.ibm.kms.key+json"
ERROR_TYPE = "application/vnd.ibm.kms.error+json"
APIKEY_GRANT = "urn:ibm:params:oauth:grant-type:apikey"


@dataclass
class Answer:
    status: int
    doc: Any
    headers: dict[str, str]

    @property
    def code(self) -> str | None:
        """The first reason code of an IBM error body (None for success or errorMsg-only errors)."""
        if not isinstance(self.doc, dict) or self.doc.get("metadata", {}).get("collectionType") != ERROR_TYPE:
            return None
        reasons = self.doc["resources"][0].get("reasons") or [{}]
        code = reasons[0].get("code")
        return str(code) if code else None

    @property
    def resource(self) -> dict[str, Any]:
        assert isinstance(self.doc, dict), self.doc
        resource: dict[str, Any] = self.doc["resources"][0]
        return resource


@dataclass
class Ibm:
    """A running fake, a session and a token for its default user."""

    running: RunningFake
    session: aiohttp.ClientSession
    token: str

    @property
    def fake(self) -> KeyProtectFake:
        assert isinstance(self.running.fake, KeyProtectFake)
        return self.running.fake

    @property
    def url(self) -> str:
        return self.running.url

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}", "bluemix-instance": self.fake.instance_id}

    async def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Answer:
        sent = self.headers(token) if auth else {}
        sent.update(headers or {})
        body = data if data is not None else (json.dumps(json_body).encode() if json_body is not None else None)
        if body is not None:
            sent.setdefault("Content-Type", "application/json")
        async with self.session.request(method, self.url + path, data=body, headers=sent) as response:
            raw = await response.read()
            doc = json.loads(raw) if raw else None
            return Answer(response.status, doc, dict(response.headers))

    async def create(self, name: str = "key-1", **fields: Any) -> dict[str, Any]:
        answer = await self.call("POST", "/api/v2/keys", json_body=key_body(name, **fields))
        assert answer.status == 201, answer.doc
        return answer.resource

    async def action(self, key_id: str, action: str, body: Any = None, *, token: str | None = None) -> Answer:
        return await self.call("POST", f"/api/v2/keys/{key_id}/actions/{action}", json_body=body, token=token)

    async def get(self, key_id: str) -> Answer:
        return await self.call("GET", f"/api/v2/keys/{key_id}")

    async def advance(self, seconds: float) -> None:
        """Move the fake's clock, then log in again (tokens live an hour on the same clock)."""
        self.fake.clock.advance(seconds)
        self.token = await self.token_for(self.fake.apikey)

    async def login(self, apikey: str) -> aiohttp.ClientResponse:
        form = {"grant_type": APIKEY_GRANT, "apikey": apikey}
        async with self.session.post(self.url + "/identity/token", data=form) as response:
            await response.read()
            return response

    async def token_for(self, apikey: str) -> str:
        form = {"grant_type": APIKEY_GRANT, "apikey": apikey}
        async with self.session.post(self.url + "/identity/token", data=form) as response:
            assert response.status == 200
            return str((await response.json())["access_token"])

    async def new_apikey(self, user: str) -> str:
        """An API key owned by another user (admin route)."""
        async with self.session.post(self.url + "/_fake/ibm/apikeys", json={"user": user}) as response:
            assert response.status == 201
            return str((await response.json())["apikey"])

    async def new_user(self, user: str) -> str:
        """A token for another user."""
        return await self.token_for(await self.new_apikey(user))

    async def register(self, key_id: str, crn: str, prevent: bool = False) -> None:
        doc = {"keyId": key_id, "resourceCrn": crn, "preventKeyDeletion": prevent}
        async with self.session.post(self.url + "/_fake/ibm/registrations", json=doc) as response:
            assert response.status == 201, await response.text()


def key_body(name: str, **fields: Any) -> dict[str, Any]:
    resource = {"type": KEY_TYPE, "name": name, "extractable": False}
    resource.update(fields)
    return {"metadata": {"collectionType": KEY_TYPE, "collectionTotal": 1}, "resources": [resource]}


def policy_body(resource: dict[str, Any]) -> dict[str, Any]:
    policy_type = "application/vnd.ibm.kms.policy+json"
    return {"metadata": {"collectionType": policy_type, "collectionTotal": 1}, "resources": [resource]}


@asynccontextmanager
async def open_ibm(**kwargs: Any) -> AsyncIterator[Ibm]:
    running = await start_fake(KeyProtectFake(**kwargs))
    try:
        async with aiohttp.ClientSession() as session:
            form = {"grant_type": APIKEY_GRANT, "apikey": running.fake.credentials(running.url)["apikey"]}
            async with session.post(running.url + "/identity/token", data=form) as response:
                token = (await response.json())["access_token"]
            yield Ibm(running, session, token)
    finally:
        await running.stop()


@pytest.fixture
async def ibm() -> AsyncIterator[Ibm]:
    async with open_ibm() as client:
        yield client


# -- IAM token flow ---------------------------------------------------------------------------


async def test_token_flow_from_credentials_document(ibm: Ibm) -> None:
    async with ibm.session.get(ibm.url + "/_fake/credentials") as response:
        creds = await response.json()
    assert creds["iam_url"] == ibm.url + "/identity/token"
    assert creds["instance_id"] == ibm.fake.instance_id
    form = {"grant_type": APIKEY_GRANT, "apikey": creds["apikey"]}
    async with ibm.session.post(creds["iam_url"], data=form) as response:
        assert response.status == 200
        token = await response.json()
    assert token["token_type"] == "Bearer" and token["refresh_token"] == "not_supported"
    assert token["expires_in"] == 3600
    assert token["expiration"] == pytest.approx(ibm.fake.clock.now().timestamp() + 3600, abs=5)
    _header, payload, _signature = token["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["sub"] == claims["iam_id"] == "IBMid-fake-user-1"
    assert claims["exp"] == token["expiration"]
    headers = {"Authorization": f"Bearer {token['access_token']}", "bluemix-instance": creds["instance_id"]}
    key = await ibm.create("from-token")
    async with ibm.session.get(ibm.url + f"/api/v2/keys/{key['id']}", headers=headers) as response:
        assert response.status == 200
        assert (await response.json())["resources"][0]["createdBy"] == "IBMid-fake-user-1"


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"grant_type": APIKEY_GRANT, "apikey": "not-a-real-key"}, "BXNIM0415E"),
        ({"grant_type": APIKEY_GRANT}, "BXNIM0109E"),
        ({"apikey": "x"}, "BXNIM0109E"),
        ({"grant_type": "client_credentials", "apikey": "x"}, "BXNIM0103E"),
    ],
)
async def test_token_endpoint_refuses_in_iam_form(ibm: Ibm, form: dict[str, str], code: str) -> None:
    async with ibm.session.post(ibm.url + "/identity/token", data=form) as response:
        assert response.status == 400
        doc = await response.json()
    assert doc["errorCode"] == code and doc["errorMessage"] and "requestId" in doc["context"]
    if code == "BXNIM0415E":
        assert doc["errorMessage"] == "Provided API key could not be found."


async def test_tokens_are_bound_to_the_api_key_user(ibm: Ibm) -> None:
    bob = await ibm.new_user("IBMid-bob")
    answer = await ibm.call("POST", "/api/v2/keys", json_body=key_body("bobs"), token=bob)
    assert answer.status == 201 and answer.resource["createdBy"] == "IBMid-bob"
    deleted = await ibm.call(
        "DELETE", f"/api/v2/keys/{answer.resource['id']}", headers={"prefer": "return=representation"}
    )
    assert deleted.status == 200 and deleted.resource["deletedBy"] == "IBMid-fake-user-1"
    async with ibm.session.get(ibm.url + "/_fake/state") as response:
        assert (await response.json())["users"] == ["IBMid-bob", "IBMid-fake-user-1"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer a b"},
        {"Authorization": "Token abc"},
    ],
)
async def test_missing_or_malformed_bearer_is_401_in_ibm_form(ibm: Ibm, headers: dict[str, str]) -> None:
    headers = {**headers, "bluemix-instance": ibm.fake.instance_id}
    answer = await ibm.call("GET", "/api/v2/keys", headers=headers, auth=False)
    assert answer.status == 401
    assert answer.doc["metadata"] == {"collectionType": ERROR_TYPE, "collectionTotal": 1}
    assert answer.resource == {"errorMsg": "Unauthorized: The user does not have access to the specified resource"}


@pytest.mark.parametrize("instance", [None, "", "00000000-0000-4000-8000-000000000000", "not-a-guid"])
async def test_bluemix_instance_header_must_name_the_instance(ibm: Ibm, instance: str | None) -> None:
    headers = {"Authorization": f"Bearer {ibm.token}"}
    if instance is not None:
        headers["bluemix-instance"] = instance
    answer = await ibm.call("GET", "/api/v2/keys", headers=headers, auth=False)
    assert answer.status == 401 and answer.resource["errorMsg"].startswith("Unauthorized")
    good = await ibm.call("GET", "/api/v2/keys")
    assert good.status == 200


async def test_instance_id_given_to_constructor() -> None:
    async with open_ibm(instance_id="11111111-2222-4333-8444-555555555555", apikey="my-key") as client:
        assert client.fake.credentials(client.url)["instance_id"] == "11111111-2222-4333-8444-555555555555"
        assert (await client.login("my-key")).status == 200
        key = await client.create()
        assert ":11111111-2222-4333-8444-555555555555:key:" in key["crn"]


async def test_revoked_and_expired_tokens_are_refused(ibm: Ibm) -> None:
    assert (await ibm.call("GET", "/api/v2/keys")).status == 200
    async with ibm.session.delete(ibm.url + "/_fake/tokens") as response:
        assert (await response.json())["revoked"] >= 1
    assert (await ibm.call("GET", "/api/v2/keys")).status == 401
    fresh = await ibm.token_for(ibm.fake.apikey)
    assert (await ibm.call("GET", "/api/v2/keys", token=fresh)).status == 200
    await ibm.advance(3601)
    assert (await ibm.call("GET", "/api/v2/keys", token=fresh)).status == 401


async def test_throttle_is_429_in_ibm_form_with_retry_after(ibm: Ibm) -> None:
    rules = {"rules": [{"operation": "ListKeys", "sequence": [{"kind": "throttle", "retry_after_seconds": 7}]}]}
    async with ibm.session.put(ibm.url + "/_fake/faults", json=rules) as response:
        assert response.status == 200
    answer = await ibm.call("GET", "/api/v2/keys")
    assert answer.status == 429 and answer.headers["Retry-After"] == "7"
    assert answer.doc["metadata"]["collectionType"] == ERROR_TYPE and "errorMsg" in answer.resource
    assert (await ibm.call("GET", "/api/v2/keys")).status == 200
    async with ibm.session.get(ibm.url + "/_fake/requests?entries=false") as response:
        log = await response.json()
    assert log["by_operation"]["ListKeys"] == 2 and log["faults"] == {"throttle": 1}


# -- keys, envelope, list ---------------------------------------------------------------------


async def test_create_get_and_metadata(ibm: Ibm) -> None:
    expires = (ibm.fake.clock.now() + timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    root = await ibm.create("root-1", description="d", expirationDate=expires, aliases=["root-alias"])
    assert root["state"] == 1 and root["extractable"] is False and root["imported"] is False
    assert root["aliases"] == ["root-alias"] and root["expirationDate"] == expires
    assert root["crn"].endswith(f":{ibm.fake.instance_id}:key:{root['id']}") and "payload" not in root
    material = b64(b"s" * 40)
    standard = await ibm.create("std-1", extractable=True, payload=material)
    assert standard["payload"] == material and standard["imported"] is True
    got = await ibm.get(standard["id"])
    assert got.status == 200 and got.doc["metadata"] == {"collectionType": KEY_TYPE, "collectionTotal": 1}
    assert got.resource["payload"] == material
    meta = await ibm.call("GET", f"/api/v2/keys/{standard['id']}/metadata")
    assert meta.status == 200 and "payload" not in meta.resource and meta.resource["id"] == standard["id"]
    by_alias = await ibm.get("root-alias")
    assert by_alias.resource["id"] == root["id"]
    missing = await ibm.get("no-such-alias")
    assert missing.status == 404 and missing.code == "KEY_NOT_FOUND_ERR"
    generated = await ibm.create("std-2", extractable=True)
    assert len(base64.b64decode(generated["payload"])) == 32


async def test_create_prefer_minimal_and_bad_envelopes(ibm: Ibm) -> None:
    minimal = await ibm.call("POST", "/api/v2/keys", json_body=key_body("m1"), headers={"prefer": "return=minimal"})
    assert minimal.status == 201 and set(minimal.resource) == {"id"}
    wrong_total = key_body("xx")
    wrong_total["metadata"]["collectionTotal"] = 2
    two = key_body("xx")
    two["metadata"]["collectionTotal"] = 2
    two["resources"].append(dict(two["resources"][0]))
    cases = [
        (wrong_total, "COLLECTION_TOTAL_MISMATCH_ERR"),
        (two, "BAD_BODY_ERR"),
        ({"metadata": {}, "resources": key_body("xx")["resources"]}, "BAD_BODY_ERR"),
        (key_body("xx", bogus=1), "BAD_BODY_ERR"),
        (key_body("xx", extractable="no"), "INVALID_FIELD_ERR"),
        (key_body("xx", expirationDate="2001-01-01T00:00:00Z"), "INVALID_FIELD_ERR"),
        (key_body("xx", payload="%%%"), "INVALID_FIELD_ERR"),
        (key_body("xx", payload=b64(b"short")), "INVALID_FIELD_ERR"),
        (key_body("xx", aliases=["a"]), "INVALID_FIELD_ERR"),
        (key_body("xx", aliases=["keys"]), "INVALID_FIELD_ERR"),
        (key_body("xx", aliases=[f"a-{i}" for i in range(6)]), "KEY_ALIAS_QUOTA_ERR"),
        (key_body("xx" * 91), "INVALID_FIELD_ERR"),
    ]
    for body, code in cases:
        answer = await ibm.call("POST", "/api/v2/keys", json_body=body)
        assert (answer.status, answer.code) == (400, code), body
        assert answer.resource["errorMsg"].startswith("Bad Request: Key could not be created")
        assert answer.doc["resources"][0]["reasons"][0]["moreInfo"] == "https://cloud.ibm.com/apidocs/key-protect"
    empty = await ibm.call("POST", "/api/v2/keys", data=b"")
    assert (empty.status, empty.code) == (400, "NO_BODY_ERR")
    assert len(ibm.fake.state.keys) == 1


async def test_list_pagination_filters_and_count(ibm: Ibm) -> None:
    ids = [(await ibm.create(f"key-{i}", extractable=i % 2 == 0))["id"] for i in range(5)]
    await ibm.call("DELETE", f"/api/v2/keys/{ids[0]}")
    listed = await ibm.call("GET", "/api/v2/keys")
    assert [k["id"] for k in listed.doc["resources"]] == ids[1:]
    assert listed.doc["metadata"]["collectionTotal"] == 4 and "payload" not in listed.doc["resources"][0]
    page = await ibm.call("GET", "/api/v2/keys?limit=2&offset=1")
    assert [k["id"] for k in page.doc["resources"]] == ids[2:4] and page.doc["metadata"]["collectionTotal"] == 2
    deleted = await ibm.call("GET", "/api/v2/keys?state=5")
    assert [k["id"] for k in deleted.doc["resources"]] == [ids[0]]
    every = await ibm.call("GET", "/api/v2/keys?state=0,1,2,3,5&extractable=true")
    assert [k["id"] for k in every.doc["resources"]] == [ids[0], ids[2], ids[4]]
    filtered = await ibm.call("GET", "/api/v2/keys?filter=state%3D5%20extractable%3Dtrue")
    assert [k["id"] for k in filtered.doc["resources"]] == [ids[0]]
    searched = await ibm.call("GET", "/api/v2/keys?search=key-3")
    assert [k["id"] for k in searched.doc["resources"]] == [ids[3]]
    newest_first = await ibm.call("GET", "/api/v2/keys?sort=-creationDate&limit=1")
    assert newest_first.doc["resources"][0]["id"] == ids[4]
    count = await ibm.call("HEAD", "/api/v2/keys?extractable=false")
    assert count.status == 200 and count.headers["Key-Total"] == "2"
    for bad in ("limit=0", "limit=5001", "offset=-1", "state=4", "state=1,x", "extractable=maybe", "sort=name",
                "filter=state%3D1&state=1", "filter=colour%3Dred"):  # fmt: skip
        answer = await ibm.call("GET", f"/api/v2/keys?{bad}")
        assert (answer.status, answer.code) == (400, "INVALID_FIELD_ERR"), bad


async def test_aliases_routes(ibm: Ibm) -> None:
    one = await ibm.create("one", aliases=["first"])
    two = await ibm.create("two")
    added = await ibm.call("POST", f"/api/v2/keys/{one['id']}/aliases/second")
    assert added.status == 201
    assert added.doc["metadata"]["collectionType"] == "application/vnd.ibm.kms.key_alias+json"
    assert added.resource["keyId"] == one["id"] and added.resource["alias"] == "second"
    assert (await ibm.get("second")).resource["aliases"] == ["first", "second"]
    clash = await ibm.call("POST", f"/api/v2/keys/{two['id']}/aliases/FIRST")
    assert (clash.status, clash.code) == (409, "KEY_ALIAS_NOT_UNIQUE_ERR")
    taken = await ibm.call("POST", "/api/v2/keys", json_body=key_body("three", aliases=["second"]))
    assert (taken.status, taken.code) == (409, "KEY_ALIAS_NOT_UNIQUE_ERR")
    for i in range(3):
        assert (await ibm.call("POST", f"/api/v2/keys/{one['id']}/aliases/more-{i}")).status == 201
    full = await ibm.call("POST", f"/api/v2/keys/{one['id']}/aliases/sixth")
    assert (full.status, full.code) == (400, "KEY_ALIAS_QUOTA_ERR")
    bad = await ibm.call("POST", f"/api/v2/keys/{two['id']}/aliases/{one['id']}")
    assert (bad.status, bad.code) == (400, "INVALID_FIELD_ERR")
    assert (await ibm.call("DELETE", f"/api/v2/keys/{one['id']}/aliases/second")).status == 204
    assert (await ibm.get("second")).status == 404
    assert (await ibm.call("POST", f"/api/v2/keys/{two['id']}/aliases/second")).status == 201


# -- wrap / unwrap / rotate -------------------------------------------------------------------


async def test_wrap_unwrap_rewrap_with_real_aes_gcm(ibm: Ibm) -> None:
    key = await ibm.create("kek")
    dek = b64(b"d" * 32)
    wrapped = await ibm.action(key["id"], "wrap", {"plaintext": dek, "aad": ["ctx-1"]})
    assert wrapped.status == 200 and "plaintext" not in wrapped.doc
    assert wrapped.doc["keyVersion"]["id"] == key["id"]
    opened = await ibm.action(key["id"], "unwrap", {"ciphertext": wrapped.doc["ciphertext"], "aad": ["ctx-1"]})
    assert opened.status == 200 and opened.doc["plaintext"] == dek
    wrong_aad = await ibm.action(key["id"], "unwrap", {"ciphertext": wrapped.doc["ciphertext"], "aad": ["other"]})
    assert (wrong_aad.status, wrong_aad.code) == (422, "UNPROCESSABLE_CIPHERTEXT_ERR")
    blob = json.loads(base64.b64decode(wrapped.doc["ciphertext"]))
    blob["ciphertext"] = b64(bytes(b ^ 1 for b in base64.b64decode(blob["ciphertext"])))
    tampered = await ibm.action(key["id"], "unwrap", {"ciphertext": b64(json.dumps(blob).encode())})
    assert (tampered.status, tampered.code) == (422, "UNPROCESSABLE_CIPHERTEXT_ERR")
    garbage = await ibm.action(key["id"], "unwrap", {"ciphertext": "not base64!"})
    assert (garbage.status, garbage.code) == (400, "INVALID_FIELD_ERR")
    assert garbage.doc["resources"][0]["reasons"][0]["target"] == {"type": "field", "name": "ciphertext"}
    no_body = await ibm.call("POST", f"/api/v2/keys/{key['id']}/actions/unwrap")
    assert (no_body.status, no_body.code) == (400, "NO_BODY_ERR")
    generated = await ibm.call("POST", f"/api/v2/keys/{key['id']}?action=wrap")
    assert generated.status == 200 and len(base64.b64decode(generated.doc["plaintext"])) == 32
    other = await ibm.create("other-kek")
    foreign = await ibm.action(other["id"], "unwrap", {"ciphertext": wrapped.doc["ciphertext"]})
    assert foreign.status == 422

    assert (await ibm.action(key["id"], "rotate")).status == 204
    rotated = await ibm.get(key["id"])
    new_version = rotated.resource["keyVersion"]["id"]
    assert new_version != key["id"] and "lastRotateDate" in rotated.resource
    old = await ibm.action(key["id"], "unwrap", {"ciphertext": wrapped.doc["ciphertext"], "aad": ["ctx-1"]})
    assert old.doc == {"plaintext": dek, "keyVersion": {"id": key["id"], "creationDate": key["creationDate"]}}
    rewrapped = await ibm.action(key["id"], "rewrap", {"ciphertext": wrapped.doc["ciphertext"], "aad": ["ctx-1"]})
    assert rewrapped.doc["keyVersion"]["id"] == new_version
    again = await ibm.action(key["id"], "unwrap", {"ciphertext": rewrapped.doc["ciphertext"], "aad": ["ctx-1"]})
    assert again.doc["plaintext"] == dek and again.doc["keyVersion"]["id"] == new_version
    versions = await ibm.call("GET", f"/api/v2/keys/{key['id']}/versions?totalCount=true")
    assert [v["id"] for v in versions.doc["resources"]] == [new_version, key["id"]]
    assert versions.doc["metadata"]["totalCount"] == 2


async def test_rotation_rules(ibm: Ibm) -> None:
    key = await ibm.create("rot")
    with_payload = await ibm.action(key["id"], "rotate", {"payload": b64(b"k" * 32)})
    assert (with_payload.status, with_payload.code) == (400, "INVALID_FIELD_ERR")
    assert (await ibm.action(key["id"], "rotate")).status == 204
    soon = await ibm.action(key["id"], "rotate")
    assert (soon.status, soon.code) == (409, "KEY_ROTATION_NOT_PERMITTED")
    await ibm.advance(3601)
    assert (await ibm.call("POST", f"/api/v2/keys/{key['id']}?action=rotate")).status == 204
    assert len((await ibm.call("GET", f"/api/v2/keys/{key['id']}/versions")).doc["resources"]) == 3
    imported = await ibm.create("imp", payload=b64(b"i" * 32))
    bare = await ibm.action(imported["id"], "rotate")
    assert (bare.status, bare.code) == (400, "KEY_PAYLOAD_REQ_ERR")
    assert (await ibm.action(imported["id"], "rotate", {"payload": b64(b"j" * 32)})).status == 204


# -- policies and registrations ---------------------------------------------------------------


async def test_key_and_instance_dual_auth_policies(ibm: Ibm) -> None:
    before = await ibm.create("before")
    path = f"/api/v2/keys/{before['id']}/policies?policy=dualAuthDelete"
    body = policy_body({"type": "application/vnd.ibm.kms.policy+json", "dualAuthDelete": {"enabled": True}})
    put = await ibm.call("PUT", path, json_body=body)
    assert put.status == 200 and put.resource["dualAuthDelete"] == {"enabled": True}
    assert (await ibm.get(before["id"])).resource["dualAuthDelete"]["enabled"] is True
    off = policy_body({"type": "application/vnd.ibm.kms.policy+json", "dualAuthDelete": {"enabled": False}})
    refused = await ibm.call("PUT", path, json_body=off)
    assert (refused.status, refused.code) == (400, "INVALID_FIELD_ERR")
    mismatch = await ibm.call("PUT", f"/api/v2/keys/{before['id']}/policies?policy=rotation", json_body=body)
    assert (mismatch.status, mismatch.code) == (400, "BODY_QUERY_PARAM_MISMATCH_ERR")
    listed = await ibm.call("GET", f"/api/v2/keys/{before['id']}/policies")
    assert [p["dualAuthDelete"] for p in listed.doc["resources"]] == [{"enabled": True}]

    untouched = await ibm.create("untouched")
    instance_body = policy_body({"policy_type": "dualAuthDelete", "policy_data": {"enabled": True}})
    instance_body["metadata"]["collectionTotal"] = 2
    bad_total = await ibm.call("PUT", "/api/v2/instance/policies?policy=dualAuthDelete", json_body=instance_body)
    assert (bad_total.status, bad_total.code) == (400, "COLLECTION_TOTAL_MISMATCH_ERR")
    wrong_type = policy_body({"policy_type": "allowedIP", "policy_data": {"enabled": True}})
    bad_type = await ibm.call("PUT", "/api/v2/instance/policies?policy=dualAuthDelete", json_body=wrong_type)
    assert (bad_type.status, bad_type.code) == (400, "BODY_QUERY_PARAM_MISMATCH_ERR")
    extra = policy_body({"policy_type": "dualAuthDelete", "policy_data": {"enabled": True}, "extra_field": 1})
    bad_extra = await ibm.call("PUT", "/api/v2/instance/policies?policy=dualAuthDelete", json_body=extra)
    assert (bad_extra.status, bad_extra.code) == (400, "BAD_BODY_ERR")
    good = policy_body({"policy_type": "dualAuthDelete", "policy_data": {"enabled": True}})
    assert (await ibm.call("PUT", "/api/v2/instance/policies?policy=dualAuthDelete", json_body=good)).status == 204
    got = await ibm.call("GET", "/api/v2/instance/policies?policy=dualAuthDelete")
    assert got.resource["policy_type"] == "dualAuthDelete" and got.resource["policy_data"] == {"enabled": True}
    after = await ibm.create("after")
    assert after["dualAuthDelete"]["enabled"] is True
    assert (await ibm.get(untouched["id"])).resource["dualAuthDelete"]["enabled"] is False


async def test_registrations_listing(ibm: Ibm) -> None:
    key = await ibm.create("reg")
    other = await ibm.create("reg-2")
    await ibm.register(key["id"], "crn:v1:bluemix:public:cloud-object-storage:global:a/1:b1:bucket:one")
    await ibm.register(key["id"], "crn:v1:bluemix:public:cloud-object-storage:global:a/1:b1:bucket:two", True)
    await ibm.register(other["id"], "crn:v1:bluemix:public:databases-for-postgresql:us-south:a/1:d1::")
    regs = await ibm.call("GET", f"/api/v2/keys/{key['id']}/registrations?totalCount=true")
    assert regs.status == 200 and regs.doc["metadata"]["collectionTotal"] == 2
    assert regs.doc["metadata"]["collectionType"] == "application/vnd.ibm.kms.registration+json"
    assert {r["preventKeyDeletion"] for r in regs.doc["resources"]} == {False, True}
    assert regs.resource["keyId"] == key["id"] and regs.resource["keyName"] == "reg"
    protected = await ibm.call("GET", f"/api/v2/keys/{key['id']}/registrations?preventKeyDeletion=true")
    assert [r["resourceCrn"].rsplit(":", 1)[1] for r in protected.doc["resources"]] == ["two"]
    every = await ibm.call("GET", "/api/v2/keys/registrations?urlEncodedResourceCRNQuery=*cloud-object-storage*")
    assert every.doc["metadata"]["collectionTotal"] == 2
    assert (await ibm.call("GET", "/api/v2/keys/registrations")).doc["metadata"]["collectionTotal"] == 3
    async with ibm.session.post(ibm.url + "/_fake/ibm/registrations", json={"keyId": "nope", "resourceCrn": "c"}) as r:
        assert r.status == 404
    standard = await ibm.create("std", extractable=True)
    async with ibm.session.post(
        ibm.url + "/_fake/ibm/registrations", json={"keyId": standard["id"], "resourceCrn": "c"}
    ) as r:
        assert r.status == 422


async def test_correlation_id_echoed_snapshot_and_reset(ibm: Ibm) -> None:
    key = await ibm.create("snap")
    answer = await ibm.call("GET", "/api/v2/keys/nope", headers={"correlation-id": "abc-123"})
    assert answer.status == 404 and answer.headers["Correlation-Id"] == "abc-123"
    async with ibm.session.get(ibm.url + "/_fake/state") as response:
        snapshot = await response.json()
    assert snapshot["instance_id"] == ibm.fake.instance_id
    assert [(k["id"], k["state"]) for k in snapshot["keys"]] == [(key["id"], 1)]
    assert "payload" not in snapshot["keys"][0]
    async with ibm.session.post(ibm.url + "/_fake/reset") as response:
        assert response.status == 200
    assert (await ibm.call("GET", "/api/v2/keys")).doc["resources"] == []
    assert (await ibm.login(ibm.fake.apikey)).status == 200
