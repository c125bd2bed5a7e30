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


def test_the_rotation_interval_is_the_setting_keys_rotation_min_interval_seconds(cli: Cli) -> None:
    """Lowered (environment or --config), a second rotation comes sooner; within it, refused naming the setting;
    a bad value is refused when the settings load, naming the setting."""
    assert cli("init").code == 0
    cli.ok("vault", "create", "v")
    cli.ok(
        "keystore", "connect", "--vault", "v", "--name", "a", "--type", "aws_kms", "--region", "us-east-1",
        "--credentials-from-environment",
    )  # fmt: skip
    cli.ok("template", "create", "--vault", "v", "--name", "t", "--keystore", "a")
    cli.ok("key", "create", "--template", "t", "--label", "k", "--state", "active")

    no_limit = {"KEYORCH_KEYS__ROTATION_MIN_INTERVAL_SECONDS": "0"}
    assert cli.ok("key", "rotate", "k", env=no_limit)["current_version"] == 2
    assert cli.ok("key", "rotate", "k", env=no_limit)["current_version"] == 3  # at once: no limit

    ten_minutes = cli.workdir / "ten-minutes.yaml"
    ten_minutes.write_text("keys:\n  rotation_min_interval_seconds: 600\n", encoding="utf-8")
    refused = cli.fails(3, "--config", str(ten_minutes), "key", "rotate", "k")
    assert "at most once every 600 s (setting keys.rotation_min_interval_seconds)" in refused.err, refused.err
    assert "next allowed at" in refused.err
    default = cli.fails(3, "key", "rotate", "k")
    assert "at most once every 3600 s" in default.err
    assert [v["version"] for v in cli.ok("key", "versions", "k")["versions"]] == [1, 2, 3]

    for bad in ("-1", "soon", "86401"):
        wrong = cli.fails(2, "key", "rotate", "k", env={"KEYORCH_KEYS__ROTATION_MIN_INTERVAL_SECONDS": bad})
        assert wrong.err.startswith(
            "error: setting keys.rotation_min_interval_seconds (env KEYORCH_KEYS__ROTATION_MIN_INTERVAL_SECONDS) "
            f"is '{bad}'"
        ), wrong.err
        assert "from 0 to 86400" in wrong.err
    assert [v["version"] for v in cli.ok("key", "versions", "k")["versions"]] == [1, 2, 3]
