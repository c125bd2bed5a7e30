"""The API never echoes a keystore endpoint's user-info (``user:password@``), however the endpoint is broken."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.conftest import Api, error_of, target_of

USER, PASSWORD = "opsuser", "s3cr3t-Pw"
ENDPOINTS: list[Any] = [
    f"ftp://{USER}:{PASSWORD}@host.example",
    f"https://{USER}:{PASSWORD}@kms.example.com",
    f"http://{USER}:{PASSWORD}@example.com",
    f"https://{USER}:{PASSWORD}@[::1/x",
    f"https://{USER}:{PASSWORD}@example.com:99999",
    f"https://{USER}:pa ss {PASSWORD}@h.example/",
    f"https://{USER}:{PASSWORD}@h.example/\x00",
    f"{USER}:{PASSWORD}@h.example",
    [f"https://{USER}:{PASSWORD}@h.example"],  # not even a string: the type error shows the value
]


def assert_hidden(doc: dict[str, Any]) -> None:
    text = json.dumps(doc)
    assert PASSWORD not in text and USER not in text, text


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_connect_and_update_never_echo_an_endpoints_userinfo(api: Api, endpoint: Any) -> None:
    vault, _ = await api.shared()
    body = {
        "vault": vault,
        "name": api.unique("ui"),
        "type": "azure_key_vault",
        "endpoint": endpoint,
        "credentials_from_environment": True,
    }
    err = await error_of(await api.request("POST", "/keystores", json=body))
    assert err["status_code"] == 400 and target_of(err["errors"][0]) == ("field", "endpoint"), err
    assert_hidden(err)

    keystore = await api.keystore(vault)
    etag = await api.etag(f"/keystores/{keystore}")
    update = await api.request(
        "PATCH", f"/keystores/{keystore}", json={"endpoint": endpoint}, headers={"If-Match": etag}
    )
    err = await error_of(update)
    assert err["status_code"] == 400, err
    assert_hidden(err)
