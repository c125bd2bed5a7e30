"""The API refuses the shared hostile names (tests/hostile_inputs.py) with the CLI's own check, and text no
store can hold (a NUL, an unpaired surrogate) in a path id, a query filter or a body as 400 naming the
field, before the store: the same answer on SQLite and on PostgreSQL (whose text cannot hold U+0000)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tests.api.conftest import API, Api, auth, error_of
from tests.hostile_inputs import HOSTILE_NAMES, UNSTORABLE


@pytest.fixture
def api_db_url(db_url: str) -> str:
    """Every test here runs on SQLite and on PostgreSQL."""
    return db_url


async def _counts(api: Api) -> dict[str, int]:
    found = {}
    for kind in ("vaults", "keystores", "templates", "managed_keys"):
        resp = await api.request("GET", f"/{kind}?limit=1000")
        assert resp.status == 200, await resp.text()
        found[kind] = len((await resp.json())[kind])
    return found


async def test_hostile_names_and_labels_are_refused_and_nothing_is_stored(api: Api) -> None:
    vault, template = await api.shared()
    keystore = await api.keystore(vault)
    before = await _counts(api)
    for name in HOSTILE_NAMES:
        bodies: dict[str, dict[str, Any]] = {
            "/vaults": {"name": name},
            "/keystores": {
                "vault": vault,
                "name": name,
                "type": "aws_kms",
                "region": "us-east-1",
                "credentials_from_environment": True,
            },
            "/templates": {"vault": vault, "name": name, "keystores": [keystore]},
            "/managed_keys": {"template": template, "label": name},
        }
        for path, body in bodies.items():
            resp = await api.request("POST", path, json=body)
            assert resp.status == 400, (path, name, await resp.text())
            err = (await error_of(resp))["errors"][0]
            assert err["code"] == "invalid_input" and "is not valid" in err["message"], (path, name, err)
    assert await _counts(api) == before


def _raw(path: str) -> Any:
    """A request target sent exactly as written (percent escapes included)."""
    from yarl import URL

    return URL(path, encoded=True)


@pytest.mark.parametrize("text", UNSTORABLE, ids=repr)
async def test_text_no_store_can_hold_is_bad_input_in_ids_filters_and_bodies(api: Api, text: str) -> None:
    vault, template = await api.shared()
    escaped = quote(text.encode("utf-8", "surrogatepass"), safe="")
    # aiohttp keeps a path's percent escape that is not UTF-8 as written and decodes a query's as U+FFFD,
    # so only a NUL reaches keyorch through the URL; a surrogate comes as a JSON escape
    targets = []
    if "\x00" in text:
        kinds = ("managed_keys", "vaults", "keystores", "templates")
        targets += [f"/{kind}/{escaped}" for kind in kinds] + [f"/managed_keys/{escaped}/status_in_keystores"]
        targets += [f"/{kind}?vault={escaped}" for kind in ("managed_keys", "keystores", "templates")]
    for target in targets:
        resp = await api.client.get(_raw(API + target), headers=auth("admin"))
        assert resp.status == 400, (target, await resp.text())
        err = (await error_of(resp))["errors"][0]
        assert err["code"] == "invalid_input", (target, err)
        assert "NUL" in err["message"] or "surrogate" in err["message"], (target, err)
    bodies: list[tuple[str, dict[str, Any], str]] = [
        ("/vaults", {"name": text}, "name"),
        ("/managed_keys", {"template": text, "label": "ok"}, "template"),
        ("/managed_keys", {"template": template, "label": "ok", "state": text}, "state"),
        ("/templates", {"vault": vault, "name": "t", "keystores": [text]}, "0"),
        ("/templates", {"vault": vault, "name": "t", "keystores": ["x"], "naming_scheme": "{label}" + text}, ""),
        ("/keystores", {"vault": text, "name": "k", "type": "aws_kms", "credentials_from_environment": True}, ""),
    ]
    for path, body, target in bodies:
        resp = await api.request("POST", path, json=body)
        assert resp.status == 400, (path, body, await resp.text())
        err = (await error_of(resp))["errors"][0]
        assert "NUL" in err["message"] or "surrogate" in err["message"], (path, err)
        assert target in err.get("target", {}).get("name", ""), (path, err)
    assert (await api.request("GET", f"/vaults/{vault}")).status == 200  # the store still answers
