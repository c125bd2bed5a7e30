"""/api/v4/vaults: list, create, get, update, delete (vault administrators; roles are per vault name)."""

from __future__ import annotations

from aiohttp import web

from keyorch.api.auth import Permission
from keyorch.api.models import Page, VaultCreate, VaultUpdate
from keyorch.api.responses import Vault, VaultList
from keyorch.api.routing import PREFIX, Call, Route, linked_page
from keyorch.domain.models import Vault as VaultRecord
from keyorch.domain.models import VaultCounts
from keyorch.service import vaults as ops
from keyorch.views import vault_json


async def _json(call: Call, vault: VaultRecord) -> dict[str, object]:
    counts = await ops.vault_counts(call.context(), [vault.id])
    return vault_json(vault, counts.get(vault.id, VaultCounts()))


async def list_vaults(call: Call) -> web.StreamResponse:
    q = call.parsed(Page, call.query)
    readable = list((await call.readable_vaults()).values())
    shown = readable[q.offset : q.offset + q.limit]
    counts = await ops.vault_counts(call.context(), [v.id for v in shown])
    found = [vault_json(v, counts[v.id]) for v in shown]
    return call.answer(linked_page(found, len(readable), q.limit, q.offset, "vaults", call.request))


async def create_vault(call: Call) -> web.StreamResponse:
    body = call.parsed(VaultCreate, call.body)
    ctx = await call.authorize(Permission.ADMINISTER, body.name, "vault.create", "vault", body.name)
    vault = await ops.create_vault(ctx, body.name, body.dual_auth, body.description, body.recovery_key_label)
    return call.answer(
        vault_json(vault, VaultCounts()), tag=(vault.id, vault.version), location=f"{PREFIX}/vaults/{vault.id}"
    )


async def get_vault(call: Call) -> web.StreamResponse:
    vault = await call.vault(call.path_id)
    return call.answer(await _json(call, vault), tag=(vault.id, vault.version))


async def update_vault(call: Call) -> web.StreamResponse:
    body = call.parsed(VaultUpdate, call.body)
    vault = await call.vault(call.path_id)
    ctx = await call.authorize(Permission.ADMINISTER, vault.name, "vault.update", "vault", vault.id)
    if body.name is not None and body.name != vault.name:
        # renaming moves the vault under another name's roles: the caller must administer that one too
        await call.authorize(Permission.ADMINISTER, body.name, "vault.update", "vault", vault.id)
    version = await call.expected_version(ctx, "vault.update", "vault", vault.id, vault.version)
    after = await ops.update_vault(
        ctx,
        vault.id,
        version,
        name=body.name,
        description=body.description,
        recovery_key_label=body.recovery_key_label,
    )
    return call.answer(await _json(call, after), tag=(after.id, after.version))


async def delete_vault(call: Call) -> web.StreamResponse:
    vault = await call.vault(call.path_id)
    ctx = await call.authorize(Permission.ADMINISTER, vault.name, "vault.delete", "vault", vault.id)
    version = await call.expected_version(ctx, "vault.delete", "vault", vault.id, vault.version)
    await ops.delete_vault(ctx, vault.id, version)
    return web.Response(status=204)


ROUTES = [
    Route(
        "GET",
        "/vaults",
        list_vaults,
        "list_vaults",
        "List the vaults the caller can read",
        "vaults",
        Permission.READ,
        query=Page,
        response=VaultList,
    ),
    Route(
        "POST",
        "/vaults",
        create_vault,
        "create_vault",
        "Create a vault",
        "vaults",
        Permission.ADMINISTER,
        body=VaultCreate,
        success=201,
        response=Vault,
        refusals=(409,),
    ),
    Route(
        "GET",
        "/vaults/{id}",
        get_vault,
        "get_vault",
        "Get a vault by id or name",
        "vaults",
        Permission.READ,
        response=Vault,
        refusals=(404,),
    ),
    Route(
        "PATCH",
        "/vaults/{id}",
        update_vault,
        "update_vault",
        "Change a vault's name, description or recovery key label",
        "vaults",
        Permission.ADMINISTER,
        body=VaultUpdate,
        if_match=True,
        response=Vault,
        refusals=(404, 409),
    ),
    Route(
        "DELETE",
        "/vaults/{id}",
        delete_vault,
        "delete_vault",
        "Delete an empty vault",
        "vaults",
        Permission.ADMINISTER,
        success=204,
        if_match=True,
        refusals=(404, 409),
    ),
]
