"""/api/v4/vaults: list, create, get, delete (vault administrators; roles are per vault name)."""

from __future__ import annotations

from aiohttp import web

from keyorch.api.auth import Permission
from keyorch.api.models import Page, VaultCreate
from keyorch.api.responses import Vault, VaultList
from keyorch.api.routing import PREFIX, Call, Route, page
from keyorch.service import vaults as ops
from keyorch.views import vault_json


async def list_vaults(call: Call) -> web.StreamResponse:
    q = call.parsed(Page, call.query)
    found = [vault_json(v) for v in (await call.readable_vaults()).values()]
    return call.answer(page(found, q.limit, q.offset, "vaults"))


async def create_vault(call: Call) -> web.StreamResponse:
    body = call.parsed(VaultCreate, call.body)
    ctx = await call.authorize(Permission.ADMINISTER, body.name, "vault.create", "vault", body.name)
    vault = await ops.create_vault(ctx, body.name, body.dual_auth)
    return call.answer(vault_json(vault), tag=(vault.id, vault.version), location=f"{PREFIX}/vaults/{vault.id}")


async def get_vault(call: Call) -> web.StreamResponse:
    vault = await call.vault(call.path_id)
    return call.answer(vault_json(vault), tag=(vault.id, vault.version))


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
