"""/api/v4/managed_keys: list (filters, pagination), create, get, remove from vault, status in keystores."""

from __future__ import annotations

from aiohttp import web

from keyorch.api.auth import Permission
from keyorch.api.key_query import key_filter
from keyorch.api.models import KeyCreate, KeyFilterQuery, KeyUpdate
from keyorch.api.responses import ManagedKey as KeyDocument
from keyorch.api.responses import ManagedKeyList, StatusInKeystores
from keyorch.api.routing import PREFIX, Call, Route, linked_page
from keyorch.domain.models import ManagedKey
from keyorch.domain.states import KeyState
from keyorch.domain.uko import uko_state
from keyorch.service import keys as ops
from keyorch.service.directory import load_directory
from keyorch.views import key_json, statuses_json


async def key_response(call: Call, key: ManagedKey) -> web.Response:
    location = f"{PREFIX}/managed_keys/{key.id}" if call.route.success == 201 else None
    doc = key_json(key, await load_directory(call.context()))
    return call.answer(doc, tag=(key.id, key.version), location=location)


async def list_keys(call: Call) -> web.StreamResponse:
    return await key_page(call, call.parsed(KeyFilterQuery, call.query))


async def key_page(call: Call, q: KeyFilterQuery, keystore_ids: tuple[str, ...] = ()) -> web.StreamResponse:
    """One page of keys and the total the filters select, both counted and sliced in SQL (``keystore_ids``:
    only keys in those keystores), as UKO's ManagedKeyList with links to the other pages."""
    flt = key_filter(q, await call.listed_vaults(q), keystore_ids)
    ctx = call.context()
    total, found = await ops.page_keys(ctx, flt)
    directory = await load_directory(ctx)
    shown = [key_json(k, directory) for k in found]
    return call.answer(linked_page(shown, total, q.limit, q.offset, "managed_keys", call.request))


async def create_key(call: Call) -> web.StreamResponse:
    body = call.parsed(KeyCreate, call.body)
    template = await call.template(body.template_ref, body.vault.id if body.vault is not None else None)
    vault = await call.vault(template.vault_id)
    if ops.initial_state(template, body.state) is KeyState.ACTIVE:
        # a key that starts active is deployed at once: separation of duties wants the deployer's permission too
        ctx = await call.authorize(
            (Permission.CREATE, Permission.DEPLOY),
            vault.name,
            "key.create",
            "key",
            body.label,
            what="creating a key that starts active",
        )
    else:
        ctx = await call.authorize(Permission.CREATE, vault.name, "key.create", "key", body.label)
    tags = [(t.name, t.value) for t in body.tags or ()]
    key = await ops.create_key(
        ctx,
        template=template.id,
        label=body.label,
        state=body.state,
        description=body.description,
        tags=tags,
        deactivate_on_rotation=body.deactivate_on_rotation,
        rotation_policy=body.rotation_policy,
        min_interval=call.deps.rotation_min_interval,
    )
    call.changed(key.id)
    return await key_response(call, key)


async def get_key(call: Call) -> web.StreamResponse:
    return await key_response(call, await call.key(call.path_id))


async def status_in_keystores(call: Call) -> web.StreamResponse:
    key = await call.key(call.path_id)
    statuses = statuses_json(key, await load_directory(call.context()))
    doc = {"id": key.id, "state": uko_state(key.state), "out_of_sync": key.out_of_sync}
    return call.answer({**doc, "status_in_keystores": statuses})


async def update_key(call: Call) -> web.StreamResponse:
    """UKO's UpdateManagedKey: label, description, tags, planned dates, deactivate_on_rotation; If-Match required."""
    """UKO's UpdateManagedKey: label, description, tags, planned dates; keyorch's rotation policy; If-Match required."""
    body = call.parsed(KeyUpdate, call.body)
    key = await call.key(call.path_id)
    vault = await call.vault(key.vault_id)
    ctx = await call.authorize(Permission.CREATE, vault.name, "key.update", "key", key.id)
    version = await call.expected_version(ctx, "key.update", "key", key.id, key.version)
    given = body.model_fields_set
    after = await ops.update_key(
        ctx,
        key.id,
        version,
        label=body.label,
        description=body.description,
        tags=[(t.name, t.value) for t in body.tags] if body.tags is not None else None,
        activation_date=body.activation_date if "activation_date" in given else ops.KEEP,
        expiration_date=body.expiration_date if "expiration_date" in given else ops.KEEP,
        deactivate_on_rotation=body.deactivate_on_rotation,
        rotation_policy=body.rotation_policy if "rotation_policy" in given else ops.KEEP,
        min_interval=call.deps.rotation_min_interval,
    )
    call.changed(key.id)
    return await key_response(call, after)


async def remove_key(call: Call) -> web.StreamResponse:
    key = await call.key(call.path_id)
    vault = await call.vault(key.vault_id)
    ctx = await call.authorize(Permission.ADMINISTER, vault.name, "key.remove", "key", key.id)
    version = await call.expected_version(ctx, "key.remove", "key", key.id, key.version)
    await ops.remove_key(ctx, key.id, version)
    call.changed(key.id)
    return web.Response(status=204)


ROUTES = [
    Route(
        "GET",
        "/managed_keys",
        list_keys,
        "list_managed_keys",
        "List managed keys in the vaults the caller can read (filters; limit/offset with total_count)",
        "managed_keys",
        Permission.READ,
        query=KeyFilterQuery,
        response=ManagedKeyList,
        refusals=(403, 404),
    ),
    Route(
        "POST",
        "/managed_keys",
        create_key,
        "create_managed_key",
        "Create a managed key from a template",
        "managed_keys",
        Permission.CREATE,
        body=KeyCreate,
        success=201,
        response=KeyDocument,
        refusals=(404, 409),
    ),
    Route(
        "GET",
        "/managed_keys/{id}",
        get_key,
        "get_managed_key",
        "Get a managed key by id or label",
        "managed_keys",
        Permission.READ,
        response=KeyDocument,
        refusals=(404,),
    ),
    Route(
        "PATCH",
        "/managed_keys/{id}",
        update_key,
        "update_managed_key",
        "Change a key's label, description, tags or planned dates",
        "managed_keys",
        Permission.CREATE,
        body=KeyUpdate,
        if_match=True,
        response=KeyDocument,
        refusals=(404, 409),
    ),
    Route(
        "DELETE",
        "/managed_keys/{id}",
        remove_key,
        "remove_managed_key",
        "Remove a destroyed key from its vault",
        "managed_keys",
        Permission.ADMINISTER,
        success=204,
        if_match=True,
        refusals=(404, 409),
    ),
    Route(
        "GET",
        "/managed_keys/{id}/status_in_keystores",
        status_in_keystores,
        "get_status_in_keystores",
        "The key's status and sync flag in each keystore, as last observed",
        "managed_keys",
        Permission.READ,
        response=StatusInKeystores,
        refusals=(404,),
    ),
]
