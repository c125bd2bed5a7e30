"""Fake Azure Key Vault (keys) service, speaking the data-plane REST protocol of
docs/providers.md §2, plus the Entra ID token endpoint.

Routes (every vault route needs ``?api-version=`` and ``Authorization: Bearer``) and the operation
names used in the request log and in fault rules:

- ``Token``             ``POST /{tenant}/oauth2/v2.0/token`` (form; client credentials)
- ``CreateKey``         ``POST /keys/{name}/create`` (an existing live name gets a new version)
- ``RotateKey``         ``POST /keys/{name}/rotate`` (a new version like the latest; the rotation
                        policy's ``expiryTime`` sets its ``exp``)
- ``GetKeyRotationPolicy`` / ``UpdateKeyRotationPolicy``
                        ``GET`` / ``PUT /keys/{name}/rotationpolicy`` (:mod:`keyorch.fakes.azure_rotation`;
                        the fake's clock drives the policy's automatic rotations)
- ``GetKey``            ``GET /keys/{name}``, ``/keys/{name}/``, ``/keys/{name}/{version}``
- ``ListKeys``          ``GET /keys?maxresults=1..25`` (``nextLink`` with ``$skiptoken``)
- ``ListKeyVersions``   ``GET /keys/{name}/versions`` (200 with an empty list for an unknown name)
- ``UpdateKey``         ``PATCH /keys/{name}/{version}``; ``/keys/{name}`` or ``/keys/{name}/`` = latest
- ``DeleteKey``         ``DELETE /keys/{name}`` (soft delete; DeletedKeyBundle)
- ``GetDeletedKey``     ``GET /deletedkeys/{name}``
- ``ListDeletedKeys``   ``GET /deletedkeys``
- ``RecoverDeletedKey`` ``POST /deletedkeys/{name}/recover``
- ``PurgeDeletedKey``   ``DELETE /deletedkeys/{name}`` (204; 403 under purge protection)
- ``Encrypt`` / ``Decrypt`` / ``WrapKey`` / ``UnwrapKey``
                        ``POST /keys/{name}/{version}/encrypt|decrypt|wrapkey|unwrapkey`` (empty version = latest)

Errors use ``{"error": {"code", "message", "innererror": {"code"}}}``. A missing bearer token gets
401 with ``WWW-Authenticate: Bearer authorization="{base}/{tenant}", resource="https://vault.azure.net"``.
Deviations, all on points docs/providers.md §2.7 marks unverified: a missing or unknown ``api-version``
is 400 ``BadParameter``; 401 bodies use code ``Unauthorized``; nbf/exp refuse encrypt/wrapKey
(protection) with 403 ``Forbidden`` but allow decrypt/unwrapKey (processing).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, unquote

from aiohttp import hdrs, web

from keyorch.fakes.azure_crypto import OPERATION_SEGMENTS, KeySpec, b64url, bad_parameter, key_operation, unb64url
from keyorch.fakes.azure_rotation import parse_policy
from keyorch.fakes.azure_state import Changes, KeyVault, KeyVersion, VaultKey, azure_error
from keyorch.fakes.azure_token import VAULT_RESOURCE, EntraApp, token_response
from keyorch.fakes.base import FakeError, ProviderFake, read_json_object
from keyorch.fakes.clock import FakeClock
from keyorch.fakes.faults import ProviderFaults
from keyorch.fakes.seed import SeedKey
from keyorch.fakes.seed_apply import seed_azure

T = TypeVar("T")

API_VERSIONS = ("7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01", "2026-04-01")
LATEST_API_VERSION = API_VERSIONS[-1]
NAME_PATTERN = re.compile(r"[0-9a-zA-Z-]{1,127}")
MAX_RESULTS = 25
SERVICE_VERSION = "1.9.2573.1"
CRYPTO_OPERATIONS = {"encrypt": "Encrypt", "decrypt": "Decrypt", "wrapKey": "WrapKey", "unwrapKey": "UnwrapKey"}
#: base codes that Key Vault spells differently
CODE_ALIASES = {"BadRequest": "BadParameter"}


@dataclass(frozen=True)
class Route:
    operation: str
    name: str = ""
    version: str = ""
    crypto: str = ""


def routes_for_path(raw_path: str) -> dict[str, Route]:
    """Method -> route for a raw (still percent-encoded) path; empty when the path is unknown."""
    segs = [unquote(s) for s in raw_path.split("/")[1:]]
    if len(segs) == 2 and segs[1] == "":
        segs = segs[:1]  # "/keys/" lists like "/keys"
    n = len(segs)
    if n == 4 and segs[1:] == ["oauth2", "v2.0", "token"]:
        return {"POST": Route("Token", segs[0])}
    if not segs or segs[0] not in ("keys", "deletedkeys"):
        return {}
    if segs[0] == "deletedkeys":
        if n == 1:
            return {"GET": Route("ListDeletedKeys")}
        if n == 2:
            return {"GET": Route("GetDeletedKey", segs[1]), "DELETE": Route("PurgeDeletedKey", segs[1])}
        return {"POST": Route("RecoverDeletedKey", segs[1])} if n == 3 and segs[2] == "recover" else {}
    if n == 1:
        return {"GET": Route("ListKeys")}
    name = segs[1]
    if n == 2:
        return {"GET": Route("GetKey", name), "PATCH": Route("UpdateKey", name), "DELETE": Route("DeleteKey", name)}
    if n == 3:
        fixed = {
            "create": ("POST", "CreateKey"),
            "rotate": ("POST", "RotateKey"),
            "versions": ("GET", "ListKeyVersions"),
        }
        if segs[2] in fixed:
            method, operation = fixed[segs[2]]
            return {method: Route(operation, name)}
        if segs[2] == "rotationpolicy":
            return {"GET": Route("GetKeyRotationPolicy", name), "PUT": Route("UpdateKeyRotationPolicy", name)}
        return {"GET": Route("GetKey", name, segs[2]), "PATCH": Route("UpdateKey", name, segs[2])}
    if n == 4 and segs[3] in OPERATION_SEGMENTS:
        crypto = OPERATION_SEGMENTS[segs[3]]
        return {"POST": Route(CRYPTO_OPERATIONS[crypto], name, segs[2], crypto)}
    return {}


def _valid_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise bad_parameter(f"The request URI contains an invalid name: {name[:200]}")
    return name


async def _read_body(request: web.Request) -> dict[str, Any]:
    try:
        return await read_json_object(request)
    except RecursionError as exc:  # absurdly deep nesting
        raise bad_parameter("The request body is nested too deeply.") from exc


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


class AzureKeyVaultFake(ProviderFake):
    """One Azure key vault (soft delete always on, as since February 2025) and its Entra tenant."""

    kind = "azure_key_vault"

    def __init__(
        self,
        clock: FakeClock | None = None,
        faults: ProviderFaults | None = None,
        *,
        retention_days: int = 90,
        purge_protection: bool = False,
        settle_seconds: float = 0.0,
        purge_block_seconds: float = 0.0,
        managed_hsm: bool = False,
        strict_tokens: bool = False,
        region: str = "westeurope",
    ) -> None:
        """``retention_days`` (7-90) is the vault's soft-delete retention; ``purge_protection`` forbids
        caller purges. ``settle_seconds`` makes delete/recover/purge finish that long after they are
        answered (the key is then in neither collection and repeated calls get 409
        ObjectIsBeingDeleted); ``purge_block_seconds`` keeps a purged name unusable for that long.
        ``managed_hsm`` allows ``oct`` keys."""
        super().__init__(clock, faults)
        if not 7 <= retention_days <= 90:
            raise ValueError(f"retention_days must be within 7..90, got {retention_days}")
        self.vault = KeyVault(
            self.clock,
            retention_days=retention_days,
            purge_protection=purge_protection,
            settle_seconds=settle_seconds,
            purge_block_seconds=purge_block_seconds,
        )
        self.managed_hsm = managed_hsm
        self.region = region
        self.tokens.strict = strict_tokens
        self.app_registration = EntraApp(str(uuid.uuid4()), str(uuid.uuid4()), secrets.token_urlsafe(30))
        self._handlers: dict[str, Callable[[web.Request, Route], Awaitable[web.Response]]] = {
            "CreateKey": self._create,
            "RotateKey": self._rotate,
            "GetKeyRotationPolicy": self._get_rotation_policy,
            "UpdateKeyRotationPolicy": self._update_rotation_policy,
            "GetKey": self._get,
            "ListKeys": self._list_keys,
            "ListKeyVersions": self._list_versions,
            "UpdateKey": self._update,
            "DeleteKey": self._delete,
            "GetDeletedKey": self._get_deleted,
            "ListDeletedKeys": self._list_deleted,
            "RecoverDeletedKey": self._recover,
            "PurgeDeletedKey": self._purge,
            **{operation: self._crypto for operation in CRYPTO_OPERATIONS.values()},
        }

    # -- ProviderFake ------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        for path in ("/keys", r"/keys/{tail:[\s\S]*}", "/deletedkeys", r"/deletedkeys/{tail:[\s\S]*}"):
            app.router.add_route(hdrs.METH_ANY, path, self._dispatch)
        app.router.add_route(hdrs.METH_ANY, "/{tenant}/oauth2/v2.0/token", self._dispatch)
        app.on_response_prepare.append(self._add_service_headers)

    def operation_for(self, request: web.Request) -> str:
        try:
            route = routes_for_path(request.rel_url.raw_path).get(request.method)
        except Exception:
            return "unknown"
        return route.operation if route is not None else "unknown"

    def error_response(self, status: int, code: str, message: str) -> web.Response:
        code, _, inner = code.partition(":")
        error: dict[str, Any] = {"code": CODE_ALIASES.get(code, code), "message": message}
        if inner:
            error["innererror"] = {"code": inner}
        return web.json_response({"error": error}, status=status)

    def credentials(self, base_url: str) -> dict[str, Any]:
        app = self.app_registration
        return {
            "tenant_id": app.tenant_id,
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "authority_host": base_url,
        }

    def state_snapshot(self) -> dict[str, Any]:
        return self.vault.snapshot()

    def reset(self) -> None:
        super().reset()
        self.vault.clear()

    def seed(self, keys: Sequence[SeedKey], prefix: str = "keys") -> list[dict[str, Any]]:
        return seed_azure(self.vault, keys, managed_hsm=self.managed_hsm, prefix=prefix)

    # -- plumbing ----------------------------------------------------------------------------

    async def _add_service_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        if request.path.startswith("/_fake/"):
            return
        response.headers["x-ms-request-id"] = str(uuid.uuid4())
        response.headers["x-ms-keyvault-service-version"] = SERVICE_VERSION
        response.headers["x-ms-keyvault-region"] = self.region
        client_request_id = request.headers.get("x-ms-client-request-id")
        if client_request_id and len(client_request_id) <= 200 and client_request_id.isprintable():
            response.headers["x-ms-client-request-id"] = client_request_id

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        routes = routes_for_path(request.rel_url.raw_path)
        if not routes:
            raise FakeError(404, "NotFound", f"No operation matches {request.method} {request.path[:200]}.")
        route = routes.get(request.method)
        if route is None:
            raise FakeError(
                405, "MethodNotAllowed", f"The requested resource does not support http method '{request.method}'."
            )
        if route.operation == "Token":
            return await token_response(request, self.app_registration, self.tokens, self.clock)
        self._authenticate(request)
        self._api_version(request)
        return await self._handlers[route.operation](request, route)

    def _authenticate(self, request: web.Request) -> None:
        verdict = self.tokens.check_header(request.headers.get("Authorization"))
        if verdict == "ok":
            return
        challenge = (
            f'Bearer authorization="{_base_url(request)}/{self.app_registration.tenant_id}", '
            f'resource="{VAULT_RESOURCE}"'
        )
        message = {
            "missing": "AKV10000: Request is missing a Bearer or PoP token.",
            "malformed": "The Authorization header is not a well-formed Bearer token.",
            "expired": "The access token has expired.",
            "revoked": "The access token is no longer valid.",
        }.get(verdict, "The access token was not issued for this vault.")
        raise FakeError(401, "Unauthorized", message, headers={"WWW-Authenticate": challenge})

    def _api_version(self, request: web.Request) -> str:
        version = request.query.get("api-version")
        if not version:
            raise bad_parameter("The request URI must contain the api-version query parameter.")
        if version not in API_VERSIONS:
            raise bad_parameter(
                f"The specified version ({version[:40]}) is not recognized. Consider using the latest supported "
                f"version ({LATEST_API_VERSION})."
            )
        return version

    def _bundle(self, request: web.Request, key: VaultKey, version: KeyVersion) -> web.Response:
        return web.json_response(self.vault.key_bundle(_base_url(request), key, version))

    def _deleted_bundle(self, request: web.Request, key: VaultKey) -> web.Response:
        base = _base_url(request)
        return web.json_response(self.vault.key_bundle(base, key, key.latest) | self.vault.deleted_fields(base, key))

    def _page(
        self, request: web.Request, items: Sequence[tuple[str, T]], render: Callable[[T], dict[str, Any]]
    ) -> web.Response:
        """One page of ``items`` (``(position, record)`` pairs sorted by position), each record rendered
        by ``render`` only when it is on the page, with an absolute ``nextLink``."""
        raw_max = request.query.get("maxresults", str(MAX_RESULTS))
        if not raw_max.isdigit() or not 1 <= int(raw_max) <= MAX_RESULTS:
            raise bad_parameter(f"maxresults must be an integer between 1 and {MAX_RESULTS}.")
        size = int(raw_max)
        after = ""
        if "$skiptoken" in request.query:
            try:
                after = json.loads(unb64url(request.query["$skiptoken"], "$skiptoken"))["after"]
            except (ValueError, KeyError, TypeError) as exc:
                raise bad_parameter("The $skiptoken is not valid.") from exc
            if not isinstance(after, str):
                raise bad_parameter("The $skiptoken is not valid.")
        start = bisect.bisect_right(items, after, key=lambda item: item[0])
        page = items[start : start + size]
        next_link = None
        if len(items) > start + size:
            token = b64url(json.dumps({"after": page[-1][0]}).encode())
            version = request.query["api-version"]
            next_link = (
                f"{_base_url(request)}{request.path}?api-version={quote(version)}&$skiptoken={token}&maxresults={size}"
            )
        return web.json_response({"value": [render(record) for _, record in page], "nextLink": next_link})

    # -- handlers ----------------------------------------------------------------------------

    async def _create(self, request: web.Request, route: Route) -> web.Response:
        name = _valid_name(route.name)
        doc = await _read_body(request)
        spec = KeySpec.parse(doc, allow_oct=self.managed_hsm)
        changes = Changes.parse(doc)
        self.vault.check_creatable(name)
        material = await asyncio.to_thread(spec.generate)
        key, version = self.vault.create(name, spec, material, changes)
        return self._bundle(request, key, version)

    async def _rotate(self, request: web.Request, route: Route) -> web.Response:
        name = _valid_name(route.name)
        _, latest = self.vault.get(name)
        material = await asyncio.to_thread(latest.spec.generate)
        key, version = self.vault.rotate(name, material)
        return self._bundle(request, key, version)

    async def _get_rotation_policy(self, request: web.Request, route: Route) -> web.Response:
        key, policy = self.vault.rotation_policy(_valid_name(route.name))
        return web.json_response(policy.to_json(f"{_base_url(request)}/keys/{key.name}/rotationpolicy"))

    async def _update_rotation_policy(self, request: web.Request, route: Route) -> web.Response:
        name = _valid_name(route.name)
        self.vault.get(name)  # an unknown key is 404 before its body is judged
        policy = parse_policy(await _read_body(request), self.vault.now())
        key, policy = self.vault.set_rotation_policy(name, policy)
        return web.json_response(policy.to_json(f"{_base_url(request)}/keys/{key.name}/rotationpolicy"))

    async def _get(self, request: web.Request, route: Route) -> web.Response:
        key, version = self.vault.get(_valid_name(route.name), route.version)
        return self._bundle(request, key, version)

    async def _update(self, request: web.Request, route: Route) -> web.Response:
        name = _valid_name(route.name)
        changes = Changes.parse(await _read_body(request))
        key, version = self.vault.update(name, route.version, changes)
        return self._bundle(request, key, version)

    async def _list_keys(self, request: web.Request, route: Route) -> web.Response:
        base = _base_url(request)
        items = [(k.name.lower(), k) for k in self.vault.list_live()]
        return self._page(request, items, lambda k: self.vault.key_item(base, k, k.latest, with_version=False))

    async def _list_versions(self, request: web.Request, route: Route) -> web.Response:
        name = _valid_name(route.name)
        self.vault.settle()
        key = self.vault.live.get(name.lower())
        base = _base_url(request)
        items = [(f"{i:08d}", (key, v)) for i, v in enumerate(key.versions)] if key is not None else []
        return self._page(request, items, lambda kv: self.vault.key_item(base, kv[0], kv[1], with_version=True))

    async def _delete(self, request: web.Request, route: Route) -> web.Response:
        return self._deleted_bundle(request, self.vault.delete(_valid_name(route.name)))

    async def _get_deleted(self, request: web.Request, route: Route) -> web.Response:
        return self._deleted_bundle(request, self.vault.get_deleted(_valid_name(route.name)))

    async def _list_deleted(self, request: web.Request, route: Route) -> web.Response:
        base = _base_url(request)
        items = [(k.name.lower(), k) for k in self.vault.list_deleted()]
        return self._page(
            request,
            items,
            lambda k: self.vault.key_item(base, k, k.latest, with_version=False) | self.vault.deleted_fields(base, k),
        )

    async def _recover(self, request: web.Request, route: Route) -> web.Response:
        key = self.vault.recover(_valid_name(route.name))
        return self._bundle(request, key, key.latest)

    async def _purge(self, request: web.Request, route: Route) -> web.Response:
        self.vault.purge(_valid_name(route.name))
        return web.Response(status=204)

    async def _crypto(self, request: web.Request, route: Route) -> web.Response:
        key, version = self.vault.get(_valid_name(route.name), route.version)
        operation = route.crypto
        if not version.enabled and operation in ("decrypt", "unwrapKey"):
            raise azure_error(
                403, "Forbidden", f"Operation {operation} is not allowed on a disabled key.", "KeyDisabled"
            )
        if operation not in version.key_ops:
            raise azure_error(
                403, "Forbidden", f"Operation {operation} is not permitted on this key.", "KeyOperationForbidden"
            )
        now = self.vault.now()
        if operation in ("encrypt", "wrapKey"):
            if version.nbf is not None and now < version.nbf:
                raise azure_error(403, "Forbidden", f"Operation {operation} is not allowed before the key's nbf time.")
            if version.exp is not None and now >= version.exp:
                raise azure_error(403, "Forbidden", f"Operation {operation} is not allowed on an expired key.")
        doc = await _read_body(request)
        result = key_operation(operation, version.material, doc)
        kid = f"{_base_url(request)}/keys/{key.name}/{version.version}"
        return web.json_response({"kid": kid} | result)
