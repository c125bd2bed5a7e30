"""`keyorch template update/archive/unarchive/delete` and `keyorch key update-from-template` as a user runs them
(subprocesses on a real SQLite file): a distribution change marks the keys unaligned, the dry run changes
nothing, the realignment adds the keystore; refusals exit with the refusal's code and name what blocks."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Cli


def test_a_template_change_realigns_its_keys_on_request(cli: Cli) -> None:
    assert cli("init").code == 0
    vault = cli.ok("vault", "create", "v")
    first = cli.ok(*_connect("a"), "--credentials-from-environment")
    second = cli.ok(*_connect("b"), "--credentials-from-environment")
    made = cli.ok("template", "create", "--vault", "v", "--name", "t", "--keystore", "a")
    key = cli.ok("key", "create", "--template", "t", "--label", "k1", "--state", "active")
    assert key["template"]["alignment_status"] == "aligned"

    changed = cli.ok("template", "update", "t", "--keystore", "a", "--keystore", "b", "--description", "both")
    assert [k["id"] for k in changed["keystores"]] == [first["id"], second["id"]]
    assert changed["version"] == made["version"] + 1 and changed["description"] == "both"
    shown = cli.ok("key", "show", "k1")
    assert shown["template"]["alignment_status"] == "unaligned"

    preview = cli.ok("key", "update-from-template", "k1", "--dry-run")
    assert [c["description"] for c in preview["changes"]] == [f"add keystore b ({second['id']})"]
    assert cli.ok("key", "show", "k1") == shown  # the dry run changed nothing
    text = cli("key", "update-from-template", "k1", "--dry-run", output_json=False)
    assert text.code == 0 and "would add keystore b" in text.out

    done = cli.ok("key", "update-from-template", "k1")
    assert done["template"]["alignment_status"] == "aligned"
    assert sorted(t["keystore"] for t in done["targets"]) == sorted([first["id"], second["id"]])

    cli.ok("template", "update", "t", "--keystore", "a")
    refused = cli.fails(3, "key", "update-from-template", "k1")
    assert "remove keystore b" in refused.err and "active" in refused.err
    assert vault["id"] == cli.ok("key", "show", "k1")["vault"]["id"]


def test_archive_unarchive_and_delete(cli: Cli) -> None:
    assert cli("init").code == 0
    cli.ok("vault", "create", "v")
    cli.ok(*_connect("a"), "--credentials-from-environment")
    cli.ok("template", "create", "--vault", "v", "--name", "t", "--keystore", "a")
    assert cli.ok("template", "archive", "t")["state"] == "archived"
    refused = cli.fails(3, "key", "create", "--template", "t", "--label", "k")
    assert "archived" in refused.err
    assert cli.ok("template", "unarchive", "t")["state"] == "unarchived"
    cli.ok("key", "create", "--template", "t", "--label", "k")
    blocked = cli.fails(3, "template", "delete", "t")
    assert "1 managed key" in blocked.err
    cli.ok("key", "destroy", "k")
    bad = cli.fails(2, "template", "update", "t", "--activation-date", "soon")
    assert "key.activation_date" in bad.err and "soon" in bad.err


def _connect(name: str) -> list[str]:
    return ["keystore", "connect", "--vault", "v", "--name", name, "--type", "aws_kms", "--region", "us-east-1"]
