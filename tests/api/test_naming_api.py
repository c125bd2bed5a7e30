"""A template's naming scheme over the API: UKO's ``<label>`` placeholders and keyorch's ``{label}`` both name the
key; a bad scheme is a 400 in UKO's error model naming the field, the value and the placeholders allowed."""

from __future__ import annotations

from keyorch.service import key_template, keys, keystores, templates

from .conftest import Api, error_of, target_of


async def test_a_scheme_in_either_form_names_the_key_and_a_bad_one_is_refused(api: Api) -> None:
    vault = await api.vault("naming")
    keystore = await api.keystore(vault)
    made = await api.request(
        "POST",
        "/templates",
        json={"vault": vault, "name": "uko-form", "keystores": [keystore], "naming_scheme": "APP-<label>-{vault}"},
    )
    assert made.status == 201, await made.text()
    key = await api.request("POST", "/managed_keys", json={"template": (await made.json())["id"], "label": "db"})
    assert key.status == 201, await key.text()
    assert (await key.json())["name"] == "APP-db-naming"

    for scheme, shown in (("app-{env}-{label}", "'{env}'"), ("fixed", "no {label}"), ("{label:>9}", "'{'")):
        bad = await api.request(
            "POST", "/templates", json={"vault": vault, "name": "bad", "keystores": [keystore], "naming_scheme": scheme}
        )
        assert bad.status == 400, await bad.text()
        err = (await error_of(bad))["errors"][0]
        assert target_of(err) == ("field", "naming_scheme")
        assert shown in err["message"] and "{label}" in err["message"] and "<name>" in err["message"]


async def test_a_keystore_a_key_is_realigned_to_gets_the_key_s_name(api: Api) -> None:
    vault = await api.vault("realign")
    ctx = api.ctx()

    async def keystore(name: str) -> str:
        request = keystores.ConnectRequest(
            vault=vault, name=name, type="aws_kms", region="us-east-1", credentials_from_environment=True, groups=("g",)
        )
        return (await keystores.connect_keystore(ctx, request)).id

    first = await keystore("first")
    await templates.create_template(
        ctx, vault=vault, name="grouped", groups=[("g", "aws_kms")], naming_scheme="g-{label}"
    )
    key = await keys.create_key(ctx, template="grouped", label="db", vault=vault)
    second = await keystore("second")
    after, plan = await key_template.update_from_template(ctx, key.id)
    assert [c.blocked for c in plan.changes] == [None]
    assert {t.keystore_id: t.label_in_keystore for t in after.targets} == {first: "alias/g-db", second: "alias/g-db"}
