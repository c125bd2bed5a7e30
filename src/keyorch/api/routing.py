"""The route table's entries, and what every handler gets: the caller, parsed input, role and ETag checks.

One ``Route`` describes an operation for both aiohttp (method, path, handler) and the OpenAPI
document (summary, body and query models, statuses). Handlers receive a ``Call``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode

from aiohttp import web
from pydantic import BaseModel, ValidationError

from keyorch.api.auth import ALL_VAULTS, GRANTED_BY, Authenticator, Permission, Permissions, Principal
from keyorch.api.errors import (
    InvalidJson,
    PreconditionRequired,
    ServiceUnavailable,
    UnsupportedMediaType,
    check_strings,
    error_response,
    parse_json,
    validation_errors,
)
from keyorch.api.limits import read_body
from keyorch.api.models import Query, VaultFilter
from keyorch.audit import Actor
from keyorch.crypto import MasterKey
from keyorch.domain.clock import Clock
from keyorch.domain.errors import InvalidInput, KeyorchError, NotFound, StaleVersion
from keyorch.domain.models import Keystore, KeyTemplate, ManagedKey, Vault
from keyorch.domain.rotation import DEFAULT_MIN_INTERVAL
from keyorch.domain.validation import check_text, shown
from keyorch.service import keys, keystores, templates, vaults
from keyorch.service.context import Change, ServiceContext
from keyorch.service.environment import EnvironmentPolicy
from keyorch.service.keystore_probe import StatusChecks
from keyorch.store.repository import Store, Transaction
from keyorch.views import API_PREFIX

#: UKO's header naming the vault an operation is in
VAULT_HEADER = "UKO-Vault"
PREFIX = API_PREFIX

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class ApiDeps:
    store: Store
    clock: Clock
    master_key: MasterKey | None
    authenticator: Authenticator
    on_change: Callable[[str], None] | None
    sync_key: Callable[[str], Awaitable[dict[str, Any]]] | None
    reconcile_once: Callable[[], Awaitable[dict[str, Any]]] | None = None
    plan: Callable[[Sequence[str]], Awaitable[dict[str, Any]]] | None = None
    #: who may use credentials from keyorch's environment through the API (default: no vault)
    environment: EnvironmentPolicy = EnvironmentPolicy(vaults=frozenset())  # noqa: RUF009 - frozen
    #: live keystore status checks, cached per keystore (GET /keystores/{id}/status)
    keystore_checks: StatusChecks = field(default_factory=StatusChecks)
    #: a key rotates at most once in this long (setting keys.rotation_min_interval_seconds)
    rotation_min_interval: timedelta = DEFAULT_MIN_INTERVAL


DEPS = web.AppKey("keyorch_api_deps", ApiDeps)


def etag(object_id: str, version: int) -> str:
    return f'"{object_id}:{version}"'


def _parse_if_match(header: str) -> list[tuple[str, str]]:
    """(id, version) of each entity tag listed; weak tags (W/) are accepted as their strong form."""
    tags = []
    for raw in header.split(","):
        tag = raw.strip().removeprefix("W/").strip('"')
        ident, _, version = tag.rpartition(":")
        tags.append((ident, version))
    return tags


class Call:
    """One API request, authenticated, with its parsed body and query."""

    def __init__(self, request: web.Request, deps: ApiDeps, principal: Principal | None, route: Route) -> None:
        self.request = request
        self.route = route
        self.deps = deps
        self._principal = principal
        self.body: BaseModel | None = None
        self.query: BaseModel | None = None
        self._visible: tuple[frozenset[str] | None] | None = None

    @property
    def principal(self) -> Principal:
        assert self._principal is not None, "a public route asked for the caller"
        return self._principal

    @property
    def path_id(self) -> str:
        return self.request.match_info["id"]

    def answer(self, doc: Any, *, tag: tuple[str, int] | None = None, location: str | None = None) -> web.Response:
        """The operation's success: its status, and ``doc`` checked against the model the OpenAPI document shows
        for it (``Route.response``), so the document describes exactly what is served."""
        assert self.route.response is not None, f"{self.route.operation_id} answers no content"
        self.route.response.model_validate(doc)
        return respond(doc, status=self.route.success, tag=tag, location=location)

    def parsed(self, kind: type[M], value: BaseModel | None) -> M:
        assert isinstance(value, kind)
        return value

    def context(self, role: str | None = None) -> ServiceContext:
        user = self._principal.user if self._principal is not None else "anonymous"
        return ServiceContext(
            store=self.deps.store,
            actor=Actor(user=user, source="api", role=role),
            clock=self.deps.clock,
            master_key=self.deps.master_key,
            environment=self.deps.environment,
        )

    async def visible_vaults(self) -> frozenset[str] | None:
        """Ids of the vaults the caller may read, narrowed to the one UKO's ``UKO-Vault`` header names (the SDK
        sends it to say which vault an operation is in); None when it may read every vault and sent no header.

        Every lookup is kept to these vaults, so an object in another vault is not found (404), exactly
        like one that does not exist: its existence and its vault's name stay hidden.
        """
        if self._visible is None:
            readable = await self._readable_ids()
            header = self.request.headers.get(VAULT_HEADER)
            if header is not None:
                chosen = check_text(VAULT_HEADER, header.strip())
                readable = frozenset({chosen}) if readable is None or chosen in readable else frozenset()
            self._visible = (readable,)
        return self._visible[0]

    async def _readable_ids(self) -> frozenset[str] | None:
        roles = self.principal.roles
        if ALL_VAULTS in roles and all(r in GRANTED_BY[Permission.READ] for r in roles.values()):
            return None
        found = await vaults.list_vaults(self.context())
        return frozenset(v.id for v in found if self.principal.can(Permission.READ, v.name))

    async def vault(self, ref: str) -> Vault:
        return await vaults.get_vault(self.context(), ref, await self.visible_vaults())

    async def key(self, ref: str) -> ManagedKey:
        return await keys.get_key(self.context(), ref, await self.visible_vaults())

    async def keystore(self, ref: str) -> Keystore:
        return await keystores.get_keystore(self.context(), ref, await self.visible_vaults())

    async def template(self, ref: str, vault: str | None = None) -> KeyTemplate:
        """A template the caller may see, by id or name; with ``vault`` (an id or name), one in that vault."""
        within = await self.visible_vaults()
        if vault is not None:
            chosen = (await self.vault(vault)).id
            within = frozenset({chosen}) if within is None or chosen in within else frozenset()
        return await templates.get_template(self.context(), ref, within)

    async def readable_vaults(self) -> dict[str, Vault]:
        """id → vault of every vault the caller may read."""
        found = await vaults.list_vaults(self.context())
        visible = await self.visible_vaults()
        return {
            v.id: v
            for v in found
            if (visible is None or v.id in visible) and self.principal.can(Permission.READ, v.name)
        }

    async def listed_vaults(self, q: VaultFilter) -> frozenset[str] | None:
        """The ids of the vaults a list shows (None: every vault): those the caller may read, narrowed by
        ``vault`` (an id or name) and ``vault.id`` (ids); a vault named there that the caller cannot read
        is not found (404), as one that does not exist."""
        chosen = await self.visible_vaults()
        if q.vault is not None:
            chosen = frozenset({(await self.vault(q.vault)).id})
        for vault_id in q.vault_ids or ():
            if (await self.vault(vault_id)).id != vault_id:  # vault.id takes ids, not names
                raise NotFound(f"no vault has the id {shown(vault_id)}", target="vault.id")
        if q.vault_ids is not None:
            chosen = frozenset(q.vault_ids) if chosen is None else chosen & frozenset(q.vault_ids)
        return chosen

    async def refuse(
        self, ctx: ServiceContext, action: str, object_type: str, ref: str | None, exc: KeyorchError
    ) -> None:
        """Record a refusal made by the API itself (role, precondition) in the audit trail, then raise it."""

        async def body(_tx: Transaction) -> tuple[None, Change]:
            raise exc

        await ctx.change(action, object_type, ref, body)

    async def authorize(
        self,
        permission: Permission | Permissions,
        vault_name: str,
        action: str,
        object_type: str,
        ref: str | None,
        *,
        what: str | None = None,
    ) -> ServiceContext:
        """A service context acting with the caller's role in the vault; a refusal is audited and raised (403).

        ``what`` describes the operation in the refusal (default: the audit action).
        """
        role = self.principal.role_in(vault_name)
        ctx = self.context(role.value if role is not None else None)
        try:
            self.principal.require(permission, vault_name, what or action)
        except KeyorchError as exc:
            await self.refuse(ctx, action, object_type, ref, exc)
        return ctx

    async def expected_version(
        self, ctx: ServiceContext, action: str, object_type: str, object_id: str, current: int
    ) -> int:
        """The version the caller's If-Match names: 428 without it, 412 if it is not this object's current one."""
        header = self.request.headers.get("If-Match")
        if header is None or not header.strip():
            exc: KeyorchError = PreconditionRequired(
                f"{action} changes an existing {object_type}: send If-Match with its current ETag "
                f"(from GET, now {etag(object_id, current)})",
                target="If-Match",
            )
        elif header.strip() == "*":
            exc = PreconditionRequired(
                f"If-Match: * is not accepted; send the {object_type}'s current ETag ({etag(object_id, current)})",
                target="If-Match",
            )
        else:
            versions = [v for ident, v in _parse_if_match(header) if ident == object_id]
            chosen = str(current) if str(current) in versions else None
            if chosen == str(current):
                return current  # passed on to the service, which checks it again in its transaction
            exc = StaleVersion(
                f"If-Match {header[:120]!r} does not match {object_type} {object_id}, now at ETag "
                f"{etag(object_id, current)}; read it again and retry",
                target="If-Match",
            )
        await self.refuse(ctx, action, object_type, object_id, exc)
        raise AssertionError("unreachable")  # pragma: no cover - refuse() always raises

    async def run_hook(
        self, hook: Callable[..., Awaitable[dict[str, Any]]] | None, what: str, *args: Any
    ) -> dict[str, Any]:
        """Run one of the daemon's reconciler hooks: 503 when this API server runs no reconciler, or when the
        hook fails for a reason that is not one of keyorch's own refusals."""
        if hook is None:
            raise ServiceUnavailable(
                f"{what} needs the reconciler, which this API server does not run; use the command line on the "
                "database or the API of `keyorch serve`",
                target="reconciler",
            )
        try:
            return await hook(*args)
        except KeyorchError:
            raise
        except Exception as exc:
            log.exception("api.%s failed", what)
            raise ServiceUnavailable(f"{what} failed ({type(exc).__name__})", target="reconciler") from None

    def changed(self, key_id: str) -> None:
        """Tell the daemon a key changed (it reconciles at once); a failing hook never fails the request."""
        if self.deps.on_change is None:
            return
        try:
            self.deps.on_change(key_id)
        except Exception:
            log.exception("api.on_change failed for key %s", key_id)


def respond(
    doc: Any, *, status: int = 200, tag: tuple[str, int] | None = None, location: str | None = None
) -> web.Response:
    headers: dict[str, str] = {}
    if tag is not None:
        headers["ETag"] = etag(*tag)
    if location is not None:
        headers["Location"] = location
    return web.json_response(doc, status=status, headers=headers)


def page(items: list[Any], limit: int, offset: int, name: str) -> dict[str, Any]:
    return {name: items[offset : offset + limit], "total_count": len(items), "limit": limit, "offset": offset}


def linked_page(
    shown: list[Any], total: int, limit: int, offset: int, name: str, request: web.Request
) -> dict[str, Any]:
    """One page (``shown``, the items from ``offset`` on) as UKO's lists answer it: with ``first``, ``last``,
    ``previous`` and ``next`` as ``{"href": …}``, the request's path and query with another ``offset``
    (``previous`` and ``next`` left out where there is none)."""

    def link(to: int) -> dict[str, str]:
        query = {**request.rel_url.query, "limit": str(limit), "offset": str(to)}
        return {"href": f"{request.rel_url.path}?{urlencode(query)}"}

    doc: dict[str, Any] = {name: shown, "total_count": total, "limit": limit, "offset": offset}
    doc["first"] = link(0)
    doc["last"] = link(max(0, (total - 1) // limit * limit))
    if offset > 0:
        doc["previous"] = link(max(0, min(offset, total) - limit))
    if offset + limit < total:
        doc["next"] = link(offset + limit)
    return doc


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # below PREFIX, e.g. "/vaults/{id}"
    handler: Callable[[Call], Awaitable[web.StreamResponse]]
    operation_id: str
    summary: str
    tag: str
    permission: Permission | None  # None: public, no token needed
    body: type[BaseModel] | None = None
    query: type[Query] | None = None
    success: int = 200
    if_match: bool = False  # the write needs If-Match with the current ETag
    refusals: tuple[int, ...] = field(default=())  # error statuses the operation documents beyond the common ones
    response: type[BaseModel] | None = None  # the document of a success (None: no content)

    @property
    def full_path(self) -> str:
        return PREFIX + self.path


def _check_json_media_type(request: web.Request, has_body: bool) -> None:
    """A body is JSON only when it says so: ``application/json`` (or ``application/*+json``), UTF-8."""
    given = request.headers.get("Content-Type")
    if given is None and not has_body:
        return
    kind = request.content_type  # lower-cased, parameters stripped
    charset = (request.charset or "utf-8").lower()
    if (kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))) and charset in (
        "utf-8",
        "utf8",
    ):
        return
    got = shown(given) if given else "no Content-Type"
    raise UnsupportedMediaType(
        f"the request body must be JSON sent as Content-Type: application/json (UTF-8); got {got}",
        target="Content-Type",
    )


async def _read_body(request: web.Request, model: type[M]) -> M | web.StreamResponse:
    """The body as ``model``, or the answer already given (the body was too slow, or its client went away)."""
    _check_json_media_type(request, request.body_exists)
    raw = await read_body(request)
    if isinstance(raw, web.StreamResponse):
        return raw
    if not raw.strip():
        raise InvalidJson("this operation needs a JSON object as its request body", target="body")
    doc = parse_json(raw)
    if not isinstance(doc, dict):
        raise InvalidJson("the request body must be a JSON object", target="body")
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise _Invalid(exc, "body") from None


def _read_query(request: web.Request, model: type[Query] | None) -> Query | None:
    """The query parameters as ``model``; one the operation does not take, or one given twice, is refused."""
    allowed = model.parameter_names() if model is not None else []
    for name in request.query:
        if name not in allowed:
            names = f"allowed: {', '.join(allowed)}" if allowed else "this operation takes no query parameter"
            raise InvalidInput(
                f"query parameter {shown(name)} is not known here; {names}", target=name, target_type="parameter"
            )
        if len(request.query.getall(name)) > 1:
            raise InvalidInput(
                f"query parameter {shown(name)} is given more than once; give it once",
                target=name,
                target_type="parameter",
            )
    if model is None:
        return None
    values: Mapping[str, str] = {k: request.query.getone(k) for k in request.query}
    check_strings(dict(values), "query", ())
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise _Invalid(exc, "query") from None


class _Invalid(Exception):
    def __init__(self, exc: ValidationError, where: str) -> None:
        self.exc = exc
        self.where = where


def make_handler(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        deps = request.app[DEPS]
        principal = deps.authenticator.authenticate(request) if route.permission is not None else None
        call = Call(request, deps, principal, route)
        if "id" in request.match_info:
            check_text("id", request.match_info["id"])
        try:
            call.query = _read_query(request, route.query)
            if route.body is not None:
                body = await _read_body(request, route.body)
                if isinstance(body, web.StreamResponse):
                    return body
                call.body = body
        except _Invalid as bad:
            return error_response(400, validation_errors(bad.exc, bad.where))
        return await route.handler(call)

    handle.__name__ = route.operation_id
    return handle
