"""Fake IBM Key Protect (API v2) for one service instance, plus IBM Cloud IAM's API-key exchange.

Wire protocol: ``/api/v2/...`` with the ``metadata``/``resources`` envelope, ``Authorization: Bearer``
and ``bluemix-instance`` on every call, integer key states (0 pre-active, 1 active, 2 suspended,
3 deactivated, 5 destroyed) and the error form
``{"metadata": {"collectionType": "application/vnd.ibm.kms.error+json", ...}, "resources": [{"errorMsg",
"reasons": [{"code", "message", "status", "moreInfo"}]}]}``. State rules live in :mod:`ibm_state`.

Operations (names used in the request log and fault rules):
``Token``, ``CreateKey``, ``CreateKeyWithPolicyOverrides``, ``ListKeys``, ``CountKeys`` (HEAD),
``GetKey``, ``GetKeyMetadata``, ``ListKeyVersions``, ``DeleteKey``, ``PurgeKey``, ``RestoreKey``,
``EnableKey``, ``DisableKey``, ``SetKeyForDeletion``, ``UnsetKeyForDeletion``, ``RotateKey``,
``WrapKey``, ``UnwrapKey``, ``RewrapKey``, ``SyncAssociatedResources``, ``CreateKeyAlias``,
``DeleteKeyAlias``, ``GetKeyPolicies``, ``PutKeyPolicies``, ``GetInstancePolicies``,
``PutInstancePolicies``, ``ListRegistrations``, ``ListAllRegistrations``; anything else ``unknown``.

Rotation: ``RotateKey`` (root keys only, once per hour: ``KEY_ROTATION_NOT_PERMITTED`` 409) adds a
version; ``ListKeyVersions`` pages newest first with ``limit``/``offset``; a key's ``rotation`` policy
(``interval_month`` 1-12) rotates it when the fake clock passes ``interval_month`` months of 30 days
after its last rotation, creation or policy change (the latest), one version per interval, dated when
it fell due. ``/_fake/state`` shows each key's versions (oldest first, which is primary), its rotation
policy and next automatic rotation.

Admin routes (besides the shared ``/_fake/`` ones): ``POST /_fake/ibm/apikeys`` ``{"user"}`` creates an
API key owned by another user; ``POST /_fake/ibm/registrations`` ``{"keyId", "resourceCrn",
"preventKeyDeletion", "description"}`` seeds a registration (real ones are created by IBM services
only); ``DELETE /_fake/ibm/registrations?keyId=&resourceCrn=`` removes them; ``PUT
/_fake/ibm/keys/{id}/state`` ``{"state": 0|1|2|3}`` forces a state (0 and a forced 3 cannot be reached
through the API).

Choices where the sources are silent (marked unverified in docs/providers.md §4.7):
a missing or unknown ``bluemix-instance`` gets the catalogue's 401 ``UNAUTHORIZED_ERR`` form; request
content types are not enforced (any JSON is read); responses are ``application/json``; ``GET /keys``
lists states 0,1,2,3 unless ``state`` says otherwise; DELETE and purge default to ``return=minimal``
(204), create to ``return=representation``; restore is allowed for root and standard keys; a forced
DELETE drops the key's registrations; alias errors use ``KEY_ALIAS_NOT_UNIQUE_ERR`` (409) and
``KEY_ALIAS_QUOTA_ERR`` (400); turning a key's dual-auth policy off is ``INVALID_FIELD_ERR``. The 30 s
wait before enable/restore counts from the key's last state-changing action.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from keyorch.fakes.base import ProviderFake
from keyorch.fakes.clock import FakeClock
from keyorch.fakes.faults import ProviderFaults
from keyorch.fakes.ibm_admin import add_admin_routes
from keyorch.fakes.ibm_iam import IamUsers
from keyorch.fakes.ibm_routes import add_api_routes
from keyorch.fakes.ibm_state import KeyProtectState
from keyorch.fakes.ibm_wire import IbmError, error_body
from keyorch.fakes.seed import SeedKey
from keyorch.fakes.seed_apply import seed_ibm

ApiHandler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]

_KEY_SUBPATHS = {
    ("GET", "metadata"): "GetKeyMetadata",
    ("GET", "versions"): "ListKeyVersions",
    ("DELETE", "purge"): "PurgeKey",
    ("POST", "restore"): "RestoreKey",
    ("GET", "registrations"): "ListRegistrations",
    ("GET", "policies"): "GetKeyPolicies",
    ("PUT", "policies"): "PutKeyPolicies",
}
_ACTIONS = {
    "enable": "EnableKey",
    "disable": "DisableKey",
    "setKeyForDeletion": "SetKeyForDeletion",
    "unsetKeyForDeletion": "UnsetKeyForDeletion",
    "rotate": "RotateKey",
    "wrap": "WrapKey",
    "unwrap": "UnwrapKey",
    "rewrap": "RewrapKey",
    "sync": "SyncAssociatedResources",
    "restore": "RestoreKey",
}


class KeyProtectFake(ProviderFake):
    """One Key Protect instance; its id is in ``credentials()["instance_id"]``."""

    kind = "ibm_key_protect"

    def __init__(
        self,
        clock: FakeClock | None = None,
        faults: ProviderFaults | None = None,
        *,
        instance_id: str | None = None,
        apikey: str | None = None,
        user: str = "IBMid-fake-user-1",
        region: str = "us-south",
    ) -> None:
        super().__init__(clock, faults)
        self.instance_id = instance_id or str(uuid.uuid4())
        self.account_id = secrets.token_hex(16)
        self.user = user
        self.state = KeyProtectState(self.clock, self.instance_id, self.account_id, region)
        self.iam = IamUsers(self.clock, self.tokens, self.account_id)
        self.apikey = self.iam.add_apikey(user, apikey)

    # -- ProviderFake ----------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/identity/token", self.iam.token_endpoint)
        app.router.add_post("/oidc/token", self.iam.token_endpoint)
        add_api_routes(app, self)
        add_admin_routes(app, self)
        app.on_response_prepare.append(_echo_correlation_id)

    def operation_for(self, request: web.Request) -> str:
        try:
            return _operation(request.method, request.path, request.query.get("action"))
        except Exception:
            return "unknown"

    def error_response(self, status: int, code: str, message: str) -> web.Response:
        if code == "BadRequest":
            code = "BAD_BODY_ERR"
        return web.json_response(error_body(status, code, message), status=status)

    def credentials(self, base_url: str) -> dict[str, Any]:
        return {"apikey": self.apikey, "iam_url": base_url + "/identity/token", "instance_id": self.instance_id}

    def state_snapshot(self) -> dict[str, Any]:
        self.state.sweep()
        now = self.clock.now()
        keys = []
        for key in self.state.keys.values():
            doc = key.as_json(now)
            doc["versions"] = [
                {"id": v.id, "creationDate": v.created.isoformat(), "primary": v is key.versions[-1]}
                for v in key.versions
            ]
            doc["rotation_policy"] = dict(key.rotation.data) if key.rotation is not None else None
            next_rotation = self.state.next_rotation(key)
            doc["next_rotation"] = next_rotation.isoformat() if next_rotation is not None else None
            doc["registrations"] = [r.resource_crn for r in self.state.registrations_of(key)]
            keys.append(doc)
        return {
            "instance_id": self.instance_id,
            "users": sorted(set(self.iam.apikeys.values())),
            "instance_policies": {name: p.data for name, p in self.state.instance_policies.items()},
            "keys": keys,
        }

    def reset(self) -> None:
        super().reset()
        self.state.clear()

    def seed(self, keys: Sequence[SeedKey], prefix: str = "keys") -> list[dict[str, Any]]:
        return seed_ibm(self.state, keys, self.user, prefix)

    # -- shared by the routes --------------------------------------------------------------
    def authenticate(self, request: web.Request) -> str:
        """The calling user, or an :class:`IbmError` (401) for a bad token or instance."""
        header = request.headers.get("Authorization")
        if self.tokens.check_header(header) != "ok":
            raise IbmError("UNAUTHORIZED_ERR", "Unauthorized")
        if request.headers.get("bluemix-instance", "").strip().lower() != self.instance_id.lower():
            raise IbmError("UNAUTHORIZED_ERR", "Unauthorized")
        return self.iam.user_for(header)


def _operation(method: str, path: str, action: str | None) -> str:
    parts = [p for p in path.split("/") if p]
    if method == "POST" and parts in (["identity", "token"], ["oidc", "token"]):
        return "Token"
    if parts[:2] != ["api", "v2"]:
        return "unknown"
    rest = parts[2:]
    if rest == ["keys"]:
        return {"POST": "CreateKey", "GET": "ListKeys", "HEAD": "CountKeys"}.get(method, "unknown")
    if rest == ["keys_with_policy_overrides"] and method == "POST":
        return "CreateKeyWithPolicyOverrides"
    if rest == ["keys", "registrations"] and method == "GET":
        return "ListAllRegistrations"
    if rest == ["instance", "policies"]:
        return {"GET": "GetInstancePolicies", "PUT": "PutInstancePolicies"}.get(method, "unknown")
    if len(rest) == 2 and rest[0] == "keys":
        if method == "POST":
            return _ACTIONS.get(action or "", "unknown")
        return {"GET": "GetKey", "DELETE": "DeleteKey"}.get(method, "unknown")
    if len(rest) == 3 and rest[0] == "keys":
        return _KEY_SUBPATHS.get((method, rest[2]), "unknown")
    if len(rest) == 4 and rest[0] == "keys" and rest[2] == "actions" and method == "POST":
        return _ACTIONS.get(rest[3], "unknown") if rest[3] != "restore" else "unknown"
    if len(rest) == 4 and rest[0] == "keys" and rest[2] == "aliases":
        return {"POST": "CreateKeyAlias", "DELETE": "DeleteKeyAlias"}.get(method, "unknown")
    return "unknown"


async def _echo_correlation_id(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith("/api/"):
        incoming = request.headers.get("correlation-id", "")
        response.headers["Correlation-Id"] = incoming[:64] if incoming.isprintable() and incoming else str(uuid.uuid4())
