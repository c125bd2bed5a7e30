"""HTTP routes of the IBM Key Protect fake (``/api/v2/...``) and its ``/_fake/ibm/...`` admin routes."""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from keyorch.fakes.ibm_crypto import unwrap_key, wrap_key
from keyorch.fakes.ibm_state import (
    ACTIVE,
    DEACTIVATED,
    DESTROYED,
    PRE_ACTIVE,
    SUSPENDED,
    IbmKey,
    Policy,
    Registration,
    check_rotation,
)
from keyorch.fakes.ibm_wire import (
    ALIAS_TYPE,
    KEY_TYPE,
    POLICY_TYPE,
    REGISTRATION_TYPE,
    VERSION_TYPE,
    IbmError,
    envelope,
    error_body,
    iso,
    parse_body,
    parse_envelope,
    query_bool,
    query_int,
)

if TYPE_CHECKING:
    from keyorch.fakes.ibm import KeyProtectFake

ApiHandler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ALL_STATES = frozenset({PRE_ACTIVE, ACTIVE, SUSPENDED, DEACTIVATED, DESTROYED})
DEFAULT_LIST_STATES = frozenset({PRE_ACTIVE, ACTIVE, SUSPENDED, DEACTIVATED})
INSTANCE_POLICIES = frozenset({"dualAuthDelete", "rotation", "allowedNetwork", "allowedIP", "keyCreateImportAccess",
                               "metrics"})  # fmt: skip
KEY_RING_RE = re.compile(r"^[a-zA-Z0-9-]{2,100}$")
SORT_FIELDS = {
    "id": lambda k, now: k.id,
    "state": lambda k, now: k.effective_state(now),
    "extractable": lambda k, now: k.extractable,
    "imported": lambda k, now: k.imported,
    "creationDate": lambda k, now: k.created,
    "lastUpdateDate": lambda k, now: k.last_update or k.created,
}
QUERY_CONTEXT = "Request could not be processed"


def _invalid(name: str, what: str) -> IbmError:
    return IbmError(
        "INVALID_FIELD_ERR", QUERY_CONTEXT, detail=f"The query parameter `{name}` must be: {what}", target=name
    )


def _prefer_minimal(request: web.Request, default_minimal: bool) -> bool:
    prefer = request.headers.get("prefer", "").replace(" ", "").lower()
    if "return=minimal" in prefer:
        return True
    if "return=representation" in prefer:
        return False
    return default_minimal


def _key_doc(fake: KeyProtectFake, key: IbmKey, *, payload: bool = False) -> dict[str, Any]:
    return envelope(KEY_TYPE, [key.as_json(fake.clock.now(), payload=payload)])


def _page(request: web.Request, items: list[Any]) -> tuple[list[Any], int]:
    limit = query_int(request, "limit", 200, 1, 5000)
    offset = query_int(request, "offset", 0, 0, 10**9)
    return items[offset : offset + limit], len(items)


def _states(raw: str, name: str) -> frozenset[int]:
    try:
        states = frozenset(int(s) for s in raw.split(","))
    except ValueError as exc:
        raise _invalid(name, "a comma-separated list of 0, 1, 2, 3, 5") from exc
    if not states or not states <= ALL_STATES:
        raise _invalid(name, "a comma-separated list of 0, 1, 2, 3, 5")
    return states


def _list_filters(request: web.Request) -> tuple[frozenset[int], bool | None]:
    states = _states(request.query["state"], "state") if "state" in request.query else None
    extractable = query_bool(request, "extractable")
    raw_filter = request.query.get("filter")
    if raw_filter is not None:
        if states is not None or extractable is not None:
            raise _invalid("filter", "not combined with the `state` or `extractable` parameters")
        for term in raw_filter.split():
            name, _, value = term.partition("=")
            if name == "state":
                states = _states(value, "filter")
            elif name == "extractable" and value.lower() in ("true", "false"):
                extractable = value.lower() == "true"
            else:
                raise _invalid("filter", "terms such as state=1,2 or extractable=true")
    return states or DEFAULT_LIST_STATES, extractable


def _search(keys: list[IbmKey], query: str | None) -> list[IbmKey]:
    if query is None:
        return keys
    if len(query) > 100:
        raise _invalid("search", "at most 100 characters")
    exact = query.startswith("exact:")
    needle = query.removeprefix("exact:").lower()

    def hit(value: str) -> bool:
        return value.lower() == needle if exact else needle in value.lower()

    return [k for k in keys if hit(k.name) or hit(k.id) or any(hit(a) for a in k.aliases)]


def _sort(keys: list[IbmKey], raw: str | None, fake: KeyProtectFake) -> list[IbmKey]:
    if raw is None:
        return keys
    descending = raw.startswith("-")
    field = raw.removeprefix("-")
    if field not in SORT_FIELDS:
        raise _invalid("sort", "one of " + ", ".join(SORT_FIELDS))
    now = fake.clock.now()
    return sorted(keys, key=lambda k: SORT_FIELDS[field](k, now), reverse=descending)


def _key_policies(key: IbmKey, only: str | None) -> list[dict[str, Any]]:
    out = []
    for name, policy in (("dualAuthDelete", key.dual_auth), ("rotation", key.rotation)):
        if policy is None or (only and only != name):
            continue
        out.append(
            {
                "type": POLICY_TYPE,
                "crn": key.crn.replace(":key:", ":policy:") + f"-{name}",
                "createdBy": policy.created_by,
                "creationDate": iso(policy.created),
                "updatedBy": policy.updated_by,
                "lastUpdateDate": iso(policy.updated),
                name: dict(policy.data),
            }
        )
    return out


def add_api_routes(app: web.Application, fake: KeyProtectFake) -> None:
    state = fake.state

    def api(handler: ApiHandler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request, fake.authenticate(request))
            except IbmError as exc:
                doc = error_body(exc.status, exc.code, exc.message, exc.detail, exc.target)
                return web.json_response(doc, status=exc.status)

        return wrapped

    def key_of(request: web.Request, context: str) -> IbmKey:
        return state.find(request.match_info["id"], context)

    async def create(request: web.Request, user: str, overrides: bool) -> web.Response:
        context = "Key could not be created"
        key_ring = request.headers.get("x-kms-key-ring", "default")
        if not KEY_RING_RE.match(key_ring):
            raise IbmError("INVALID_FIELD_ERR", context, detail="x-kms-key-ring is not a valid key ring id")
        doc = parse_body(await request.read(), context, required=True)
        assert doc is not None
        resources = parse_envelope(doc, context)
        if doc["metadata"].get("collectionType") != KEY_TYPE:
            raise IbmError("BAD_BODY_ERR", context, detail=f"collectionType must be {KEY_TYPE}")
        key = state.create_key(resources[0], user, key_ring, overrides=overrides)
        if _prefer_minimal(request, default_minimal=False):
            return web.json_response(envelope(KEY_TYPE, [{"id": key.id}]), status=201)
        return web.json_response(_key_doc(fake, key, payload=True), status=201)

    async def create_key(request: web.Request, user: str) -> web.Response:
        return await create(request, user, overrides=False)

    async def create_key_overrides(request: web.Request, user: str) -> web.Response:
        return await create(request, user, overrides=True)

    def listed(request: web.Request) -> list[IbmKey]:
        states, extractable = _list_filters(request)
        state.sweep()
        now = fake.clock.now()
        keys = [
            k
            for k in state.keys.values()
            if k.effective_state(now) in states and (extractable is None or k.extractable == extractable)
        ]
        return _sort(_search(keys, request.query.get("search")), request.query.get("sort"), fake)

    async def list_keys(request: web.Request, user: str) -> web.Response:
        page, _ = _page(request, listed(request))
        now = fake.clock.now()
        return web.json_response(envelope(KEY_TYPE, [k.as_json(now) for k in page]))

    async def count_keys(request: web.Request, user: str) -> web.Response:
        return web.Response(status=200, headers={"Key-Total": str(len(listed(request)))})

    async def get_key(request: web.Request, user: str) -> web.Response:
        return web.json_response(_key_doc(fake, key_of(request, "Key could not be retrieved"), payload=True))

    async def get_metadata(request: web.Request, user: str) -> web.Response:
        return web.json_response(_key_doc(fake, key_of(request, "Key metadata could not be retrieved")))

    async def list_versions(request: web.Request, user: str) -> web.Response:
        key = key_of(request, "Key versions could not be retrieved")
        page, total = _page(request, [v.as_json() for v in reversed(key.versions)])
        extra = {"totalCount": total} if query_bool(request, "totalCount") else {}
        return web.json_response(envelope(VERSION_TYPE, page, **extra))

    async def delete_key(request: web.Request, user: str) -> web.Response:
        key = key_of(request, "Key could not be deleted")
        state.delete(key, user, force=bool(query_bool(request, "force")))
        if _prefer_minimal(request, default_minimal=True):
            return web.Response(status=204)
        return web.json_response(_key_doc(fake, key))

    async def purge_key(request: web.Request, user: str) -> web.Response:
        key = key_of(request, "Key could not be purged")
        doc = _key_doc(fake, key)
        state.purge(key)
        if _prefer_minimal(request, default_minimal=True):
            return web.Response(status=204)
        return web.json_response(doc)

    async def restore_key(request: web.Request, user: str) -> web.Response:
        key = key_of(request, "Key could not be restored")
        parse_body(await request.read(), "Key could not be restored", required=False)
        state.restore(key)
        return web.json_response(_key_doc(fake, key), status=201)

    async def run_action(request: web.Request, user: str, action: str) -> web.StreamResponse:
        if action == "restore":
            return await restore_key(request, user)
        key = key_of(request, "Action could not be performed on key")
        body = parse_body(await request.read(), "Action could not be performed on key", required=False)
        if action in ("wrap", "unwrap", "rewrap"):
            if action == "wrap":
                return web.json_response(wrap_key(state, key, body))
            return web.json_response(unwrap_key(state, key, body, rewrap=action == "rewrap"))
        if action == "rotate":
            state.rotate(key, body)
        else:
            state.simple_action(key, action, user)
        return web.Response(status=204)

    async def action_path(request: web.Request, user: str) -> web.StreamResponse:
        action = request.match_info["action"]
        if action not in ("enable", "disable", "setKeyForDeletion", "unsetKeyForDeletion", "rotate", "wrap",
                          "unwrap", "rewrap", "sync"):  # fmt: skip
            raise web.HTTPNotFound()
        return await run_action(request, user, action)

    async def action_query(request: web.Request, user: str) -> web.StreamResponse:
        action = request.query.get("action", "")
        if action not in ("enable", "disable", "setKeyForDeletion", "unsetKeyForDeletion", "rotate", "wrap",
                          "unwrap", "rewrap", "restore"):  # fmt: skip
            raise _invalid("action", "one of disable, enable, restore, rewrap, rotate, setKeyForDeletion, "
                                     "unsetKeyForDeletion, unwrap, wrap")  # fmt: skip
        return await run_action(request, user, action)

    def registrations_page(request: web.Request, regs: list[Registration]) -> web.Response:
        prevent = query_bool(request, "preventKeyDeletion")
        crn_query = request.query.get("urlEncodedResourceCRNQuery")
        regs = [
            r
            for r in regs
            if (prevent is None or r.prevent_key_deletion == prevent)
            and (crn_query is None or fnmatch.fnmatchcase(r.resource_crn, crn_query[:500]))
        ]
        page, total = _page(request, regs)
        extra = {"totalCount": total} if query_bool(request, "totalCount") else {}
        docs = [r.as_json(state.keys[r.key_id].name) for r in page]
        return web.json_response(envelope(REGISTRATION_TYPE, docs, **extra))

    async def key_registrations(request: web.Request, user: str) -> web.Response:
        key = key_of(request, "Registrations could not be retrieved")
        return registrations_page(request, state.registrations_of(key))

    async def all_registrations(request: web.Request, user: str) -> web.Response:
        state.sweep()
        return registrations_page(request, list(state.registrations))

    async def get_key_policies(request: web.Request, user: str) -> web.Response:
        key = key_of(request, "Key policies could not be retrieved")
        only = request.query.get("policy")
        if only is not None and only not in ("dualAuthDelete", "rotation"):
            raise _invalid("policy", "dualAuthDelete or rotation")
        return web.json_response(envelope(POLICY_TYPE, _key_policies(key, only)))

    async def put_key_policies(request: web.Request, user: str) -> web.Response:
        context = "Key policy could not be updated"
        key = key_of(request, context)
        only = request.query.get("policy")
        if only is not None and only not in ("dualAuthDelete", "rotation"):
            raise _invalid("policy", "dualAuthDelete or rotation")
        doc = parse_body(await request.read(), context, required=True)
        assert doc is not None
        resources = parse_envelope(doc, context, single=False)
        if key.deleted_at is not None:
            raise IbmError("KEY_ACTION_INVALID_STATE_ERR", f"Key is not in a valid state: {context}")
        updates: dict[str, dict[str, Any]] = {}
        for resource in resources:
            names = set(resource) - {"type"}
            if not names or not names <= {"dualAuthDelete", "rotation"}:
                raise IbmError("BAD_BODY_ERR", context, detail="a policy resource holds dualAuthDelete or rotation")
            if only is not None and names != {only}:
                raise IbmError("BODY_QUERY_PARAM_MISMATCH_ERR", context)
            for name in names:
                if name in updates:
                    raise IbmError("NUM_COLLECTION_RESOURCE_ERR", context)
                updates[name] = _policy_value(name, resource[name], context)
        if "dualAuthDelete" in updates and key.dual_auth_enabled() and not updates["dualAuthDelete"]["enabled"]:
            raise IbmError("INVALID_FIELD_ERR", context, detail="a key's dual authorization policy cannot be disabled")
        now = fake.clock.now()
        for name, value in updates.items():
            current = key.dual_auth if name == "dualAuthDelete" else key.rotation
            policy = Policy(value, current.created_by if current else user, current.created if current else now,
                            user, now)  # fmt: skip
            if name == "dualAuthDelete":
                key.dual_auth = policy
            else:
                key.rotation = policy
                state.schedule_rotation(key)
        key.last_update = now
        return web.json_response(envelope(POLICY_TYPE, _key_policies(key, only)))

    async def get_instance_policies(request: web.Request, user: str) -> web.Response:
        only = request.query.get("policy")
        if only is not None and only not in INSTANCE_POLICIES:
            raise _invalid("policy", "one of " + ", ".join(sorted(INSTANCE_POLICIES)))
        docs = [
            {
                "policy_type": name,
                "policy_data": dict(p.data),
                "createdBy": p.created_by,
                "creationDate": iso(p.created),
                "updatedBy": p.updated_by,
                "lastUpdated": iso(p.updated),
            }
            for name, p in sorted(state.instance_policies.items())
            if only is None or name == only
        ]
        return web.json_response(envelope(POLICY_TYPE, docs))

    async def put_instance_policies(request: web.Request, user: str) -> web.Response:
        context = "Instance policy could not be created"
        only = request.query.get("policy")
        if only is not None and only not in INSTANCE_POLICIES:
            raise _invalid("policy", "one of " + ", ".join(sorted(INSTANCE_POLICIES)))
        doc = parse_body(await request.read(), context, required=True)
        assert doc is not None
        resources = parse_envelope(doc, context, single=False)
        updates: dict[str, dict[str, Any]] = {}
        for resource in resources:
            extra = sorted(set(resource) - {"policy_type", "policy_data"})
            if extra:
                raise IbmError("BAD_BODY_ERR", context, detail=f'json: unknown field "{extra[0][:64]}"')
            name, data = resource.get("policy_type"), resource.get("policy_data")
            if only is not None and name != only:
                raise IbmError("BODY_QUERY_PARAM_MISMATCH_ERR", context)
            if name not in INSTANCE_POLICIES:
                raise IbmError("INVALID_FIELD_ERR", context, detail="unknown policy_type", target="policy_type")
            if name in updates:
                raise IbmError("NUM_COLLECTION_RESOURCE_ERR", context)
            if not isinstance(data, dict) or not isinstance(data.get("enabled"), bool) or len(json.dumps(data)) > 4096:
                raise IbmError("INVALID_FIELD_ERR", context, detail="policy_data.enabled must be a boolean")
            updates[str(name)] = data
        now = fake.clock.now()
        for name, data in updates.items():
            current = state.instance_policies.get(name)
            state.instance_policies[name] = Policy(
                data, current.created_by if current else user, current.created if current else now, user, now
            )
        return web.Response(status=204)

    async def create_alias(request: web.Request, user: str) -> web.Response:
        key = key_of(request, "Key alias could not be created")
        alias = request.match_info["alias"]
        state.add_alias(key, alias)
        doc = {"keyId": key.id, "alias": alias, "createdBy": user, "creationDate": iso(fake.clock.now())}
        return web.json_response(envelope(ALIAS_TYPE, [doc]), status=201)

    async def delete_alias(request: web.Request, user: str) -> web.Response:
        key = key_of(request, "Key alias could not be deleted")
        state.remove_alias(key, request.match_info["alias"])
        return web.Response(status=204)

    r = app.router
    r.add_post("/api/v2/keys", api(create_key))
    r.add_get("/api/v2/keys", api(list_keys), allow_head=False)
    r.add_head("/api/v2/keys", api(count_keys))
    r.add_post("/api/v2/keys_with_policy_overrides", api(create_key_overrides))
    r.add_get("/api/v2/keys/registrations", api(all_registrations), allow_head=False)
    r.add_get("/api/v2/keys/{id}", api(get_key), allow_head=False)
    r.add_post("/api/v2/keys/{id}", api(action_query))
    r.add_delete("/api/v2/keys/{id}", api(delete_key))
    r.add_get("/api/v2/keys/{id}/metadata", api(get_metadata), allow_head=False)
    r.add_get("/api/v2/keys/{id}/versions", api(list_versions), allow_head=False)
    r.add_post("/api/v2/keys/{id}/actions/{action}", api(action_path))
    r.add_post("/api/v2/keys/{id}/restore", api(restore_key))
    r.add_delete("/api/v2/keys/{id}/purge", api(purge_key))
    r.add_get("/api/v2/keys/{id}/registrations", api(key_registrations), allow_head=False)
    r.add_get("/api/v2/keys/{id}/policies", api(get_key_policies), allow_head=False)
    r.add_put("/api/v2/keys/{id}/policies", api(put_key_policies))
    r.add_post("/api/v2/keys/{id}/aliases/{alias}", api(create_alias))
    r.add_delete("/api/v2/keys/{id}/aliases/{alias}", api(delete_alias))
    r.add_get("/api/v2/instance/policies", api(get_instance_policies), allow_head=False)
    r.add_put("/api/v2/instance/policies", api(put_instance_policies))


def _policy_value(name: str, value: Any, context: str) -> dict[str, Any]:
    if name == "rotation":
        return check_rotation(value, context)
    if not isinstance(value, dict) or set(value) != {"enabled"} or not isinstance(value["enabled"], bool):
        raise IbmError("INVALID_FIELD_ERR", context, detail='dualAuthDelete must be {"enabled": <boolean>}')
    return {"enabled": value["enabled"]}
