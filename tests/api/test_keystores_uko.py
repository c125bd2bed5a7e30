"""The keystore resource as UKO v4 (IBM's Go SDK) has it, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Api, aws_connect_body, error_of, target_of


@pytest.fixture
def api_db_url(db_url: str) -> str:
    return db_url


async def _connect(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    resp = await api.request("POST", "/keystores", json=body)
    assert resp.status == 201, await resp.text()
    doc: dict[str, Any] = await resp.json()
    return doc


async def test_connect_takes_groups_description_and_location(api: Api) -> None:
    vault = await api.vault()
    uko = {"groups": ["payments", "eu"], "description": "cards", "location": "Frankfurt"}
    made = await _connect(api, aws_connect_body(vault, api.unique("ks"), **uko))
    assert (made["groups"], made["description"], made["location"]) == (["payments", "eu"], "cards", "Frankfurt")
    assert (made["created_by"], made["updated_by"]) == ("admin", "admin")
    got = await (await api.request("GET", f"/keystores/{made['id']}", user="reader")).json()
    assert (got["groups"], got["description"], got["location"]) == (["payments", "eu"], "cards", "Frankfurt")

    plain = await _connect(api, aws_connect_body(vault, api.unique("ks")))
    assert (plain["groups"], plain["description"], plain["location"]) == ([], "", "")


async def test_bad_groups_and_location_are_refused_naming_the_field(api: Api) -> None:
    vault = await api.vault()
    for extra, field, says in (
        ({"groups": ["has space"]}, "groups", "group 'has space' is not valid"),
        ({"groups": ["a", "a"]}, "groups", "listed twice"),
        ({"location": "x" * 129}, "location", "at most 128"),
        ({"description": "bell\x07"}, "description", "control character"),
    ):
        resp = await api.request("POST", "/keystores", json=aws_connect_body(vault, api.unique("bad"), **extra))
        assert resp.status == 400, (extra, await resp.text())
        err = (await error_of(resp))["errors"][0]
        assert target_of(err) == ("field", field) and says in err["message"], err
    listed = await (await api.request("GET", "/keystores", params={"vault": vault})).json()
    assert listed["keystores"] == []
