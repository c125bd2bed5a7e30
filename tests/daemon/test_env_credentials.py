"""Credentials from the daemon's environment are the operator's (issue 12, point 3), through `keyorch --server`.

The daemon runs with an IBM API key in its environment (the Key Protect fake's) and the operator's
setting ``environment_credentials`` (vault ``main``; the fake's endpoint allow-listed, as the fakes are
not official endpoints). A vault administrator (alice) cannot point those credentials at an endpoint of
her own — a request-recording handler proves nothing reached it — nor use them in a vault the operator
did not list, nor move a keystore's endpoint without its credentials; what the operator allowed works
end to end against the fake.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from keyorch.fakes.registry import FakeCluster, connect_args
from tests.daemon.cli_server import Served, served_world
from tests.e2e.harness import ibm_state

KP = "ibm_key_protect"


@pytest.fixture
async def attacker() -> AsyncIterator[tuple[str, list[str]]]:
    """An endpoint of the vault administrator's own: its URL and the Authorization header of every request."""
    seen: list[str] = []

    async def capture(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"metadata": {"collectionTotal": 0}, "resources": []})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", capture)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), seen
    finally:
        await server.close()


def _operator(cluster: FakeCluster, credentials: dict[str, Path]) -> tuple[Mapping[str, Any], Mapping[str, str]]:
    ibm = json.loads(credentials[KP].read_text(encoding="utf-8"))
    settings = {"environment_credentials": {"vaults": ["main"], "endpoints": [cluster[KP].url]}}
    return settings, {"IBMCLOUD_API_KEY": ibm["apikey"], "IBMCLOUD_IAM_API_ENDPOINT": ibm["iam_url"]}


def _from_environment(served: Served, endpoint: str | None = None) -> list[str]:
    """The fake's `keystore connect` options, with credentials from the environment instead of its file."""
    args = connect_args(KP, served.cluster[KP], served.credentials[KP])
    at = args.index("--credentials-file")
    args[at : at + 2] = ["--credentials-from-environment"]
    if endpoint is not None:
        args[args.index("--endpoint") + 1] = endpoint
    return args


async def test_environment_credentials_go_only_where_the_operator_allows(
    tmp_path: Path, attacker: tuple[str, list[str]]
) -> None:
    attacker_url, captured = attacker
    async with served_world(tmp_path, configure=_operator) as served:
        for vault in ("main", "other"):
            (await served.api.api("POST", "/vaults", json_body={"name": vault})).ok(201)
        alice = served.remote("alice")

        to_attacker = _from_environment(served, attacker_url)
        grab = await alice("keystore", "connect", "--vault", "main", "--name", "grab", *to_attacker)
        assert grab.code == 3 and not grab.out, grab
        assert "environment_credentials.endpoints" in grab.err and attacker_url.removeprefix("http://") in grab.err
        elsewhere = await alice("keystore", "connect", "--vault", "other", "--name", "kp", *_from_environment(served))
        assert elsewhere.code == 3 and "vault other" in elsewhere.err, elsewhere
        assert "environment_credentials.vaults" in elsewhere.err
        direct = await served.direct("keystore", "connect", "--vault", "other", "--name", "grab", *to_attacker)
        assert direct.code == 3 and "environment_credentials.endpoints" in direct.err, direct  # the operator too

        # what the operator allowed: the daemon's own API key, against the fake, end to end
        kp = await alice.ok("keystore", "connect", "--vault", "main", "--name", "kp", *_from_environment(served))
        assert kp["credentials"] == "environment"
        await alice.ok("template", "create", "--vault", "main", "--name", "t", "--keystore", "kp")
        key = await alice.ok("key", "create", "--template", "t", "--label", "k1")
        await served.api.activate(key["id"])
        synced = await alice("sync-key", "k1")
        assert synced.code == 0, synced
        assert ibm_state(served.cluster[KP].fake.state_snapshot(), key["id"]) == 1  # active in Key Protect

        moved = await alice("keystore", "update", "kp", "--endpoint", attacker_url)
        assert moved.code == 3 and "environment_credentials.endpoints" in moved.err, moved
        aws = connect_args("aws_kms", served.cluster["aws_kms"], served.credentials["aws_kms"])
        await alice.ok("keystore", "connect", "--vault", "main", "--name", "aws", *aws)
        stored = await alice("keystore", "update", "aws", "--endpoint", attacker_url)
        assert stored.code == 3 and "give its credentials again" in stored.err, stored
        assert (await alice.ok("keystore", "show", "aws"))["settings"]["endpoint"] == served.cluster["aws_kms"].url

    assert captured == [], "a request reached the vault administrator's endpoint"
