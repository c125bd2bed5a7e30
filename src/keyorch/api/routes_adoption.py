"""keyorch's ``POST /api/v4/managed_keys/adopt`` (UKO has none): keys that exist in keystores become managed keys,
exactly as they are (:mod:`keyorch.service.adoption`, which ``keyorch key adopt`` calls too)."""

from __future__ import annotations

from aiohttp import web

from keyorch.api.auth import Permission
from keyorch.api.models import AdoptBody, DryRunQuery
from keyorch.api.responses import AdoptionResult
from keyorch.api.routing import Call, Route
from keyorch.domain.errors import RuleViolation
from keyorch.service import adoption
from keyorch.service.adoption_request import AdoptRequest, Selection
from keyorch.views_adoption import adoption_json


async def adopt_keys(call: Call) -> web.StreamResponse:
    body = call.parsed(AdoptBody, call.body)
    dry_run = call.parsed(DryRunQuery, call.query).dry_run
    vault = await call.vault(body.vault.id)
    ctx = await call.authorize((Permission.CREATE, Permission.DEPLOY), vault.name, "key.adopt", "key", body.label)
    flt = body.filter
    selection = Selection(
        ids=tuple((i.keystore.id, i.key_id_in_keystore) for i in body.instances or ()),
        all_unmanaged=flt.all_unmanaged if flt else False,
        name_patterns=tuple(flt.name_pattern) if flt else (),
        tags=tuple((t.name, t.value) for t in flt.tags) if flt else (),
    )
    request = AdoptRequest(
        keystores=tuple(k.id for k in body.keystores),
        vault=vault.id,
        template=body.template.id,
        selection=selection,
        label=body.label,
        state=body.state,
        marker=body.marker,
        dry_run=dry_run,
    )
    plan = await adoption.run_adoption(ctx, request)
    if selection.ids and plan.conflicts:  # the one managed key asked for was not made: a refusal, nothing written
        raise RuleViolation(f"key {plan.conflicts[0].label} not adopted: {plan.conflicts[0].conflict}", target="adopt")
    for proposal in plan.proposals:
        if proposal.key is not None:
            call.changed(proposal.key.id)
    return call.answer(adoption_json(plan))


ROUTES = [
    Route(
        "POST",
        "/managed_keys/adopt",
        adopt_keys,
        "adopt_managed_keys",
        "Adopt keys that exist in keystores as managed keys, unchanged but for keyorch's marker (by id, or in bulk "
        "by a filter; dry_run=true only plans)",
        "managed_keys",
        Permission.CREATE,  # and DEPLOY: adopted keys may be active (the handler asks for both)
        body=AdoptBody,
        query=DryRunQuery,
        response=AdoptionResult,
        refusals=(404, 409, 502, 503),
    ),
]
