"""`keyorch audit list --object REF`: REF is an id or a unique name (a key's label), like every other command."""

from __future__ import annotations

from tests.cli.conftest import Cli, build_world


def _actions(records: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(r["action"], r["outcome"]) for r in records]


def test_object_by_name_or_label_finds_the_same_records_as_by_id(cli: Cli) -> None:
    world = build_world(cli)
    key = world.new_key("orders")
    cli.ok("key", "deactivate", "orders")
    assert cli("key", "destroy", "orders", "--if-version", "999").code == 3  # refused, audited under the key

    by_label, by_id = cli.audit("orders"), cli.audit(key["id"])
    assert by_label == by_id
    assert _actions(by_label) == [
        ("key.create", "accepted"),
        ("key.deactivate", "accepted"),
        ("key.destroy", "refused"),
    ]
    assert {r["object_id"] for r in by_label} == {key["id"]}

    vault = world.vault
    assert cli.audit(vault["name"]) == cli.audit(vault["id"])
    assert _actions(cli.audit(vault["name"])) == [("vault.create", "accepted")]
    keystore = world.keystores[0]
    assert _actions(cli.audit(keystore["name"])) == [("keystore.connect", "accepted")]
    assert _actions(cli.audit(world.template["name"])) == [("template.create", "accepted")]


def test_a_removed_objects_records_are_found_by_its_id_not_its_old_name(cli: Cli) -> None:
    assert cli("init").code == 0
    vault = cli.ok("vault", "create", "short-lived")
    cli.ok("vault", "delete", "short-lived")
    assert _actions(cli.audit(vault["id"])) == [("vault.create", "accepted"), ("vault.delete", "accepted")]
    gone = cli.fails(2, "audit", "list", "--object", "short-lived")
    assert "'short-lived'" in gone.err and "vault, keystore, template or key" in gone.err


def test_unknown_or_ambiguous_object_is_bad_input(cli: Cli) -> None:
    world = build_world(cli)
    unknown = cli.fails(2, "audit", "list", "--object", "no-such-thing")
    assert unknown.err.count("\n") == 1 and "'no-such-thing'" in unknown.err
    # a template named like the vault: the name names two objects, the id says which
    cli.ok(
        "template",
        "create",
        "--vault",
        world.vault["name"],
        "--name",
        world.vault["name"],
        "--keystore",
        world.keystores[0]["name"],
        "--naming-scheme",
        "X-{label}",
    )
    both = cli.fails(2, "audit", "list", "--object", world.vault["name"])
    assert "names 2 objects" in both.err and world.vault["id"] in both.err and "give the id" in both.err
    assert _actions(cli.audit(world.vault["id"])) == [("vault.create", "accepted")]
