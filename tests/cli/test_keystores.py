"""Keystores and vaults through the CLI: disconnect rule, reconnect, empty-vault rule, endpoints, credentials."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conftest import Cli, World

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYzz-SAUSAGE-42"
TOKEN = "FQoGZXIvYXdzEJr-session-token-MANGO-77"


def _targets_by_name(key: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["keystore_name"]: t for t in key["targets"]}


def test_disconnect_is_refused_while_a_live_key_targets_the_keystore(world: World) -> None:
    cli = world.cli
    extra = cli.ok(*world.connect_args("ks-extra", "google_kms"), "--credentials-from-environment")
    tmpl = cli.ok(
        "template", "create", "--vault", world.vault["id"], "--name", "t-extra", "--keystore", "ks-extra",
        "--keystore", "ks-aws", "--state", "active",
    )  # fmt: skip
    live = cli.ok("key", "create", "--template", "t-extra", "--label", "disc-live")
    cli.ok("key", "create", "--template", "t-extra", "--label", "disc-pre", "--state", "pre_active")

    refused = cli.fails(3, "keystore", "disconnect", "ks-extra")
    assert "disc-live" in refused.err and live["id"] in refused.err  # names the key: label and id
    assert "disc-pre" not in refused.err  # a pre-active key does not block

    cli.ok("key", "deactivate", live["id"])
    still = cli.fails(3, "keystore", "disconnect", extra["id"])  # deactivated blocks as well
    assert "disc-live" in still.err and "deactivated" in still.err
    cli.ok("key", "destroy", live["id"])

    # only the template (and a destroyed and a pre-active key) remain: a template does not block
    gone = cli.ok("keystore", "disconnect", extra["id"], "--if-version", str(extra["version"]), user="olga")
    assert gone["status"] != "connected"

    keys = {k["label"]: k for k in cli.ok("key", "list", "--include-destroyed")}
    for label in ("disc-live", "disc-pre"):
        target = _targets_by_name(keys[label])["ks-extra"]
        assert (target["status"], target["reason"]) == ("removed", "target_keystore_removed_by_user")
        assert _targets_by_name(keys[label])["ks-aws"]["status"] != "removed"
    shown = cli.ok("template", "show", tmpl["id"])
    assert [k["name"] for k in shown["keystores"]] == ["ks-aws"]
    assert "ks-extra" not in {k["name"] for k in cli.ok("keystore", "list")}

    again = cli.ok(*world.connect_args("ks-extra", "google_kms"), "--credentials-from-environment")
    assert again["id"] != extra["id"] and again["status"] == "connected"
    records = [r for r in cli.audit() if r["action"] == "keystore.disconnect"]
    assert [(r["outcome"], r["user"]) for r in records][-3:] == [
        ("refused", "alice"),
        ("refused", "alice"),
        ("accepted", "olga"),
    ]
    assert records[-1]["object_id"] == extra["id"] and "disc-live" in records[-2]["detail"]


def test_a_vault_is_deleted_only_when_empty(world: World) -> None:
    cli = world.cli
    refused = cli.fails(3, "vault", "delete", world.vault["name"])
    assert "empty" in refused.err
    assert cli.ok("vault", "show", world.vault["id"])["version"] == world.vault["version"]

    empty = cli.ok("vault", "create", "v-empty")
    cli.fails(3, "vault", "delete", "v-empty", "--if-version", str(empty["version"] + 1))
    assert cli.ok("vault", "delete", "v-empty", "--if-version", str(empty["version"]))["id"] == empty["id"]
    names = {v["name"] for v in cli.ok("vault", "list")}
    assert world.vault["name"] in names and "v-empty" not in names
    actions = [(r["action"], r["outcome"]) for r in cli.audit(empty["id"])]
    # the refused delete (a stale --if-version) is filed under the vault's id too, with its accepted changes
    assert actions == [("vault.create", "accepted"), ("vault.delete", "refused"), ("vault.delete", "accepted")]


def test_plain_http_endpoints(world: World) -> None:
    vault = world.vault["name"]

    def azure(name: str, endpoint: str, *flags: str) -> list[str]:
        return [
            "keystore", "connect", "--vault", vault, "--name", name, "--type", "azure_key_vault",
            "--endpoint", endpoint, "--credentials-from-environment", *flags,
        ]  # fmt: skip

    refused = world.cli.many(
        [
            azure("h1", "http://127.0.0.1:8443"),
            azure("h2", "http://kv.example.com", "--allow-insecure-http"),
            azure("h3", "http://10.1.2.3:8080", "--allow-insecure-http"),
        ]
    )
    for result in refused:
        assert result.code == 2 and "http" in result.err and not result.out, str(result)
    assert "--allow-insecure-http" in refused[0].err
    assert "loopback" in refused[1].err
    # environment credentials go only to official endpoints, unless the operator lists one
    loopback = azure("h-loop", "http://127.0.0.1:8443/", "--allow-insecure-http")
    unlisted = world.cli.fails(3, *loopback)
    assert "environment_credentials.endpoints" in unlisted.err and "http://127.0.0.1:8443" in unlisted.err
    listed = {"KEYORCH_ENVIRONMENT_CREDENTIALS__ENDPOINTS": '["http://127.0.0.1:8443"]'}
    allowed = world.cli.ok(*loopback, env=listed)
    assert allowed["settings"]["endpoint"] == "http://127.0.0.1:8443"


def _write_credentials(directory: Path) -> Path:
    path = directory / "aws-creds.json"
    path.write_text(json.dumps({"access_key_id": "AKIAEXAMPLE", "secret_access_key": SECRET, "session_token": TOKEN}))
    return path


def test_without_a_master_key_only_environment_credentials_connect(cli: Cli, tmp_path: Path) -> None:
    """A deployment that never configured a master key: stored credentials are refused, clearly."""
    creds = str(_write_credentials(tmp_path))
    assert cli("init", master_key=False).code == 0
    cli.ok("vault", "create", "v-nokey", master_key=False)
    connect = ["keystore", "connect", "--vault", "v-nokey", "--type", "aws_kms", "--region", "us-east-1"]
    no_key = cli.fails(2, *connect, "--name", "c-file", "--credentials-file", creds, master_key=False)
    assert "master key" in no_key.err and "--credentials-from-environment" in no_key.err
    assert SECRET not in no_key.err
    env_only = cli.ok(*connect, "--name", "c-env", "--credentials-from-environment", master_key=False)
    assert env_only["credentials"] == "environment"
    assert [k["name"] for k in cli.ok("keystore", "list", master_key=False)] == ["c-env"]


def test_stored_credentials_never_show(world: World, tmp_path: Path) -> None:
    cli = world.cli
    creds = str(_write_credentials(tmp_path))
    stored = cli.ok(*world.connect_args("c-stored"), "--credentials-file", creds)
    assert stored["credentials"] == "stored"
    reads = cli.many_with(
        [
            (["keystore", "show", "c-stored"], {}),
            (["keystore", "show", "c-stored"], {"output_json": False}),
            (["keystore", "list"], {"output_json": False}),
            (["audit", "list"], {}),
            (["audit", "list"], {"output_json": False}),
        ]
    )
    outputs = [json.dumps(stored), *(r.out for r in reads)]
    assert "c-stored" in outputs[1] and "c-stored" in outputs[4]
    _assert_no_secret(outputs, cli)


def _assert_no_secret(outputs: list[str], cli: Cli) -> None:
    for text in outputs:
        assert SECRET not in text and TOKEN not in text and SECRET[:12] not in text
    files = [p for p in cli.db_path.parent.iterdir() if p.name.startswith(cli.db_path.name)]
    assert cli.db_path in files
    for file in files:  # the database, its WAL and shared-memory files
        raw = file.read_bytes()
        for needle in (SECRET, TOKEN, "SAUSAGE", "MANGO"):
            assert needle.encode() not in raw, f"{needle} in {file.name} as plaintext"
            assert needle.encode("utf-16-le") not in raw


def test_add_takes_uko_groups_description_and_location(world: World) -> None:
    cli = world.cli
    args = world.connect_args("ks-grouped", "aws_kms")
    args[1] = "add"  # UKO's word for connecting one
    made = cli.ok(
        *args, "--credentials-from-environment", "--group", "payments", "--group", "eu", "--description",
        "cards in Frankfurt", "--location", "eu-central-1 (Frankfurt)",
    )  # fmt: skip
    assert (made["groups"], made["description"], made["location"]) == (
        ["payments", "eu"],
        "cards in Frankfurt",
        "eu-central-1 (Frankfurt)",
    )
    assert made["created_by"] == made["updated_by"] == "alice"
    assert cli.ok("keystore", "show", made["id"])["groups"] == ["payments", "eu"]

    # a Google keystore's --location is its Cloud KMS location, as before (and so also where it is)
    google = cli.ok(*world.connect_args("ks-g-old", "google_kms"), "--credentials-from-environment")
    assert google["location"] == "global" and google["settings"]["location"] == "global"
    google_args = [a for a in world.connect_args("ks-g-new", "google_kms") if a not in ("--location", "global")]
    newer = cli.ok(
        *google_args, "--google-location", "europe-west3", "--location", "Frankfurt", "--credentials-from-environment"
    )
    assert newer["location"] == "Frankfurt" and newer["settings"]["location"] == "europe-west3"

    for bad, says in (
        (["--group", "no spaces"], "group 'no spaces' is not valid"),
        (["--group", "a", "--group", "a"], "group 'a' is listed twice"),
        (["--location", "two\nlines"], "line break"),
        (["--google-location", "europe-west3"], "google_location does not apply"),
    ):
        refused = cli.fails(2, *world.connect_args("ks-bad", "aws_kms"), "--credentials-from-environment", *bad)
        assert says in refused.err, refused.err
    assert "ks-bad" not in {k["name"] for k in cli.ok("keystore", "list")}
