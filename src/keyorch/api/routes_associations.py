"""UKO v4's keystore/key associations: a keystore's managed keys, and the resources a key protects; and
keyorch's ``GET /keystores/{id}/unmanaged_keys``: the keys of a keystore that no managed key targets
(:func:`keyorch.service.inventory.unmanaged_keys`, read live from the provider, page by page).

``GET /keystores/{id}/managed_keys`` is the key list (:func:`keyorch.api.routes_keys.key_page`: the same
filters, sort and pages) kept to the keys in that keystore. ``GET /managed_keys/{id}/associated_resources``
and ``GET /keystores/{id}/associated_resources`` read the keystores' registrations live
(:mod:`keyorch.service.associations`); a keystore type that records none answers an empty list.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from keyorch.api.auth import Permission
from keyorch.api.models import AssociatedResourceQuery, KeyFilterQuery, UnmanagedKeyQuery
from keyorch.api.responses import AssociatedResourceList, ManagedKeyList, UnmanagedKeyList
from keyorch.api.routes_keys import key_page
from keyorch.api.routing import Call, Route, linked_page
from keyorch.domain.errors import InvalidInput
from keyorch.domain.uko import uko_type
from keyorch.domain.validation import shown
from keyorch.service import associations, inventory
from keyorch.views import associated_resource_json, reference, unmanaged_key_json

#: what a list of associated resources sorts by; by key label, keystore name and CRN otherwise
SORT_FIELDS = ("name", "type", "id", "key_id_in_keystore")


async def keystore_keys(call: Call) -> web.StreamResponse:
    q = call.parsed(KeyFilterQuery, call.query)
    keystore = await call.keystore(call.path_id)
    return await key_page(call, q, keystore_ids=(keystore.id,))


def _sorted(docs: list[dict[str, Any]], sort: list[str] | None) -> list[dict[str, Any]]:
    for given in sort or ():
        if given.removeprefix("-") not in SORT_FIELDS:
            raise InvalidInput(
                f"sort {shown(given)} is not a field of an associated resource to sort by: use one of "
                f"{', '.join(SORT_FIELDS)}, with '-' before it for descending order",
                target="sort",
                target_type="parameter",
            )
    for given in reversed(sort or ()):
        field = given.removeprefix("-")
        docs.sort(key=lambda d: str(d[field]), reverse=given.startswith("-"))
    return docs


async def _answer(call: Call, q: AssociatedResourceQuery, found: list[associations.Association]) -> web.Response:
    vaults = {v.id: v.name for v in (await call.readable_vaults()).values()}
    found = sorted(found, key=lambda a: (a.key.label, a.keystore.name, a.registration.resource_crn))
    docs = _sorted([associated_resource_json(a, vaults.get(a.key.vault_id)) for a in found], q.sort)
    shown_docs = docs[q.offset : q.offset + q.limit]
    return call.answer(linked_page(shown_docs, len(docs), q.limit, q.offset, "associated_resources", call.request))


async def key_resources(call: Call) -> web.StreamResponse:
    q = call.parsed(AssociatedResourceQuery, call.query)
    key = await call.key(call.path_id)
    return await _answer(call, q, await associations.key_associations(call.context(), key))


async def keystore_resources(call: Call) -> web.StreamResponse:
    q = call.parsed(AssociatedResourceQuery, call.query)
    keystore = await call.keystore(call.path_id)
    return await _answer(call, q, await associations.keystore_associations(call.context(), keystore))


async def keystore_unmanaged_keys(call: Call) -> web.StreamResponse:
    q = call.parsed(UnmanagedKeyQuery, call.query)
    keystore = await call.keystore(call.path_id)
    made_by = inventory.MadeBy(q.made_by) if q.made_by is not None else None
    scan = await inventory.unmanaged_keys(call.context(), keystore, uko_names=q.uko_name or (), made_by=made_by)
    docs = [unmanaged_key_json(u) for u in scan.unmanaged[q.offset : q.offset + q.limit]]
    doc = linked_page(docs, len(scan.unmanaged), q.limit, q.offset, "unmanaged_keys", call.request)
    doc["keystore"] = reference("keystores", keystore.id, keystore.name, type=uko_type(keystore.type))
    doc |= {"keys_in_keystore": scan.total, "managed_in_keystore": scan.managed}
    return call.answer(doc)


ROUTES = [
    Route(
        "GET",
        "/keystores/{id}/managed_keys",
        keystore_keys,
        "list_managed_keys_from_keystore",
        "List the managed keys in a keystore (the key list's filters, sort and pages)",
        "keystores",
        Permission.READ,
        query=KeyFilterQuery,
        response=ManagedKeyList,
        refusals=(403, 404),
    ),
    Route(
        "GET",
        "/keystores/{id}/unmanaged_keys",
        keystore_unmanaged_keys,
        "list_unmanaged_keys_in_keystore",
        "The keys the keystore holds that no managed key targets (read live from the provider, reads only), each "
        "with its name, tags, state, versions, creation date and whether it looks made by UKO or by keyorch",
        "keystores",
        Permission.READ,
        query=UnmanagedKeyQuery,
        response=UnmanagedKeyList,
        refusals=(404, 409, 502, 503),
    ),
    Route(
        "GET",
        "/managed_keys/{id}/associated_resources",
        key_resources,
        "list_associated_resources_for_managed_key",
        "The cloud resources the key protects, as its keystores record them (Key Protect registrations; "
        "other keystores record none)",
        "managed_keys",
        Permission.READ,
        query=AssociatedResourceQuery,
        response=AssociatedResourceList,
        refusals=(404, 502, 503),
    ),
    Route(
        "GET",
        "/keystores/{id}/associated_resources",
        keystore_resources,
        "list_associated_resources_for_keystore",
        "The cloud resources the keystore's managed keys protect (Key Protect registrations; other keystores "
        "record none)",
        "keystores",
        Permission.READ,
        query=AssociatedResourceQuery,
        response=AssociatedResourceList,
        refusals=(404, 502, 503),
    ),
]
