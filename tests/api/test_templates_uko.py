"""Key templates as UKO v4 (IBM's Go SDK) has them: the Template shape, the SDK's create body beside keyorch's,
the ListKeyTemplates filters (each filters, or is a 400 naming it), linked pages, archived templates making no
keys; on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from keyorch.service import keys
from tests.uko.contract import violations

from .conftest import API, Api, error_of, target_of


@pytest.fixture
def api_db_url(db_url: str) -> str:
    """Every test here runs on SQLite and on PostgreSQL."""
    return db_url


def sdk_body(vault: str, name: str, **changes: Any) -> dict[str, Any]:
    """CreateKeyTemplate as the SDK sends it (Terraform's ibm_hpcs_key_template example)."""
    body: dict[str, Any] = {
        "vault": {"id": vault},
        "name": name,
        "description": "payments keys",
        "key": {
            "size": "256",
            "algorithm": "aes",
            "activation_date": "P5Y1M1W2D",
            "expiration_date": "P1Y2M1W4D",
            "state": "active",
        },
        "naming_scheme": "PAY-{label}",
        "keystores": [{"group": "production", "type": "aws_kms"}],
    }
    body.update(changes)
    return body


def check_uko(model: str, doc: dict[str, Any]) -> None:
    """``doc`` is UKO's Template or TemplateList, but for one deviation: a template without planned key dates
    leaves ``key.activation_date`` / ``key.expiration_date`` out. UKO's KeyProperties declares them required, yet
    keyorch has nothing to put there for a template made without them (its own body, one made before migration
    0010), UKO's schemas take no null, and the SDK's decoder does not enforce ``required``."""
    shown = doc["templates"] if model == "TemplateList" else [doc]
    at = [f"$.templates[{n}].key" for n in range(len(shown))] if model == "TemplateList" else ["$.key"]
    tolerated = {
        f"{path}: '{name}' is a required property"
        for path, template in zip(at, shown, strict=True)
        for name in ("activation_date", "expiration_date")
        if name not in template["key"]
    }
    found = violations(model, doc)
    assert set(found) <= tolerated, found


async def _create(api: Api, body: dict[str, Any], user: str = "creator") -> dict[str, Any]:
    resp = await api.request("POST", "/templates", user=user, json=body)
    assert resp.status == 201, await resp.text()
    doc: dict[str, Any] = await resp.json()
    check_uko("Template", doc)
    return doc


async def _list(api: Api, query: str = "", user: str = "reader") -> dict[str, Any]:
    resp = await api.request("GET", f"/templates?{query}", user=user)
    assert resp.status == 200, (query, await resp.text())
    doc: dict[str, Any] = await resp.json()
    check_uko("TemplateList", doc)
    return doc


async def test_the_sdk_create_body_makes_a_uko_template(api: Api) -> None:
    vault = await api.vault()
    made = await _create(api, sdk_body(vault, "sdk-made"))
    assert violations("Template", made) == []  # the SDK's body gives every field UKO requires
    vault_name = (await (await api.request("GET", f"/vaults/{vault}")).json())["name"]
    assert made["vault"] == {"id": vault, "name": vault_name, "href": f"{API}/vaults/{vault}"}
    assert (made["type"], made["state"], made["keys_count"], made["version"]) == (["user_defined"], "unarchived", 0, 1)
    assert made["key"] == {
        "size": "256",
        "algorithm": "aes",
        "activation_date": "P5Y1M1W2D",
        "expiration_date": "P1Y2M1W4D",
        "state": "active",
        "deactivate_on_rotation": False,
    }
    assert made["keystores"] == [{"group": "production", "type": "aws_kms"}]
    assert (made["description"], made["naming_scheme"]) == ("payments keys", "PAY-{label}")
    assert (made["created_by"], made["updated_by"]) == ("creator", "creator")
    assert made["href"] == f"{API}/templates/{made['id']}"
    assert (made["algorithm"], made["size"], made["initial_state"]) == ("aes", 256, "active")  # keyorch's own

    resp = await api.request("GET", made["href"].removeprefix(API), user="reader")
    assert resp.status == 200 and await resp.json() == made
    assert resp.headers["ETag"] == f'"{made["id"]}:1"'


async def test_keyorchs_own_body_keeps_working_and_names_keystores_by_id(api: Api) -> None:
    vault = await api.vault()
    keystore = await api.keystore(vault)
    body = {"vault": vault, "name": "own", "keystores": [keystore], "algorithm": "aes", "size": 256, "state": "active"}
    made = await _create(api, body)
    [entry] = made["keystores"]
    ks = await (await api.request("GET", f"/keystores/{keystore}")).json()
    assert entry == {"id": keystore, "name": ks["name"], "type": "aws_kms", "href": f"{API}/keystores/{keystore}"}
    # no planned dates given
    assert made["key"] == {"size": "256", "algorithm": "aes", "state": "active", "deactivate_on_rotation": False}
    assert (made["initial_state"], made["description"], made["state"]) == ("active", "", "unarchived")

    ibm = await _create(api, sdk_body(vault, "ibm", keystores=[{"group": "eu", "type": "ibm_key_protect"}]))
    assert ibm["keystores"] == [{"group": "eu", "type": "ibm_cloud_kms"}]  # keyorch's type name in, UKO's out


async def test_keys_count_follows_the_keys_made(api: Api) -> None:
    vault = await api.vault()
    template = await api.template(vault)
    for _ in range(3):
        await api.key(vault=vault, template=template)
    doc = await (await api.request("GET", f"/templates/{template}")).json()
    assert doc["keys_count"] == 3
    [listed] = (await _list(api, f"vault.id={vault}"))["templates"]
    assert listed["keys_count"] == 3


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"key": {"size": "big", "algorithm": "aes", "state": "active"}}, "key.size"),
        (
            {"key": {"size": "256", "algorithm": "aes", "state": "active", "activation_date": "1 year"}},
            "key.activation_date",
        ),
        (
            {"key": {"size": "256", "algorithm": "aes", "state": "active", "expiration_date": "2027-02-30"}},
            "key.expiration_date",
        ),
        ({"key": {"size": "256", "algorithm": "des", "state": "active"}}, "algorithm"),
        ({"key": {"size": "256", "algorithm": "aes", "state": "destroyed"}}, "keystores"),  # pydantic: the Literal
        ({"keystores": [{"group": "production", "type": "hpcs_vault"}]}, "keystores[].type"),
        ({"keystores": [{"group": "bad group!", "type": "aws_kms"}]}, "keystores[].group"),
        ({"type": ["shadow"]}, "type"),
        ({"algorithm": "rsa"}, "key.algorithm"),
        ({"keystores": [{"group": "production", "type": "aws_kms", "google_key_purpose": "mac"}]}, "keystores"),
    ],
)
async def test_bad_sdk_bodies_are_refused_naming_the_field(api: Api, change: dict[str, Any], field: str) -> None:
    vault = await api.vault()
    resp = await api.request("POST", "/templates", user="creator", json=sdk_body(vault, "bad", **change))
    assert resp.status == 400, await resp.text()
    err = (await error_of(resp))["errors"][0]
    _kind, name = target_of(err) or ("", "")
    if field == "keystores":  # the body's shape: pydantic names where in the body
        assert name.split(".")[0] in ("keystores", "key"), err
    else:
        assert name == field, err
    assert (await _list(api, f"vault.id={vault}"))["total_count"] == 0


async def test_every_list_filter_the_sdk_sends_filters(api: Api) -> None:
    mine, other = await api.vault(), await api.vault()
    ks_mine, ks_other = await api.keystore(mine), await api.keystore(other)
    made: dict[str, dict[str, Any]] = {}
    for vault, ks in ((mine, ks_mine), (other, ks_other)):
        tag = "m" if vault == mine else "o"
        made[f"{tag}-aws-group"] = await _create(api, sdk_body(vault, f"{tag}-aws-group"))
        made[f"{tag}-gcp-group"] = await _create(
            api, sdk_body(vault, f"{tag}-gcp-group", naming_scheme="G-{label}", keystores=[
                {"group": "staging", "type": "google_kms"}, {"group": "production", "type": "azure_key_vault"}])
        )  # fmt: skip
        made[f"{tag}-named"] = await _create(api, {"vault": vault, "name": f"{tag}-named", "keystores": [ks]})
        made[f"{tag}-archived"] = await _create(api, sdk_body(vault, f"{tag}-archived", state="archived"))

    def names(doc: dict[str, Any]) -> set[str]:
        return {t["name"] for t in doc["templates"]}

    base = f"vault.id={mine}"
    everything = {"m-aws-group", "m-gcp-group", "m-named", "m-archived"}
    assert names(await _list(api, base)) == everything
    cases = {
        "name=m-named": {"m-named"},
        "naming_scheme=G-{label}": {"m-gcp-group"},
        "key.algorithm=aes": everything,
        "key.algorithm=rsa": set(),
        "key.size=256": everything,
        "key.size_min=257": set(),
        "key.size_max=256": everything,
        "keystores[].type=google_kms": {"m-gcp-group"},
        "keystores[].type=aws_kms": {"m-aws-group", "m-named", "m-archived"},  # a group entry or a keystore named
        "keystores[].type=azure_key_vault,google_kms": {"m-gcp-group"},
        "keystores[].group=production": {"m-aws-group", "m-gcp-group", "m-archived"},
        "keystores[].group=staging": {"m-gcp-group"},
        "type[]=user_defined": everything,
        "type[]=shadow": set(),
        "state=archived": {"m-archived"},
        "state=unarchived": everything - {"m-archived"},
        "state=archived,unarchived": everything,
    }
    for query, expected in cases.items():
        # another vault's templates never appear, whatever the filter
        assert names(await _list(api, f"{base}&{query}")) == expected, query
        unscoped = names(await _list(api, query))  # the reader sees both vaults: the filter alone decides
        assert unscoped & everything == expected and all(n.startswith("o-") for n in unscoped - everything), query

    ordered = await _list(api, f"{base}&sort=-name")
    assert [t["name"] for t in ordered["templates"]] == sorted(everything, reverse=True)
    by_scheme = await _list(api, f"{base}&sort=naming_scheme,-name")
    assert next(t["name"] for t in by_scheme["templates"]) == "m-gcp-group"  # G-… before PAY-… and {label}


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("managing_systems=web", "managing_systems"),  # one the SDK can send that keyorch does not take
        ("created_at_min=2026-01-01", "created_at_min"),
        ("state=deleted", "state"),
        ("sort=colour", "sort"),
        ("keystores[].type=hsm", "keystores[].type"),
        ("key.size=big", "key.size"),
    ],
)
async def test_a_filter_keyorch_cannot_apply_is_a_400_naming_it(api: Api, query: str, parameter: str) -> None:
    resp = await api.request("GET", f"/templates?{query}", user="reader")
    assert resp.status == 400, await resp.text()
    err = (await error_of(resp))["errors"][0]
    assert target_of(err) in (("parameter", parameter), ("field", parameter)), err


async def test_pages_link_to_every_template_once(api: Api) -> None:
    vault = await api.vault()
    keystore = await api.keystore(vault)
    for n in range(5):
        await _create(api, {"vault": vault, "name": f"p{n}", "keystores": [keystore]})
    seen: list[str] = []
    doc = await _list(api, f"vault.id={vault}&limit=2")
    assert (doc["total_count"], doc.get("previous")) == (5, None)
    while True:
        seen += [t["name"] for t in doc["templates"]]
        if "next" not in doc:
            break
        link = urlsplit(doc["next"]["href"])
        assert link.path == f"{API}/templates" and parse_qs(link.query)["vault.id"] == [vault]
        doc = await _list(api, link.query)
    assert sorted(seen) == [f"p{n}" for n in range(5)]  # each once (made at one instant: by id then)
    assert parse_qs(urlsplit(doc["last"]["href"]).query)["offset"] == ["4"]


async def test_an_archived_template_makes_no_keys(api: Api) -> None:
    vault = await api.vault()
    keystore = await api.keystore(vault)
    archived = await _create(api, {"vault": vault, "name": "old", "keystores": [keystore], "state": "archived"})
    assert archived["state"] == "archived"
    resp = await api.request("POST", "/managed_keys", user="creator", json={"template": archived["id"], "label": "k"})
    assert resp.status == 409, await resp.text()
    err = (await error_of(resp))["errors"][0]
    assert "archived" in err["message"] and target_of(err) == ("field", "template"), err
    assert await keys.list_keys(api.ctx()) == []
