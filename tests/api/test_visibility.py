"""Objects outside the caller's vaults do not exist for the caller: every route answers 404 exactly as for
an id that exists nowhere (same body, the reference aside), never 403 and never naming the vault. Inside
a vault where the caller has a role, a missing permission is still 403."""

from __future__ import annotations

from typing import Any

from keyorch.api.app import ROUTES
from tests.api.conftest import API, Api, auth, error_of

#: carol deploys in "payments" and payments_admin administers it; neither has a role elsewhere (conftest.py)
CALLER = "carol"
ADMIN_OF_PAYMENTS = "payments_admin"


async def _other_vault(api: Api) -> dict[str, str]:
    vault = await api.vault("other")
    keystore = await api.keystore(vault)
    template = await api.template(vault, keystore)
    key = await api.key(vault, "pre_active", template=template)
    return {"vaults": vault, "keystores": keystore, "templates": template, "managed_keys": key.id}


async def _answer(
    api: Api, method: str, target: str, body: Any = None, user: str = CALLER
) -> tuple[int, dict[str, Any]]:
    headers = auth(user, '"x:1"')
    resp = await api.client.request(method, API + target, headers=headers, json=body)
    return resp.status, await error_of(resp) if resp.status >= 400 else {}


def _same_but_ref(hidden: dict[str, Any], missing: dict[str, Any], ref: str, nope: str) -> bool:
    return hidden == {
        **missing,
        "trace": hidden["trace"],  # each request's own
        "errors": [{**e, "message": e["message"].replace(nope, ref)} for e in missing["errors"]],
    }


async def test_every_route_answers_404_for_an_object_in_a_vault_the_caller_has_no_role_in(api: Api) -> None:
    await api.vault("payments")
    theirs = await _other_vault(api)
    checked = []
    for route in ROUTES:
        if "{id}" not in route.path:
            continue
        kind = route.path.split("/")[1]
        ref = theirs[kind]
        body = {} if route.body is not None else None  # a valid body, so the lookup decides
        status, hidden = await _answer(api, route.method, route.path.replace("{id}", ref), body)
        nope = "0" * len(ref)
        _, missing = await _answer(api, route.method, route.path.replace("{id}", nope), body)
        assert status == 404, (route.operation_id, hidden)
        assert _same_but_ref(hidden, missing, ref, nope), (route.operation_id, hidden, missing)
        named = str(hidden).replace(ref, "REF")
        assert "other" not in named and theirs["vaults"] not in named, (route.operation_id, hidden)
        checked.append(route.operation_id)
    assert len(checked) == sum("{id}" in r.path for r in ROUTES) >= 10


async def test_references_in_bodies_and_filters_to_hidden_vaults_are_not_found(api: Api) -> None:
    payments = await api.vault("payments")
    theirs = await _other_vault(api)
    cases: list[tuple[str, str, Any, str]] = [
        ("POST", "/managed_keys", {"template": theirs["templates"], "label": "x"}, theirs["templates"]),
        ("POST", "/templates", {"vault": theirs["vaults"], "name": "t", "keystores": ["k"]}, theirs["vaults"]),
        (
            "POST",
            "/templates",
            {"vault": payments, "name": "t", "keystores": [theirs["keystores"]]},
            theirs["keystores"],
        ),
        (
            "POST",
            "/keystores",
            {"vault": "other", "name": "k", "type": "aws_kms", "credentials_from_environment": True},
            "other",
        ),
        ("GET", "/managed_keys?vault=other", None, "other"),
        ("GET", "/keystores?vault=other", None, "other"),
        ("GET", "/templates?vault=other", None, "other"),
        ("GET", f"/managed_keys?vault.id={theirs['vaults']}", None, theirs["vaults"]),
        ("GET", f"/templates?vault.id={payments},{theirs['vaults']}", None, theirs["vaults"]),
    ]
    for method, target, body, ref in cases:
        nope = "n" * len(ref)
        status, hidden = await _answer(api, method, target, body, user=ADMIN_OF_PAYMENTS)
        missing_body = None if body is None else _swapped(body, ref, nope)
        _, missing = await _answer(api, method, target.replace(ref, nope), missing_body, user=ADMIN_OF_PAYMENTS)
        assert status == 404, (target, body, hidden)
        assert _same_but_ref(hidden, missing, ref, nope), (target, hidden, missing)


def _swapped(doc: Any, ref: str, nope: str) -> Any:
    if isinstance(doc, dict):
        return {k: _swapped(v, ref, nope) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_swapped(v, ref, nope) for v in doc]
    return nope if doc == ref else doc


async def test_inside_a_vault_of_the_caller_a_missing_permission_is_still_403(api: Api) -> None:
    payments = await api.vault("payments")
    key = await api.key(payments, "deactivated")
    etag = await api.etag(f"/managed_keys/{key.id}")
    resp = await api.request("POST", f"/managed_keys/{key.id}/destroy", user=CALLER, headers={"If-Match": etag})
    assert resp.status == 403
    assert (
        "carol has the role key_custodian_deployer in vault payments" in (await error_of(resp))["errors"][0]["message"]
    )
    assert (await api.request("GET", f"/managed_keys/{key.id}", user=CALLER)).status == 200
