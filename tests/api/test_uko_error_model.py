"""Every error answer is UKO's ApiError exactly, so IBM's UKO v4 Go SDK unmarshals it: ``status_code``,
``trace`` (also the ``X-Correlation-Id`` header), and errors of ``code``, ``message``, ``more_info``,
``message_params`` and a ``target`` object whose ``type`` says where the value came from."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import structlog

from keyorch.api.errors import MAX_BODY_BYTES
from tests.api.conftest import API, Api, error_of, target_of

JSON = {"Content-Type": "application/json"}


async def _answer(api: Api, kind: str) -> tuple[Any, int, tuple[str, str] | None]:
    """The answer of one kind of bad request, the status it must have and the target it must name."""
    if kind == "bad_field":
        resp = await api.request("POST", "/vaults", json={"name": 7})
        return resp, 400, ("field", "name")
    if kind == "bad_query_parameter":
        resp = await api.request("GET", "/managed_keys?limit=0")
        return resp, 400, ("parameter", "limit")
    if kind == "unknown_query_parameter":
        resp = await api.request("GET", "/vaults?colour=red")
        return resp, 400, ("parameter", "colour")
    if kind == "no_token":
        resp = await api.client.get(API + "/vaults")
        return resp, 401, ("header", "Authorization")
    if kind == "unknown_route":
        resp = await api.request("GET", "/nothing-here")
        return resp, 404, None
    if kind == "method_not_allowed":
        resp = await api.request("PUT", "/vaults")
        return resp, 405, None
    vault = await api.vault()
    if kind == "stale_etag":
        resp = await api.request("DELETE", f"/vaults/{vault}", headers={"If-Match": '"x"'})
        return resp, 412, ("header", "If-Match")
    if kind == "no_if_match":
        resp = await api.request("DELETE", f"/vaults/{vault}")
        return resp, 428, ("header", "If-Match")
    if kind == "too_large":
        body = io.BytesIO(b'{"name": "' + b"a" * (MAX_BODY_BYTES + 1) + b'"}')
        resp = await api.request("POST", "/vaults", data=body, headers=JSON)
        return resp, 413, None
    assert kind == "not_json"
    resp = await api.request("POST", "/vaults", data=json.dumps({"name": "x"}), headers={"Content-Type": "text/plain"})
    return resp, 415, ("header", "Content-Type")


KINDS = [
    "bad_field",
    "bad_query_parameter",
    "unknown_query_parameter",
    "no_token",
    "unknown_route",
    "method_not_allowed",
    "stale_etag",
    "no_if_match",
    "too_large",
    "not_json",
]


@pytest.mark.parametrize("kind", KINDS)
async def test_an_error_answer_is_ukos_api_error_with_its_target_type(api: Api, kind: str) -> None:
    resp, status, target = await _answer(api, kind)
    assert resp.status == status, await resp.text()
    doc = await error_of(resp)  # the exact UKO shape, trace == X-Correlation-Id
    err = doc["errors"][0]
    assert target_of(err) == target, err
    assert err["more_info"] == API + "/docs"
    for param in err["message_params"]:
        assert param in err["message"], err  # the params are values the message names


async def test_each_request_has_its_own_trace_sent_on_success_too(api: Api) -> None:
    first = await error_of(await api.request("GET", "/nothing-here"))
    second = await error_of(await api.request("GET", "/nothing-here"))
    assert first["trace"] != second["trace"]
    ok = await api.request("GET", "/vaults")
    assert ok.status == 200 and len(ok.headers["X-Correlation-Id"]) == 36


async def test_the_trace_is_in_the_log_line_of_the_error_answer(api: Api) -> None:
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        doc = await error_of(await api.request("GET", "/nothing-here"))
    lines = [e for e in logs if e["event"] == "api.error_answer"]
    assert lines and lines[0]["trace"] == doc["trace"] and lines[0]["status"] == 404


async def test_a_secret_field_is_not_echoed_in_message_params(api: Api) -> None:
    vault = await api.vault()
    body = {"vault": vault, "name": "k", "type": "aws_kms", "region": "us-east-1", "credentials": "sekrit-value"}
    resp = await api.request("POST", "/keystores", json=body)
    assert resp.status == 400, await resp.text()
    doc = await error_of(resp)
    assert "sekrit-value" not in json.dumps(doc)
    assert all(target_of(e) is None or target_of(e)[0] == "field" for e in doc["errors"])
