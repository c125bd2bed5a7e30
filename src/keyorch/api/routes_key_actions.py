"""State actions on a managed key: activate, deactivate, destroy, dual authorization, sync.

Each resolves the key's vault for the role check, needs If-Match with the key's current ETag,
and calls the one service implementation; the daemon is told at once (``on_change``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from keyorch.api.auth import Permission
from keyorch.api.models import ActivateQuery, DestroyQuery, DryRunQuery, Query
from keyorch.api.responses import KeyRealignment, KeyVersions, SyncResult
from keyorch.api.responses import ManagedKey as KeyDocument
from keyorch.api.routes_keys import key_response
from keyorch.api.routing import Call, Route
from keyorch.domain.models import ManagedKey
from keyorch.domain.states import KeyState
from keyorch.service import key_template, rotation
from keyorch.service import keys as ops
from keyorch.service.context import ServiceContext
from keyorch.service.directory import load_directory
from keyorch.views import realignment_json, statuses_json, versions_json

Action = Callable[[ServiceContext, str, int], Awaitable[ManagedKey]]


async def _act(call: Call, permission: Permission, action: str, run: Callable[[ManagedKey], Action]) -> web.Response:
    key = await call.key(call.path_id)
    vault = await call.vault(key.vault_id)
    audit_action = f"key.{action}"
    ctx = await call.authorize(permission, vault.name, audit_action, "key", key.id)
    version = await call.expected_version(ctx, audit_action, "key", key.id, key.version)
    after = await run(key)(ctx, key.id, version)
    call.changed(key.id)
    return await key_response(call, after)


async def activate(call: Call) -> web.StreamResponse:
    """From pre_active: activate; from deactivated: reactivate (the table refuses any other state).

    ``transition=activate`` or ``reactivate`` (keyorch's addition, for `keyorch key activate|reactivate`)
    asks for that transition only, so the other one is refused as the table says.
    """
    transition = call.parsed(ActivateQuery, call.query).transition

    def pick(key: ManagedKey) -> Action:
        if transition == "activate":
            return ops.activate_key
        if transition == "reactivate" or key.state is KeyState.DEACTIVATED:
            return ops.reactivate_key
        return ops.activate_key

    return await _act(call, Permission.DEPLOY, "activate", pick)


async def deactivate(call: Call) -> web.StreamResponse:
    return await _act(call, Permission.DEPLOY, "deactivate", lambda _key: ops.deactivate_key)


async def compromise(call: Call) -> web.StreamResponse:
    return await _act(call, Permission.DEPLOY, "compromise", lambda _key: ops.compromise_key)


async def destroy(call: Call) -> web.StreamResponse:
    force = call.parsed(DestroyQuery, call.query).force

    async def run(ctx: ServiceContext, ref: str, version: int) -> ManagedKey:
        return await ops.destroy_key(ctx, ref, force=force, expected_version=version)

    return await _act(call, Permission.ADMINISTER, "destroy", lambda _key: run)


async def authorize_deletion(call: Call) -> web.StreamResponse:
    return await _act(call, Permission.DEPLOY, "authorize_deletion", lambda _key: ops.authorize_deletion)


async def withdraw_authorization(call: Call) -> web.StreamResponse:
    return await _act(call, Permission.DEPLOY, "withdraw_authorization", lambda _key: ops.withdraw_authorization)


async def rotate(call: Call) -> web.StreamResponse:
    interval = call.deps.rotation_min_interval  # setting keys.rotation_min_interval_seconds

    async def run(ctx: ServiceContext, ref: str, version: int) -> ManagedKey:
        return await rotation.rotate_key(ctx, ref, version, min_interval=interval)

    return await _act(call, Permission.DEPLOY, "rotate", lambda _key: run)


async def versions(call: Call) -> web.StreamResponse:
    visible = await call.key(call.path_id)  # a key of a vault the caller cannot read is not found
    found = await rotation.key_versions(call.context(), visible.id)
    key = found.key
    doc = versions_json(key, found.versions, await load_directory(call.context()), found.ids)
    return call.answer(doc, tag=(key.id, key.version))


async def sync(call: Call) -> web.StreamResponse:
    """Push-reconcile the key now. If-Match is optional here (nothing of the key's desired state changes)."""
    key = await call.key(call.path_id)
    vault = await call.vault(key.vault_id)
    ctx = await call.authorize(Permission.DEPLOY, vault.name, "key.sync", "key", key.id)
    if call.request.headers.get("If-Match"):
        await call.expected_version(ctx, "key.sync", "key", key.id, key.version)
    result = await call.run_hook(call.deps.sync_key, f"syncing key {key.id}", key.id)
    after = await ops.get_key(call.context(), key.id)
    statuses = statuses_json(after, await load_directory(call.context()))
    return call.answer({"id": key.id, **result, "status_in_keystores": statuses}, tag=(after.id, after.version))


async def update_from_template(call: Call) -> web.StreamResponse:
    """UKO's UpdateManagedKeyFromTemplate: realign the key with what its template gives keys now (If-Match
    required); ``dry_run=true`` answers the key as it would be, with each change, and changes nothing."""
    dry_run = call.parsed(DryRunQuery, call.query).dry_run
    key = await call.key(call.path_id)
    vault = await call.vault(key.vault_id)
    action = "key.update_from_template"
    ctx = await call.authorize(Permission.DEPLOY, vault.name, action, "key", key.id)
    if dry_run:
        if call.request.headers.get("If-Match"):
            await call.expected_version(ctx, action, "key", key.id, key.version)
        before, plan = await key_template.preview_update_from_template(ctx, key.id)
        shown, tag = plan.key, (before.id, before.version)
    else:
        version = await call.expected_version(ctx, action, "key", key.id, key.version)
        shown, plan = await key_template.update_from_template(ctx, key.id, version)
        tag = (shown.id, shown.version)
        call.changed(key.id)
    doc = realignment_json(plan, shown, await load_directory(call.context()), dry_run)
    return call.answer(doc, tag=tag)


_QUERIES: dict[str, type[Query]] = {"destroy": DestroyQuery, "activate": ActivateQuery}


def _on_key(
    action: str, handler: Callable[[Call], Awaitable[web.StreamResponse]], summary: str, permission: Permission
) -> Route:
    """A state action on a key: POST, If-Match required; the operation id names the key for plain verbs."""
    operation_id = action if "_" in action else f"{action}_managed_key"
    return Route(
        "POST",
        f"/managed_keys/{{id}}/{action}",
        handler,
        operation_id,
        summary,
        "managed_keys",
        permission,
        query=_QUERIES.get(action),
        if_match=True,
        refusals=(404, 409),
        response=KeyDocument,
    )


ROUTES = [
    _on_key("activate", activate, "Activate a pre-active key, or reactivate a deactivated one", Permission.DEPLOY),
    _on_key("deactivate", deactivate, "Deactivate an active key (unlinked in every keystore)", Permission.DEPLOY),
    _on_key(
        "compromise",
        compromise,
        "Declare a key compromised (keyorch's route for UKO's compromised states): an active or deactivated key is "
        "disabled in every keystore and never used again; a destroyed key's record becomes destroyed_compromised",
        Permission.DEPLOY,
    ),
    _on_key(
        "destroy",
        destroy,
        "Destroy a pre-active, deactivated or compromised key (dual authorization where the vault needs it)",
        Permission.ADMINISTER,
    ),
    _on_key(
        "authorize_deletion",
        authorize_deletion,
        "First of two authorizations to destroy a key (valid 7 days)",
        Permission.DEPLOY,
    ),
    _on_key("withdraw_authorization", withdraw_authorization, "Withdraw a deletion authorization", Permission.DEPLOY),
    _on_key(
        "rotate",
        rotate,
        "Rotate an active key: its next version becomes current and every keystore makes a new primary version "
        "(at most once an hour)",
        Permission.DEPLOY,
    ),
    Route(
        "GET",
        "/managed_keys/{id}/versions",
        versions,
        "list_managed_key_versions",
        "A key's versions, and which one each keystore serves (with the provider's id of that version)",
        "managed_keys",
        Permission.READ,
        refusals=(404,),
        response=KeyVersions,
    ),
    Route(
        "POST",
        "/managed_keys/{id}/sync_status_in_keystores",
        sync,
        "sync_managed_key",
        "Reconcile the key in every keystore now (push); returns each target's outcome and the pass's counts",
        "managed_keys",
        Permission.DEPLOY,
        refusals=(404, 412, 503),
        response=SyncResult,
    ),
    Route(
        "POST",
        "/managed_keys/{id}/update_from_template",
        update_from_template,
        "update_managed_key_from_template",
        "Realign a key with its template (new keystores it distributes to, planned dates); If-Match required "
        "unless dry_run=true, which shows the changes and makes none",
        "managed_keys",
        Permission.DEPLOY,
        query=DryRunQuery,
        refusals=(404, 409, 412, 428),
        response=KeyRealignment,
    ),
]
