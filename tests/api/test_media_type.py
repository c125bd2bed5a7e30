"""A request body is JSON only when it says so: anything but application/json (UTF-8) is a 415, whoever sends
it, and nothing is created; text/plain used to be parsed as JSON."""

from __future__ import annotations

import json

import pytest

from tests.api.conftest import API, Api, auth, error_of


@pytest.mark.parametrize("user", ["admin", "reader", "payments_admin"])
@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        "application/jsonx",
        None,
    ],
)
async def test_a_body_not_sent_as_json_is_415_and_nothing_is_created(
    api: Api, user: str, content_type: str | None
) -> None:
    name = api.unique("media")
    headers = auth(user)
    if content_type is not None:
        headers["Content-Type"] = content_type
    data = json.dumps({"name": name}).encode()
    resp = await api.client.post(API + "/vaults", data=data, headers=headers, skip_auto_headers=["Content-Type"])
    assert resp.status == 415, await resp.text()
    err = (await error_of(resp))["errors"][0]
    assert (
        err
        == {
            "code": "unsupported_media_type",
            "message": err["message"],
            "more_info": err["more_info"],
            "message_params": ["Content-Type"],
            "target": {"type": "header", "name": "Content-Type"},
        }
        and "application/json" in err["message"]
    )
    listed = await (await api.request("GET", "/vaults?limit=1000")).json()
    assert name not in {v["name"] for v in listed["vaults"]}


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=UTF-8", "application/merge-patch+json"]
)
async def test_json_media_types_are_accepted(api: Api, content_type: str) -> None:
    name = api.unique("media")
    headers = {**auth("admin"), "Content-Type": content_type}
    resp = await api.client.post(API + "/vaults", data=json.dumps({"name": name}).encode(), headers=headers)
    assert resp.status == 201, await resp.text()


async def test_an_empty_body_without_a_content_type_asks_for_the_json_body(api: Api) -> None:
    resp = await api.client.post(API + "/vaults", headers=auth("admin"), skip_auto_headers=["Content-Type"])
    assert resp.status == 400
    assert "needs a JSON object" in (await error_of(resp))["errors"][0]["message"]
