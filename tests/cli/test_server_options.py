"""`keyorch --server URL`: what is refused before any request, and TLS verification against a real HTTPS socket.

The HTTPS side is a few-line aiohttp handler (the daemon itself listens on plain HTTP behind its
ingress) with a certificate from a throw-away CA; it records what reached it, so a test can show a
refused connection sent nothing, and an accepted one sent the token.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from tests.cli.conftest import Cli

from keyorch.fakes.tls import generate_tls

TOKEN = "server-options-token-0123456789"
VAULT = {"id": "v-1", "name": "payments", "dual_auth": False, "created_at": None, "updated_at": None, "version": 1}


@dataclass
class HttpsApi:
    url: str
    ca_path: Path
    seen: list[str] = field(default_factory=list)  # the Authorization header of each request


@pytest.fixture(scope="module")
def https_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsApi]:
    folder = tmp_path_factory.mktemp("https-api")
    tls = generate_tls(["127.0.0.1", "localhost"])
    tls.write_ca(folder / "ca.pem")
    state: dict[str, Any] = {}
    started = threading.Event()

    async def vaults(request: web.Request) -> web.Response:
        state["api"].seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"vaults": [VAULT], "total_count": 1, "limit": 1000, "offset": 0})

    async def run() -> None:
        app = web.Application()
        app.router.add_get("/api/v4/vaults", vaults)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.server_context())
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        port = runner.addresses[0][1]
        state["api"] = HttpsApi(f"https://127.0.0.1:{port}", folder / "ca.pem")
        state["stop"] = lambda: loop.call_soon_threadsafe(stop.set)
        started.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    assert started.wait(30)
    try:
        yield state["api"]
    finally:
        state["stop"]()
        thread.join(30)


def _remote(cli: Cli, *args: str, token: str | None = TOKEN, **kwargs: Any) -> Any:
    env = {"KEYORCH_TOKEN": token} if token is not None else {}
    return cli(*args, db=False, env=env, **kwargs)


def test_what_is_refused_before_any_request(cli: Cli, https_api: HttpsApi) -> None:
    cases = [
        (["--server", "http://keyorch.example.com:8080", "vault", "list"], TOKEN, "in clear"),
        (["--server", "https://admin:hunter2@keyorch.example.com", "vault", "list"], TOKEN, "user name, password"),
        (["--server", "ftp://keyorch.example.com", "vault", "list"], TOKEN, "https://"),
        (["--server", https_api.url, "vault", "list"], None, "KEYORCH_TOKEN"),
        (["--server", https_api.url, "vault", "list"], "two words", "bearer token"),
        (["--server", https_api.url, "--user", "bob", "vault", "list"], TOKEN, "the bearer token says who you are"),
        (["--server", https_api.url, "--token-file", str(cli.workdir / "missing"), "vault", "list"], None, "cannot"),
    ]
    before = len(https_api.seen)
    for args, token, words in cases:
        result = _remote(cli, *args, token=token)
        assert result.code == 2 and not result.out, str(result)
        assert result.err.startswith("error: ") and result.err.count("\n") == 1 and words in result.err, str(result)
        assert "hunter2" not in result.err and TOKEN not in result.err
    assert len(https_api.seen) == before  # nothing reached the server


def test_tls_is_verified_and_a_private_ca_can_be_given(cli: Cli, https_api: HttpsApi) -> None:
    before = len(https_api.seen)
    untrusted = _remote(cli, "--server", https_api.url, "vault", "list")
    assert untrusted.code == 2 and "TLS" in untrusted.err and "--server-ca-file" in untrusted.err, str(untrusted)
    assert len(https_api.seen) == before  # the handshake failed: no request, no token

    token_file = cli.workdir / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o644)
    trusted = _remote(
        cli,
        "--server",
        https_api.url,
        "--server-ca-file",
        str(https_api.ca_path),
        "--token-file",
        str(token_file),
        "vault",
        "list",
        token=None,
    )
    assert trusted.code == 0, str(trusted)
    assert trusted.json() == [VAULT]
    assert "can be read by other users (mode 0644)" in trusted.err and "chmod 600" in trusted.err
    assert TOKEN not in trusted.err
    assert https_api.seen[before:] == [f"Bearer {TOKEN}"]

    token_file.chmod(0o600)
    server = ["--server", https_api.url, "--server-ca-file", str(https_api.ca_path)]
    quiet = _remote(cli, *server, "--token-file", str(token_file), "vault", "list", token=None)
    assert quiet.code == 0 and not quiet.err, str(quiet)
