"""/api/v4/templates: list, create (key custodian creators), get."""

from __future__ import annotations

from aiohttp import web

from keyorch.api.auth import Permission
from keyorch.api.models import TemplateCreate, VaultFilter
from keyorch.api.responses import Template, TemplateList
from keyorch.api.routing import PREFIX, Call, Route, page
from keyorch.service import templates as ops
from keyorch.service.keystores import keystore_names
from keyorch.views import template_json


async def list_templates(call: Call) -> web.StreamResponse:
    q = call.parsed(VaultFilter, call.query)
    listed = await call.listed_vaults(q)
    ctx = call.context()
    names = await keystore_names(ctx)
    found = [template_json(t, names) for t in await ops.list_templates(ctx) if listed is None or t.vault_id in listed]
    return call.answer(page(found, q.limit, q.offset, "templates"))


async def create_template(call: Call) -> web.StreamResponse:
    body = call.parsed(TemplateCreate, call.body)
    vault = await call.vault(body.vault)
    ctx = await call.authorize(Permission.CREATE, vault.name, "template.create", "template", body.name)
    template = await ops.create_template(
        ctx,
        vault=vault.id,
        name=body.name,
        keystores=body.keystores,
        algorithm=body.algorithm,
        size=body.size,
        naming_scheme=body.naming_scheme,
        state=body.state,
    )
    return call.answer(
        template_json(template, await keystore_names(ctx)),
        tag=(template.id, template.version),
        location=f"{PREFIX}/templates/{template.id}",
    )


async def get_template(call: Call) -> web.StreamResponse:
    ctx = call.context()
    template = await call.template(call.path_id)
    return call.answer(template_json(template, await keystore_names(ctx)), tag=(template.id, template.version))


ROUTES = [
    Route(
        "GET",
        "/templates",
        list_templates,
        "list_templates",
        "List templates in the vaults the caller can read",
        "templates",
        Permission.READ,
        query=VaultFilter,
        response=TemplateList,
        refusals=(403, 404),
    ),
    Route(
        "POST",
        "/templates",
        create_template,
        "create_template",
        "Create a key template",
        "templates",
        Permission.CREATE,
        body=TemplateCreate,
        success=201,
        response=Template,
        refusals=(404, 409),
    ),
    Route(
        "GET",
        "/templates/{id}",
        get_template,
        "get_template",
        "Get a template by id or name",
        "templates",
        Permission.READ,
        response=Template,
        refusals=(404,),
    ),
]
