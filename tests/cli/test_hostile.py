"""Nothing a user can type produces a traceback: garbled invocations exit 2 or 3 with one error on stderr."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Cli, World


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("hostile-files")
    contents: dict[str, bytes] = {
        "binary": b"\x00\xff\xfe\x01\x80binary",
        "list": b"[1, 2, 3]\n",
        "missing": b'{"access_key_id": "AKIAEXAMPLE"}',
        "good": json.dumps({"access_key_id": "AKIAEXAMPLE", "secret_access_key": "s3cr3t"}).encode(),
        "not_yaml": b"log: [unclosed\n  - {\n",
        "unknown_setting": b"no_such_setting: 1\n",
    }
    paths = {name: root / f"{name}.dat" for name in contents}
    for name, data in contents.items():
        paths[name].write_bytes(data)
    (root / "a-directory").mkdir()
    return {**{name: str(p) for name, p in paths.items()}, "dir": str(root / "a-directory"), "root": str(root)}


def _cases(world: World, files: dict[str, str]) -> list[tuple[list[str], dict[str, Any]]]:
    vault = world.vault["name"]
    conn = world.connect_args("h-ks")
    tmpl = ["template", "create", "--vault", vault, "--name", "h-t", "--keystore", "ks-aws"]
    azure = ["keystore", "connect", "--vault", vault, "--name", "h-az", "--type", "azure_key_vault"]
    env_creds = "--credentials-from-environment"
    no_db = {"db": False}
    cases: list[tuple[list[str], dict[str, Any]]] = [
        # usage errors
        (["--bogus-option", "vault", "list"], {}),
        ([], {}),
        (["vault", "create"], {}),
        (["key", "create", "--label", "x"], {}),
        (["--output", "xml", "vault", "list"], {}),
        (["key", "list", "--state", "compromised-ish"], {}),
        ([*tmpl, "--size", "abc"], {}),
        (["keystore", "connect", "--vault", vault, "--name", "x", "--type", "oracle_kms"], {}),
        (["audit", "list", "--limit", "0"], {}),
        # validation and unknown ids
        (["vault", "create", ""], {}),
        (["vault", "create", "ünïcödé-✓"], {}),
        (["key", "create", "--template", "tmpl", "--label", "a" * 5000], {}),
        (["key", "destroy", "nope", "--if-version", "99999999999999999999999"], {}),
        ([*tmpl, "--size", "99999999999999999999999"], {}),
        ([*tmpl, "--naming-scheme", "{label:>99999999}"], {}),
        ([*tmpl, "--naming-scheme", "{label"], {}),
        ([*azure, "--endpoint", "https://[::1", env_creds], {}),
        ([*azure, "--endpoint", "https://kv.example.com:99999", env_creds], {}),
        ([*conn, "--project", "my-project-1", env_creds], {}),
        ([*conn, "--credentials-file", files["binary"]], {}),
        ([*conn, "--credentials-file", files["list"]], {}),
        ([*conn, "--credentials-file", files["missing"]], {}),
        ([*conn, "--credentials-file", files["dir"]], {}),
        ([*conn, "--credentials-file", files["good"], env_creds], {}),
        ([*conn], {}),
        ([*conn, env_creds, "--ca-file", files["binary"]], {}),
        # database URLs
        (["--db", "mysql://x", "vault", "list"], no_db),
        (["--db", "sqlite:///nonexistent-dir/x.db", "vault", "list"], no_db),
        (["--db", "postgresql://[::1", "vault", "list"], no_db),
        (["--db", "sqlite:///%00", "init"], no_db),
        (["--db", f"sqlite:///{files['binary']}", "vault", "list"], no_db),
        # settings files and environment
        (["--config", files["not_yaml"], "vault", "list"], {}),
        (["--config", files["unknown_setting"], "vault", "list"], {}),
        (["--config", files["binary"], "vault", "list"], {}),
        (["vault", "list"], {"env": {"KEYORCH_MASTER_KEY_FILE": files["dir"]}, "master_key": False}),
        (["vault", "list"], {"env": {"KEYORCH_MASTER_KEY_FILE": files["binary"]}, "master_key": False}),
        ([*conn, "--credentials-file", files["good"]], {"env": {"KEYORCH_MASTER_KEY": "not base64!"}}),
    ]
    return cases


def test_nothing_a_user_types_produces_a_traceback(world: World, files: dict[str, str]) -> None:
    cli: Cli = world.cli
    cases = _cases(world, files)
    results = cli.many_with(cases)
    assert len(results) == len(cases)
    for result in results:  # Cli() itself already asserted there is no traceback
        assert result.code in (2, 3), str(result)
        assert result.err.strip(), f"no message on stderr:\n{result}"
        assert not result.out.strip(), f"an error printed on stdout:\n{result}"

    # nothing was created, and the shared database still works
    names = {v["name"] for v in cli.ok("vault", "list")}
    assert world.vault["name"] in names and not any("✓" in n for n in names)
    assert not (cli.workdir / "nonexistent-dir").exists()
