"""keyorch's own additions for `keyorch --server`: a full reconcile pass, and a plan, run by the daemon.

Both span every vault, so a pass needs the permission to deploy in every vault (a role for ``"*"``);
a plan reads: of the keys named, in each one's vault; of every key, in every vault.
"""

from __future__ import annotations

from aiohttp import web

from keyorch.api.auth import ALL_VAULTS, Permission
from keyorch.api.models import PlanRequest
from keyorch.api.responses import Plan, ReconcileResult
from keyorch.api.routing import Call, Route

EVERY_VAULT = f'every vault (a role for "{ALL_VAULTS}")'


async def reconcile_once(call: Call) -> web.StreamResponse:
    await call.authorize(
        Permission.DEPLOY, ALL_VAULTS, "reconcile", "keystore", None, what=f"a reconcile pass over {EVERY_VAULT}"
    )
    return call.answer(await call.run_hook(call.deps.reconcile_once, "a reconcile pass"))


async def plan(call: Call) -> web.StreamResponse:
    body = call.parsed(PlanRequest, call.body)
    if body.keys:
        for ref in body.keys:
            await call.key(ref)  # 404 unless the caller may read the key's vault
    else:
        call.principal.require(Permission.READ, ALL_VAULTS, f"planning {EVERY_VAULT}")
    return call.answer(await call.run_hook(call.deps.plan, "planning", body.keys))


ROUTES = [
    Route(
        "POST",
        "/reconcile",
        reconcile_once,
        "reconcile_once",
        "One full reconcile pass over every connected keystore (keyorch addition); its counts and flagged keys",
        "reconcile",
        Permission.DEPLOY,
        refusals=(503,),
        response=ReconcileResult,
    ),
    Route(
        "POST",
        "/plan",
        plan,
        "plan",
        "What a reconcile pass would do per key and keystore, and how it could be undone; changes nothing",
        "reconcile",
        Permission.READ,
        body=PlanRequest,
        refusals=(503,),
        response=Plan,
    ),
]
