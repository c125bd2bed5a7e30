"""Managed keys: the list (filters, search, sort, pages), a key's details, its Actions with their confirmations,
and Sync key. Every change goes through the API's own operation (:class:`keyorch.web.calls.ConsoleCall`): the
same service function, role check, version check and audit record."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from keyorch.api.auth import Permission
from keyorch.domain import rules
from keyorch.domain.errors import InvalidInput, KeyorchError, NotFound
from keyorch.domain.models import ManagedKey, TargetStatus, Vault
from keyorch.domain.states import ALLOWED_ACTIONS, KeyAction, KeyState, is_allowed
from keyorch.domain.uko import key_state
from keyorch.reconcile.planner import DESTRUCTION_WINDOW_DAYS
from keyorch.service import associations, audit, rotation
from keyorch.service import keys as ops
from keyorch.service.context import ServiceContext
from keyorch.service.directory import Directory, load_directory
from keyorch.store.key_selection import SORTABLE
from keyorch.web.calls import ConsoleCall, permission_of
from keyorch.web.console import PREFIX, User, console_of, link, render, signed_in

PER_PAGE = 20
SORTS = ("label", "-label", "state", "-state", "created_at", "-created_at", "updated_at", "-updated_at")
assert all(s.removeprefix("-") in SORTABLE for s in SORTS)

Run = Callable[[ServiceContext, str, int, User], Awaitable[ManagedKey | None]]


@dataclass(frozen=True)
class KeyActionPage:
    """One entry of a key's Actions menu: the state table's action, the API operation it is, what the menu and
    the confirmation say, and the service call it makes."""

    name: str
    action: KeyAction | None  # None: not a state-table action (dual authorization)
    operation_id: str
    audit_action: str
    menu: str
    confirm: str
    effect: str
    run: Run


async def _rotate(ctx: ServiceContext, ref: str, version: int, user: User) -> ManagedKey:
    """As the API rotates: at most once in the setting keys.rotation_min_interval_seconds."""
    return await rotation.rotate_key(ctx, ref, version, min_interval=user.rotation_min_interval)


async def _destroy(ctx: ServiceContext, ref: str, version: int, user: User) -> ManagedKey:
    return await ops.destroy_key(ctx, ref, force=user.field("force") == "on", expected_version=version)


async def _remove(ctx: ServiceContext, ref: str, version: int, _user: User) -> None:
    await ops.remove_key(ctx, ref, version)


def _plain(call: Callable[[ServiceContext, str, int], Awaitable[ManagedKey]]) -> Run:
    async def run(ctx: ServiceContext, ref: str, version: int, _user: User) -> ManagedKey:
        return await call(ctx, ref, version)

    return run


ACTIONS: dict[str, KeyActionPage] = {
    a.name: a
    for a in (
        KeyActionPage(
            "activate",
            KeyAction.ACTIVATE,
            "activate_managed_key",
            "key.activate",
            "Active",
            "Activate key",
            "The key becomes active: keyorch creates it in every keystore its template distributes to, where "
            "applications can use it.",
            _plain(ops.activate_key),
        ),
        KeyActionPage(
            "reactivate",
            KeyAction.REACTIVATE,
            "activate_managed_key",
            "key.activate",
            "Active",
            "Reactivate key",
            "The key becomes active again: keyorch enables it in every keystore, so its associated resources can "
            "use it again.",
            _plain(ops.reactivate_key),
        ),
        KeyActionPage(
            "rotate",
            KeyAction.ROTATE,
            "rotate_managed_key",
            "key.rotate",
            "Rotate",
            "Rotate key",
            "The key gets a new version: every keystore makes a new primary version; older versions still "
            "decrypt what they encrypted.",
            _rotate,
        ),
        KeyActionPage(
            "deactivate",
            KeyAction.DEACTIVATE,
            "deactivate_managed_key",
            "key.deactivate",
            "Deactivated",
            "Deactivate key",
            "The key is detached from all keystores (disabled in each): it is not accessible to its associated "
            "resources and their data. You can reactivate it later.",
            _plain(ops.deactivate_key),
        ),
        KeyActionPage(
            "compromise",
            KeyAction.COMPROMISE,
            "compromise_managed_key",
            "key.compromise",
            "Compromised",
            "Declare key compromised",
            "The key's material is declared exposed: it is disabled in every keystore and never used again (it "
            "cannot be reactivated).",
            _plain(ops.compromise_key),
        ),
        KeyActionPage(
            "destroy",
            KeyAction.DESTROY,
            "destroy_managed_key",
            "key.destroy",
            "Destroyed",
            "Destroy key",
            "The key is destroyed: each keystore schedules its destruction and keeps it pending destruction for its "
            "own window. keyorch cannot restore it; only the provider can, while destruction is pending.",
            _destroy,
        ),
        KeyActionPage(
            "remove",
            KeyAction.REMOVE,
            "remove_managed_key",
            "key.remove",
            "Remove from vault",
            "Remove key",
            "The key's remaining record and metadata are removed from the vault permanently. Nothing is done in "
            "the keystores (they no longer hold the key).",
            _remove,
        ),
        KeyActionPage(
            "authorize_deletion",
            None,
            "authorize_deletion",
            "key.authorize_deletion",
            "Authorize deletion",
            "Authorize deletion",
            "You give the first of two authorizations to destroy this key: within 7 days another user, a vault "
            "administrator, can destroy it. You can withdraw it until then.",
            _plain(ops.authorize_deletion),
        ),
        KeyActionPage(
            "withdraw_authorization",
            None,
            "withdraw_authorization",
            "key.withdraw_authorization",
            "Withdraw deletion authorization",
            "Withdraw authorization",
            "The authorization to destroy this key is withdrawn: destroying it needs a new one.",
            _plain(ops.withdraw_authorization),
        ),
    )
}


def offered(key: ManagedKey, vault: Vault, user: User, now: Any) -> list[KeyActionPage]:
    """The actions the state table allows from the key's state that the user's role in the vault may take."""
    found = []
    live_auth = key.deletion_authorization is not None and key.deletion_authorization.expires_at > now
    for page in ACTIONS.values():
        if not user.principal.can(permission_of(page.operation_id), vault.name):
            continue
        if page.action is not None:
            if page.name == "activate" and key.state is not KeyState.PRE_ACTIVE:
                continue
            if is_allowed(page.action, key.state):
                found.append(page)
        elif (
            vault.dual_auth
            and is_allowed(KeyAction.DESTROY, key.state)
            and (page.name == "authorize_deletion") != live_auth
        ):
            found.append(page)
    return found


def _flag(value: str | None) -> bool:
    return value in ("1", "on", "true")


async def keys_list(request: web.Request, user: User) -> web.StreamResponse:
    q = request.query
    call = ConsoleCall(request, console_of(request).deps, user.principal, "list_managed_keys")
    ctx = call.context()
    readable = await call.readable_vaults()
    vault_ids = await call.visible_vaults()
    chosen_vault = q.get("vault") or None
    if chosen_vault is not None:
        vault_ids = frozenset({(await call.vault(chosen_vault)).id})
    state = q.get("state") or ""
    if state not in ("", "all") and state not in KeyState.__members__.values():
        raise InvalidInput(f"state {state!r} is not a key state", target="state")
    sort = q.get("sort") or "-created_at"
    if sort not in SORTS:
        raise InvalidInput(f"sort {sort!r}: choose one of {', '.join(SORTS)}", target="sort")
    try:
        page = max(1, int(q.get("page") or "1"))
    except ValueError:
        raise InvalidInput("page must be a number", target="page") from None
    pending = _flag(q.get("pending_destruction"))
    flt = ops.KeyFilter(
        state=state if state not in ("", "all") else None,
        include_destroyed=state == "all" or pending,
        out_of_sync=_flag(q.get("out_of_sync")),
        pending_destruction=pending,
        unaligned=_flag(q.get("unaligned")),
        label_contains=(q.get("label") or "").strip()[:256] or None,
        vault_ids=vault_ids,
        sort=((sort.removeprefix("-"), sort.startswith("-")),),
        limit=PER_PAGE,
        offset=(page - 1) * PER_PAGE,
    )
    total, found = await ops.page_keys(ctx, flt)
    directory = await load_directory(ctx)
    filters = {
        "vault": chosen_vault or "",
        "state": state,
        "out_of_sync": "1" if flt.out_of_sync else "",
        "pending_destruction": "1" if pending else "",
        "unaligned": "1" if flt.unaligned else "",
        "label": flt.label_contains or "",
        "sort": sort,
    }
    pages = max(1, (total + PER_PAGE - 1) // PER_PAGE)
    return render(
        request,
        "keys.html",
        user=user,
        keys=[_row(k, directory) for k in found],
        total=total,
        page=page,
        pages=pages,
        filters=filters,
        vaults=sorted(readable.values(), key=lambda v: v.name),
        states=list(KeyState),
        sorts=SORTS,
        done=q.get("done"),
    )


def _row(key: ManagedKey, directory: Directory) -> dict[str, Any]:
    live = [t for t in key.targets if t.status is not TargetStatus.REMOVED]
    pending = [t.pending_destruction_until for t in live if t.pending_destruction_until is not None]
    return {
        "key": key,
        "vault": directory.vaults.get(key.vault_id, key.vault_id),
        "template": directory.templates.get(key.template_id or "", ""),
        "keystores": len(live),
        "out_of_sync_in": [
            directory.keystore_name(t.keystore_id) or t.keystore_id for t in live if t.sync_flag == "out_of_sync"
        ],
        "pending_until": max(pending) if pending else None,
    }


async def _key_page_data(call: ConsoleCall, key: ManagedKey) -> dict[str, Any]:
    ctx = call.context()
    directory = await load_directory(ctx)
    vault = await call.vault(key.vault_id)
    versions = (await rotation.key_versions(ctx, key.id)).versions
    history = [r for r in await audit.list_records(ctx, key.id, 200) if r.object_type == "key"]
    history.reverse()  # newest first
    return {
        "key": key,
        "vault": vault,
        "directory": directory,
        "template": directory.templates.get(key.template_id or "", None),
        "targets": [t for t in key.targets if t.keystore_id in directory.keystores],
        "versions": versions,
        "history": [_history_row(r.as_json()) for r in history],
    }


def _history_row(doc: dict[str, Any]) -> dict[str, Any]:
    before, after = doc.get("before") or {}, doc.get("after") or {}
    states = (before.get("state"), after.get("state"))
    return {**doc, "state_from": states[0], "state_to": states[1] if states[1] != states[0] else None}


async def _resources(ctx: ServiceContext, key: ManagedKey) -> tuple[list[associations.Association], str | None]:
    """The resources registered with the key (Key Protect records them), or why they could not be read."""
    try:
        return await associations.key_associations(ctx, key), None
    except KeyorchError as exc:
        return [], exc.message


async def key_details(request: web.Request, user: User) -> web.StreamResponse:
    call = ConsoleCall(request, console_of(request).deps, user.principal, "get_managed_key")
    key = await call.key(request.match_info["id"])
    data = await _key_page_data(call, key)
    resources, resources_error = await _resources(call.context(), key)
    now = call.deps.clock.now()
    return render(
        request,
        "key.html",
        user=user,
        **data,
        actions=offered(key, data["vault"], user, now),
        can_sync=user.principal.can(permission_of("sync_managed_key"), data["vault"].name),
        resources=resources,
        resources_error=resources_error,
        now=now,
        done=request.query.get("done"),
    )


def _action(name: str) -> KeyActionPage:
    found = ACTIONS.get(name)
    if found is None:
        raise NotFound(f"there is no key action {name!r}", target="action")
    return found


async def confirm_action(request: web.Request, user: User) -> web.StreamResponse:
    """The confirmation: what happens in keyorch and in each keystore (the daemon's planner, as `keyorch plan`),
    whether and until when each step can be undone, and the resources the key protects."""
    page = _action(request.match_info["action"])
    console = console_of(request)
    call = ConsoleCall(request, console.deps, user.principal, page.operation_id)
    key = await call.key(request.match_info["id"])
    vault = await call.vault(key.vault_id)
    user.principal.require(call.permission, vault.name, page.audit_action)
    if page.action is not None and page.action not in (KeyAction.REMOVE,) and not is_allowed(page.action, key.state):
        rules.check_action(key, page.action)  # the state table's refusal, in its own words
    plan: dict[str, Any] | None = None
    plan_error: str | None = None
    if page.action is not None and page.action is not KeyAction.REMOVE:
        if console.plan_action is None:
            plan_error = "The per-keystore plan needs the reconciler, which this server does not run."
        else:
            try:
                plan = await console.plan_action(key.id, page.action)
            except KeyorchError as exc:
                plan_error = exc.message
    blockers: list[str] = []
    directory = await load_directory(call.context())
    if page.action is KeyAction.REMOVE:
        if not is_allowed(KeyAction.REMOVE, key.state):
            rules.check_action(key, KeyAction.REMOVE)
        blockers = rules.removal_blockers(key, directory.keystore_names, call.deps.clock.now())
    resources, resources_error = (
        await _resources(call.context(), key)
        if page.action in (KeyAction.DEACTIVATE, KeyAction.DESTROY, KeyAction.COMPROMISE)
        else ([], None)
    )
    return render(
        request,
        "confirm.html",
        user=user,
        key=key,
        vault=vault,
        page=page,
        plan=plan,
        plan_error=plan_error,
        directory=directory,
        blockers=blockers,
        resources=resources,
        resources_error=resources_error,
        windows=DESTRUCTION_WINDOW_DAYS,
    )


async def do_action(request: web.Request, user: User) -> web.StreamResponse:
    page = _action(request.match_info["action"])
    call = ConsoleCall(request, console_of(request).deps, user.principal, page.operation_id)
    key = await call.key(request.match_info["id"])
    vault = await call.vault(key.vault_id)
    ctx = await call.authorize(call.permission, vault.name, page.audit_action, "key", key.id)
    version = await call.form_version(ctx, page.audit_action, "key", key.id, key.version, user.field("version"))
    await page.run(ctx, key.id, version, user)
    call.changed(key.id)
    if page.action is KeyAction.REMOVE:
        raise web.HTTPSeeOther(link("/keys", {"done": "remove"}))
    raise web.HTTPSeeOther(link(f"/keys/{key.id}", {"done": page.name}))


async def sync_key(request: web.Request, user: User) -> web.StreamResponse:
    """UKO's Sync key: reconcile the key now in every keystore, pushing its desired state."""
    call = ConsoleCall(request, console_of(request).deps, user.principal, "sync_managed_key")
    key = await call.key(request.match_info["id"])
    vault = await call.vault(key.vault_id)
    await call.authorize(call.permission, vault.name, "key.sync", "key", key.id)
    await call.run_hook(call.deps.sync_key, f"syncing key {key.id}", key.id)
    raise web.HTTPSeeOther(link(f"/keys/{key.id}", {"done": "sync"}))


ROUTES = [
    web.get("/keys", signed_in(keys_list)),
    web.get("/keys/{id}", signed_in(key_details)),
    web.post("/keys/{id}/sync", signed_in(sync_key)),
    web.get("/keys/{id}/{action}", signed_in(confirm_action)),
    web.post("/keys/{id}/{action}", signed_in(do_action)),
]

__all__ = ["ACTIONS", "ALLOWED_ACTIONS", "PER_PAGE", "PREFIX", "ROUTES", "Permission", "key_state"]
