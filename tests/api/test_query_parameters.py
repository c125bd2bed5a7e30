"""Query parameters: UKO's `vault.id` filter works on every list; a parameter an operation does not take, or one
given twice, is a 400 naming it and the allowed ones, never silently ignored (which widened what a client saw)."""

from __future__ import annotations

import pytest

from keyorch.api.app import ROUTES
from tests.api.conftest import API, Api, auth, error_of, target_of

LISTS = {r.path: r for r in ROUTES if r.method == "GET" and "{id}" not in r.path}


async def _ids(api: Api, target: str, kind: str) -> set[str]:
    resp = await api.request("GET", target)
    assert resp.status == 200, await resp.text()
    return {item["id"] for item in (await resp.json())[kind]}


async def test_vault_id_filters_every_list_by_vault(api: Api) -> None:
    made = {}
    for name in ("va", "vb", "vc"):
        vault = await api.vault(name)
        keystore = await api.keystore(vault)
        template = await api.template(vault, keystore)
        key = await api.key(vault, template=template)
        made[name] = {"vault": vault, "keystores": keystore, "templates": template, "managed_keys": key.id}
    a, b = made["va"], made["vb"]
    for kind in ("managed_keys", "keystores", "templates"):
        assert await _ids(api, f"/{kind}?vault.id={a['vault']}", kind) == {a[kind]}
        assert await _ids(api, f"/{kind}?vault.id={a['vault']},{b['vault']}&limit=1000", kind) == {a[kind], b[kind]}
        assert await _ids(api, f"/{kind}?vault.id={a['vault']}&vault=vb", kind) == set()  # both filters apply
        resp = await api.request("GET", f"/{kind}?vault.id=va")  # vault.id takes ids, not names
        assert resp.status == 404
        assert target_of((await error_of(resp))["errors"][0]) == ("field", "vault.id")


@pytest.mark.parametrize("path", sorted(LISTS))
async def test_an_unknown_query_parameter_on_a_list_is_refused_naming_it_and_the_allowed_ones(
    api: Api, path: str
) -> None:
    allowed = LISTS[path].query.parameter_names() if LISTS[path].query is not None else []
    for unknown in ("vault_id", "vaultid", "lable", "order_by", "limit[]", "Limit"):
        if unknown in allowed:  # e.g. UKO's sort, on the lists that take it
            continue
        resp = await api.client.get(API + path, params={unknown: "x"}, headers=auth("admin"))
        assert resp.status == 400, (path, unknown, await resp.text())
        err = (await error_of(resp))["errors"][0]
        assert err["code"] == "invalid_input" and target_of(err) == ("parameter", unknown)
        assert repr(unknown) in err["message"] and all(name in err["message"] for name in allowed), err


async def test_a_query_parameter_given_twice_is_refused(api: Api) -> None:
    resp = await api.client.get(API + "/managed_keys?vault=a&vault=b", headers=auth("admin"))
    assert resp.status == 400
    assert "given more than once" in (await error_of(resp))["errors"][0]["message"]


async def test_operations_without_parameters_refuse_any(api: Api) -> None:
    key = await api.key()
    for target in (f"/managed_keys/{key.id}?vault=x", f"/managed_keys/{key.id}/status_in_keystores?state=active"):
        resp = await api.client.get(API + target, headers=auth("admin"))
        assert resp.status == 400, target
        assert "takes no query parameter" in (await error_of(resp))["errors"][0]["message"]
