"""Google's service-account JWT-bearer flow against the Cloud KMS fake, signed here with `cryptography`."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from keyorch.fakes.base import RunningFake, start_fake
from keyorch.fakes.gcp import GoogleKmsFake

KMS_SCOPE = "https://www.googleapis.com/auth/cloudkms"
RING_PATH = "/v1/projects/keyorch-fake/locations/global/keyRings"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(key: rsa.RSAPrivateKey, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    """An RS256 compact JWT, built the way google-auth builds its assertion."""
    head = b64url(json.dumps(header or {"alg": "RS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    signature = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{b64url(signature)}"


class Flow:
    def __init__(self, running: RunningFake, session: aiohttp.ClientSession, creds: dict[str, Any]) -> None:
        self.running = running
        self.fake = running.fake
        self.session = session
        self.creds = creds
        loaded = serialization.load_pem_private_key(creds["private_key"].encode(), password=None)
        assert isinstance(loaded, rsa.RSAPrivateKey)
        self.key = loaded

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(self.fake.clock.now().timestamp())
        claims = {"iss": self.creds["client_email"], "aud": self.creds["token_uri"], "scope": KMS_SCOPE}
        claims |= {"iat": now, "exp": now + 3600}
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def assertion(self, **changes: Any) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": self.creds["private_key_id"]}
        return sign(self.key, self.claims(**changes), header)

    async def token(self, form: dict[str, str]) -> tuple[int, Any]:
        async with self.session.post(self.creds["token_uri"], data=form) as response:
            return response.status, await response.json(content_type=None)

    async def grant(self, assertion: str) -> tuple[int, Any]:
        return await self.token({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion})

    async def api(self, token: str) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        async with self.session.get(self.running.url + RING_PATH, headers=headers) as response:
            return response.status, await response.json(content_type=None)


@pytest.fixture
async def flow() -> AsyncIterator[Flow]:
    running = await start_fake(GoogleKmsFake())
    async with aiohttp.ClientSession() as session:
        async with session.get(running.url + "/_fake/credentials") as response:
            creds = await response.json()
        yield Flow(running, session, creds)
    await running.stop()


async def test_credentials_are_a_service_account_json_pointing_at_the_fake(flow: Flow) -> None:
    creds = flow.creds
    assert creds["type"] == "service_account"
    assert creds["project_id"] == "keyorch-fake"
    assert creds["token_uri"] == flow.running.url + "/token"
    assert creds["client_email"].endswith(".iam.gserviceaccount.com")
    assert len(creds["private_key_id"]) == 40 and creds["client_id"].isdigit()
    assert creds["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert flow.key.key_size == 2048


async def test_jwt_bearer_grant_gives_a_token_the_api_accepts(flow: Flow) -> None:
    flow.fake.tokens.strict = True
    status, doc = await flow.api("made-up-token")
    assert status == 401 and doc["error"]["status"] == "UNAUTHENTICATED"
    status, doc = await flow.grant(flow.assertion())
    assert status == 200, doc
    assert set(doc) == {"access_token", "expires_in", "token_type"}
    assert doc["token_type"] == "Bearer" and doc["expires_in"] == 3599
    assert (await flow.api(doc["access_token"]))[0] == 200
    # the cloud-platform scope works too; the token then expires on the fake clock
    status, doc = await flow.grant(flow.assertion(scope="https://www.googleapis.com/auth/cloud-platform openid"))
    assert status == 200
    flow.fake.clock.advance(3600)
    status, error = await flow.api(doc["access_token"])
    assert status == 401 and error["error"]["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"


async def test_token_lacking_a_kms_scope_is_refused_by_the_api(flow: Flow) -> None:
    status, doc = await flow.grant(flow.assertion(scope="https://www.googleapis.com/auth/devstorage.read_only"))
    assert status == 200
    status, error = await flow.api(doc["access_token"])
    assert status == 403 and error["error"]["status"] == "PERMISSION_DENIED"
    assert error["error"]["details"][0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"


def _other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def test_token_endpoint_refusals_in_google_oauth_form(flow: Flow) -> None:
    now = int(flow.fake.clock.now().timestamp())
    grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
    good_parts = flow.assertion().split(".")
    signature = ("invalid_grant", "Invalid JWT Signature.")
    timing = ("invalid_grant", "Invalid JWT: Token must be a short-lived token")
    malformed = ("invalid_grant", "Invalid JWT: malformed assertion.")
    scope = ("invalid_scope", "Invalid OAuth scope")
    tampered = ".".join([good_parts[0], b64url(json.dumps(flow.claims(iss="x")).encode()), good_parts[2]])
    cases: list[tuple[str, str | None, tuple[str, str]]] = [
        ("foreign key", sign(_other_key(), flow.claims()), signature),
        ("tampered claims", tampered, signature),
        ("wrong kid", sign(flow.key, flow.claims(), {"alg": "RS256", "kid": "0" * 40}), signature),
        ("alg none", sign(flow.key, flow.claims(), {"alg": "none"}), signature),
        ("alg HS256", sign(flow.key, flow.claims(), {"alg": "HS256"}), signature),
        (
            "unknown issuer",
            flow.assertion(iss="someone@else.iam.gserviceaccount.com"),
            ("invalid_grant", "Invalid grant"),
        ),
        (
            "wrong audience",
            flow.assertion(aud="https://example.com/token"),
            ("invalid_grant", "Invalid JWT: Failed audience"),
        ),
        ("expired", flow.assertion(iat=now - 7200, exp=now - 3600), timing),
        ("too long-lived", flow.assertion(exp=now + 7200), timing),
        ("issued in the future", flow.assertion(iat=now + 600, exp=now + 1200), timing),
        ("iat missing", flow.assertion(iat=None), timing),
        ("exp as text", flow.assertion(exp=str(now + 60)), timing),
        ("scope missing", flow.assertion(scope=None), scope),
        ("scope blank", flow.assertion(scope="  "), scope),
        ("not a JWT", "not.a.jwt", malformed),
        ("two parts", "abc.def", malformed),
        ("no assertion", None, ("invalid_request", "Missing required parameter: assertion")),
    ]
    for label, assertion, (error, description) in cases:
        form = {"grant_type": grant} if assertion is None else {"grant_type": grant, "assertion": assertion}
        status, doc = await flow.token(form)
        assert status == 400, label
        assert set(doc) == {"error", "error_description"}, label
        assert doc["error"] == error, (label, doc)
        assert doc["error_description"].startswith(description), (label, doc)
    status, doc = await flow.token({"grant_type": "client_credentials", "assertion": flow.assertion()})
    assert status == 400 and doc["error"] == "unsupported_grant_type"
    async with flow.session.get(flow.creds["token_uri"]) as response:
        assert response.status == 405 and (await response.json())["error"] == "invalid_request"
    assert flow.fake.tokens.issued_count == 0


async def test_jwt_time_is_judged_on_the_fake_clock(flow: Flow) -> None:
    real_now = int(time.time())
    flow.fake.clock.advance(2 * 86400)
    status, doc = await flow.grant(flow.assertion(iat=real_now, exp=real_now + 3600))
    assert status == 400 and doc["error"] == "invalid_grant"
    status, doc = await flow.grant(flow.assertion())  # iat/exp taken from the fake clock
    assert status == 200


async def test_self_signed_jwt_is_accepted_as_bearer(flow: Flow) -> None:
    flow.fake.tokens.strict = True
    self_signed = flow.assertion(aud="https://cloudkms.googleapis.com/")
    assert (await flow.api(self_signed))[0] == 200
    status, doc = await flow.api(sign(_other_key(), flow.claims(aud="https://cloudkms.googleapis.com/")))
    assert status == 401 and doc["error"]["status"] == "UNAUTHENTICATED"
    flow.fake.clock.advance(3601)
    assert (await flow.api(self_signed))[0] == 401


async def test_revoked_tokens_force_a_fresh_grant(flow: Flow) -> None:
    status, doc = await flow.grant(flow.assertion())
    token = doc["access_token"]
    async with flow.session.delete(flow.running.url + "/_fake/tokens") as response:
        assert (await response.json())["revoked"] == 1
    assert (await flow.api(token))[0] == 401
    status, doc = await flow.grant(flow.assertion())
    assert status == 200 and (await flow.api(doc["access_token"]))[0] == 200
