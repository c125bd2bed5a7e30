"""`keyorch key rotate` and `keyorch key versions` as a user runs them (subprocesses, a real SQLite file)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Cli


def test_rotate_and_versions(cli: Cli) -> None:
    assert cli("init").code == 0
    cli.ok("vault", "create", "v")
    store = cli.ok(
        "keystore", "connect", "--vault", "v", "--name", "a", "--type", "aws_kms", "--region", "us-east-1",
        "--credentials-from-environment",
    )  # fmt: skip
    cli.ok("template", "create", "--vault", "v", "--name", "t", "--keystore", "a")
    cli.ok("key", "create", "--template", "t", "--label", "k", "--state", "active")
    cli.ok("key", "create", "--template", "t", "--label", "p")

    rotated = cli.ok("key", "rotate", "k")
    assert rotated["current_version"] == 2 and "rotated_at" in rotated
    versions = cli.ok("key", "versions", "k")
    assert [(v["version"], v["current"]) for v in versions["versions"]] == [(1, False), (2, True)]
    assert [k["keystore"]["id"] for k in versions["versions"][0]["keystores"]] == [store["id"]]
    table = cli("key", "versions", "k", output_json=False)
    assert table.code == 0 and "versions of k" in table.out

    again = cli.fails(3, "key", "rotate", "k")
    assert "at most once every 3600 s" in again.err
    waiting = cli.fails(3, "key", "rotate", "p")
    assert "rotate is allowed only from active" in waiting.err
