"""A URL's user-info (``user:password@``) is never echoed: not by the CLI refusing a keystore endpoint, a
database URL or an endpoint setting, however broken the rest of the URL is."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.cli.conftest import Cli, World

USER, PASSWORD = "opsuser", "s3cr3t-Pw"
USERINFO = f"{USER}:{PASSWORD}@"
#: endpoints with user-info, refused for different reasons: scheme, credentials, a broken host or port,
#: plain http to a remote host, spaces and several "@" in the user-info, no scheme at all
ENDPOINTS = [
    f"ftp://{USERINFO}host.example",
    f"https://{USERINFO}kms.example.com",
    f"http://{USERINFO}example.com",
    f"http://{USERINFO}localhost:1",
    f"https://{USERINFO}[::1/x",
    f"https://{USERINFO}example.com:99999",
    f"https://{USERINFO}h.example:port/",
    f"https://{USER}:pa ss {PASSWORD}@h.example/",
    f"https://{USER}:{PASSWORD}@x@h.example/",
    f"{USERINFO}h.example",
]


def assert_hidden(text: str) -> None:
    assert PASSWORD not in text and USER not in text, text


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_keystore_connect_never_echoes_an_endpoints_userinfo(world: World, endpoint: str) -> None:
    for kind in ("aws_kms", "azure_key_vault"):
        args = [*world.connect_args(f"ui-{kind}", kind), "--credentials-from-environment"]
        args = [a for a in args if not a.startswith("https://kv-test")]
        if "--endpoint" in args:
            args.remove("--endpoint")
        result = world.cli.fails(2, *args, "--endpoint", endpoint)
        assert "endpoint" in result.err
        assert_hidden(result.err + result.out)


def test_keystore_update_never_echoes_an_endpoints_userinfo(world: World) -> None:
    keystore = world.keystores[0]
    for endpoint in ENDPOINTS:
        result = world.cli.fails(2, "keystore", "update", keystore["id"], "--endpoint", endpoint)
        assert_hidden(result.err + result.out)


@pytest.mark.parametrize("url", [f"ftp://{USERINFO}db/x", f"postgresql://{USERINFO}[::1/db", f"mysql://{USERINFO}db"])
def test_a_bad_database_url_is_named_without_its_userinfo(cli: Cli, tmp_path: Path, url: str) -> None:
    for how in ("--db", "env", "file"):
        config = tmp_path / "keyorch.yaml"
        config.write_text(f"database_url: '{url}'\n", encoding="utf-8")
        if how == "--db":
            result = cli("--db", url, "vault", "list", db=False)
        elif how == "env":
            result = cli("vault", "list", env={"KEYORCH_DATABASE_URL": url}, db=False)
        else:
            result = cli("--config", str(config), "vault", "list", db=False)
        assert result.code == 2, str(result)
        assert "database_url" in result.err and "***@" in result.err, str(result)
        assert_hidden(result.err + result.out)


def test_an_endpoint_setting_is_named_without_its_userinfo(cli: Cli) -> None:
    for endpoint in ENDPOINTS:
        value = '["' + endpoint.replace('"', "") + '"]'
        result = cli("vault", "list", env={"KEYORCH_ENVIRONMENT_CREDENTIALS__ENDPOINTS": value})
        assert result.code == 2, str(result)
        assert "environment_credentials.endpoints" in result.err
        assert_hidden(result.err + result.out)
