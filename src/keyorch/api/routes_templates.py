"""/api/v4/templates: list, create (key custodian creators), get."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from keyorch.api.auth import Permission
from keyorch.api.models import (
    TemplateCreate,
    TemplateGroupEntry,
    TemplateKeyUpdate,
    TemplateQuery,
    TemplateUpdate,
    TemplateVaultRef,
)
from keyorch.api.responses import Template, TemplateList
from keyorch.api.routing import PREFIX, Call, Route, linked_page
from keyorch.domain import uko
from keyorch.domain.errors import InvalidInput
from keyorch.domain.models import KeyTemplate, TemplateState
from keyorch.domain.validation import shown
from keyorch.service import template_edits as edits
from keyorch.service import templates as ops
from keyorch.service.context import ServiceContext
from keyorch.views import template_json


def _values(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",")] if value is not None else None


def _template_states(value: str | None) -> frozenset[TemplateState] | None:
    found = set()
    for v in _values(value) or ():
        try:
            found.add(TemplateState(v))
        except ValueError:
            allowed = ", ".join(s.value for s in TemplateState)
            raise InvalidInput(
                f"state {shown(v)} is not a template state: use {allowed}", target="state", target_type="parameter"
            ) from None
    return frozenset(found) if value is not None else None


def _filter(q: TemplateQuery, vault_ids: frozenset[str] | None) -> ops.TemplateFilter:
    algorithms = _values(q.key_algorithm)
    kinds = _values(q.keystores_type)
    groups = _values(q.keystores_group)
    types = _values(q.type)
    return ops.TemplateFilter(
        vault_ids=vault_ids,
        name=q.name,
        naming_scheme=q.naming_scheme,
        algorithms=frozenset(a.lower() for a in algorithms) if algorithms is not None else None,
        size=q.key_size,
        size_min=q.key_size_min,
        size_max=q.key_size_max,
        keystore_types=(
            frozenset(uko.keystore_type(k, "keystores[].type") for k in kinds) if kinds is not None else None
        ),
        keystore_groups=frozenset(groups) if groups is not None else None,
        types=frozenset(types) if types is not None else None,
        states=_template_states(q.state),
        sort=ops.parse_sort(q.sort),
    )


async def _answer_one(call: Call, template: KeyTemplate, **extra: Any) -> web.Response:
    facts = await ops.template_facts(call.context(), [template])
    return call.answer(template_json(template, facts), tag=(template.id, template.version), **extra)


async def list_templates(call: Call) -> web.StreamResponse:
    q = call.parsed(TemplateQuery, call.query)
    flt = _filter(q, await call.listed_vaults(q))
    found, facts = await ops.find_templates(call.context(), flt)
    shown_ = [template_json(t, facts) for t in found[q.offset : q.offset + q.limit]]
    return call.answer(linked_page(shown_, len(found), q.limit, q.offset, "templates", call.request))


def _size(body: TemplateCreate) -> int:
    """The key size from keyorch's ``size`` or UKO's ``key.size`` (text there); both given must agree."""
    given = body.key.size if body.key is not None else None
    if isinstance(given, str):
        if not given.isdigit() or len(given) > 6:
            raise InvalidInput(f'key.size {shown(given)} is not a number of bits, such as "256"', target="key.size")
        given = int(given)
    if given is not None and body.size is not None and given != body.size:
        raise InvalidInput(f"size {body.size} and key.size {given} differ; give one", target="key.size")
    return given if given is not None else body.size if body.size is not None else 256


def _create_args(body: TemplateCreate) -> dict[str, Any]:
    """The service's arguments from either form of the body (keyorch's or UKO's)."""
    key = body.key
    algorithm = key.algorithm if key is not None and key.algorithm is not None else None
    if algorithm is not None and body.algorithm is not None and algorithm.lower() != body.algorithm.lower():
        raise InvalidInput(
            f"algorithm {body.algorithm!r} and key.algorithm {algorithm!r} differ; give one", target="key.algorithm"
        )
    key_state = key.state if key is not None else None
    initial = uko.key_state(key_state, "key.state").value if key_state is not None else None
    archived = False
    if body.state in ("archived", "unarchived"):
        archived = body.state == "archived"
    elif body.state is not None:
        if initial is not None and initial != body.state:
            raise InvalidInput(f"state {body.state!r} and key.state {key_state!r} differ; give one", target="key.state")
        initial = body.state
    return {
        "name": body.name,
        "description": body.description,
        "keystores": [k for k in body.keystores if isinstance(k, str)],
        "groups": [(k.group, k.type) for k in body.keystores if isinstance(k, TemplateGroupEntry)],
        "algorithm": algorithm or body.algorithm or "aes",
        "size": _size(body),
        "naming_scheme": body.naming_scheme,
        "state": initial or "pre_active",
        "activation_date": key.activation_date if key is not None else None,
        "expiration_date": key.expiration_date if key is not None else None,
        "rotation_policy": key.rotation_policy if key is not None else None,
        "types": body.type if body.type is not None else ("user_defined",),
        "archived": archived,
        "deactivate_on_rotation": bool(key is not None and key.deactivate_on_rotation),
    }


async def create_template(call: Call) -> web.StreamResponse:
    body = call.parsed(TemplateCreate, call.body)
    args = _create_args(body)
    vault = await call.vault(body.vault.id if isinstance(body.vault, TemplateVaultRef) else body.vault)
    ctx = await call.authorize(Permission.CREATE, vault.name, "template.create", "template", body.name)
    template = await ops.create_template(ctx, vault=vault.id, **args, min_interval=call.deps.rotation_min_interval)
    return await _answer_one(call, template, location=f"{PREFIX}/templates/{template.id}")


async def get_template(call: Call) -> web.StreamResponse:
    return await _answer_one(call, await call.template(call.path_id))


def _unchanged_key_material(template: KeyTemplate, key: TemplateKeyUpdate | None) -> None:
    """UKO's SDK round-trips ``key.size``/``algorithm``/``state``: accepted as they are, refused as a change."""
    if key is None:
        return
    current = {"size": str(template.size), "algorithm": template.algorithm, "state": template.initial_state.value}
    given = {
        "size": str(key.size) if key.size is not None else None,
        "algorithm": key.algorithm.lower() if key.algorithm is not None else None,
        "state": uko.key_state(key.state, "key.state").value if key.state is not None else None,
    }
    for name, value in given.items():
        if value is not None and value != current[name]:
            raise InvalidInput(
                f"key.{name} {shown(value)} differs from the template's {current[name]!r}: keys keep what they were "
                "made with, so a template's key material cannot change; make a new template",
                target=f"key.{name}",
            )


def _edit(body: TemplateUpdate) -> edits.TemplateEdit:
    given = body.key.model_fields_set if body.key is not None else set()
    key = body.key
    return edits.TemplateEdit(
        name=body.name,
        description=body.description,
        keystores=[k for k in body.keystores if isinstance(k, str)] if body.keystores is not None else None,
        groups=(
            [(k.group, k.type) for k in body.keystores if isinstance(k, TemplateGroupEntry)]
            if body.keystores is not None
            else None
        ),
        activation_date=key.activation_date if key is not None and "activation_date" in given else edits.KEEP,
        expiration_date=key.expiration_date if key is not None and "expiration_date" in given else edits.KEEP,
        deactivate_on_rotation=key.deactivate_on_rotation if key is not None else None,
        rotation_policy=key.rotation_policy if key is not None and "rotation_policy" in given else edits.KEEP,
    )


async def _writable(
    call: Call, action: str, permission: Permission = Permission.CREATE
) -> tuple[KeyTemplate, ServiceContext, int]:
    """The template, the caller's context (authorized for ``action``) and the version its If-Match names."""
    template = await call.template(call.path_id)
    vault = await call.vault(template.vault_id)
    ctx = await call.authorize(permission, vault.name, action, "template", template.id)
    version = await call.expected_version(ctx, action, "template", template.id, template.version)
    return template, ctx, version


async def update_template(call: Call) -> web.StreamResponse:
    """UKO's UpdateKeyTemplate: name, description, distribution, planned key dates; If-Match required. A change
    of what the template gives keys flags its keys unaligned."""
    body = call.parsed(TemplateUpdate, call.body)
    template, ctx, version = await _writable(call, "template.update")
    _unchanged_key_material(template, body.key)
    interval = call.deps.rotation_min_interval
    after = await edits.update_template(ctx, template.id, _edit(body), version, min_interval=interval)
    return await _answer_one(call, after)


async def delete_template(call: Call) -> web.StreamResponse:
    template, ctx, version = await _writable(call, "template.delete", Permission.ADMINISTER)
    await edits.delete_template(ctx, template.id, version)
    return web.Response(status=204)


async def archive_template(call: Call) -> web.StreamResponse:
    template, ctx, version = await _writable(call, "template.archive")
    return await _answer_one(call, await edits.set_archived(ctx, template.id, True, version))


async def unarchive_template(call: Call) -> web.StreamResponse:
    template, ctx, version = await _writable(call, "template.unarchive")
    return await _answer_one(call, await edits.set_archived(ctx, template.id, False, version))


ROUTES = [
    Route(
        "GET",
        "/templates",
        list_templates,
        "list_templates",
        "List templates in the vaults the caller can read",
        "templates",
        Permission.READ,
        query=TemplateQuery,
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
    Route(
        "PATCH",
        "/templates/{id}",
        update_template,
        "update_key_template",
        "Change a template's name, description, distribution or planned key dates (its keys become unaligned "
        "where what it gives them changed)",
        "templates",
        Permission.CREATE,
        body=TemplateUpdate,
        if_match=True,
        response=Template,
        refusals=(404, 409),
    ),
    Route(
        "DELETE",
        "/templates/{id}",
        delete_template,
        "delete_key_template",
        "Delete a template no managed key was made from (refused while such keys exist)",
        "templates",
        Permission.ADMINISTER,
        if_match=True,
        success=204,
        refusals=(404, 409),
    ),
    Route(
        "POST",
        "/templates/{id}/archive",
        archive_template,
        "archive_key_template",
        "Archive a template: it makes no new keys, its keys keep working",
        "templates",
        Permission.CREATE,
        if_match=True,
        response=Template,
        refusals=(404,),
    ),
    Route(
        "POST",
        "/templates/{id}/unarchive",
        unarchive_template,
        "unarchive_key_template",
        "Unarchive a template: it makes keys again",
        "templates",
        Permission.CREATE,
        if_match=True,
        response=Template,
        refusals=(404,),
    ),
]
