"""Managed keys through the CLI: the allowed-actions table, versions, listing, JSON shape, audit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conftest import World

KEY_FIELDS = {"id", "label", "vault", "template", "state", "state_code", "version", "out_of_sync", "targets"}
TARGET_FIELDS = {
    "keystore",
    "keystore_name",
    "status",
    "sync_flag",
    "reason",
    "key_id_in_keystore",
    "pending_destruction_until",
}
STATE_CODES = {"pre_activation": 0, "active": 1, "deactivated": 3, "destroyed": 5}


def _check_key_doc(world: World, key: dict[str, Any], label: str, state: str) -> None:
    assert key.keys() >= KEY_FIELDS, key
    assert key["label"] == label
    assert key["vault"]["id"] == world.vault["id"]
    assert key["template"]["id"] == world.template["id"]
    assert (key["state"], key["state_code"]) == (state, STATE_CODES[state])
    assert isinstance(key["version"], int)
    assert isinstance(key["out_of_sync"], bool)
    assert len(key["targets"]) == len(world.keystores)
    for target in key["targets"]:
        assert target.keys() >= TARGET_FIELDS, target
    assert {t["keystore"] for t in key["targets"]} == {ks["id"] for ks in world.keystores}
    assert {t["keystore_name"] for t in key["targets"]} == {ks["name"] for ks in world.keystores}


def test_destroy_of_an_active_key_is_refused_and_changes_nothing(world: World) -> None:
    cli = world.cli
    key = world.new_key("k-active")
    _check_key_doc(world, key, "k-active", "active")
    before = cli.ok("key", "show", key["id"])

    refused = cli.fails(3, "key", "destroy", key["id"])
    assert "deactivate" in refused.err and key["id"] in refused.err
    cli.fails(3, "key", "remove", key["id"])  # remove only when destroyed

    after = cli.ok("key", "show", "k-active")  # by label, too
    assert after == before
    assert after["version"] == key["version"]
    records = cli.audit(key["id"])
    assert [(r["action"], r["outcome"]) for r in records] == [
        ("key.create", "accepted"),
        ("key.destroy", "refused"),
        ("key.remove", "refused"),
    ]
    assert all(r["user"] == "alice" for r in records)
    assert "deactivate" in records[1]["detail"]


def test_full_lifecycle_with_versions_and_audit(world: World) -> None:
    cli = world.cli
    key = world.new_key("k-life", state="pre_active")
    _check_key_doc(world, key, "k-life", "pre_activation")
    assert key["out_of_sync"] is False or all(t["sync_flag"] for t in key["targets"])

    activated = cli.ok("key", "activate", key["id"], "--if-version", str(key["version"]), user="bob")
    _check_key_doc(world, activated, "k-life", "active")
    assert activated["version"] > key["version"]

    stale = cli.fails(3, "key", "deactivate", key["id"], "--if-version", str(key["version"]))
    assert "version" in stale.err
    table = cli("key", "show", key["id"], output_json=False)  # the table shows the key and its targets
    assert table.code == 0 and "k-life" in table.out and "ks-aws" in table.out and "active" in table.out

    deactivated = cli.ok("key", "deactivate", key["id"], user="carol")
    reactivated = cli.ok("key", "reactivate", key["id"], user="dave")
    assert (deactivated["state"], reactivated["state"]) == ("deactivated", "active")
    cli.ok("key", "deactivate", key["id"], user="erin")
    destroyed = cli.ok("key", "destroy", key["id"], user="frank")
    _check_key_doc(world, destroyed, "k-life", "destroyed")
    cli.fails(3, "key", "reactivate", key["id"])

    # no reconciler has run since the destroy: no keystore has confirmed it, so it stays in the vault
    # (removing it now could leave key material alive in a keystore with nothing tracking it)
    refused = cli.fails(3, "key", "remove", key["id"], "--if-version", str(destroyed["version"]), user="gina")
    assert "ks-aws has not confirmed the destruction" in refused.err and "ks-ibm" in refused.err
    cli.ok("key", "show", key["id"])

    records = cli.audit(key["id"])
    accepted = [(r["action"], r["user"]) for r in records if r["outcome"] == "accepted"]
    assert accepted == [
        ("key.create", "alice"),
        ("key.activate", "bob"),
        ("key.deactivate", "carol"),
        ("key.reactivate", "dave"),
        ("key.deactivate", "erin"),
        ("key.destroy", "frank"),
    ]
    refusals = [r["action"] for r in records if r["outcome"] == "refused"]
    assert refusals == ["key.deactivate", "key.reactivate", "key.remove"]
    for record in records:
        assert record["at"] and record["object_id"] == key["id"]
        if record["outcome"] == "accepted" and record["action"] != "key.create":
            assert record["before"]["state"] != record["after"]["state"]


def test_list_filters(world: World) -> None:
    cli = world.cli
    pre = world.new_key("f-pre", state="pre_active")
    act = world.new_key("f-act")
    gone = world.new_key("f-gone", state="pre_active")
    cli.ok("key", "destroy", gone["id"])

    reads = cli.many(
        [
            ["key", "list"],
            ["key", "list", "--include-destroyed"],
            ["key", "list", "--state", "pre_active"],
            ["key", "list", "--vault", world.vault["name"]],
            ["key", "list", "--out-of-sync"],
        ]
    )
    default, everything, only_pre, by_vault, out_of_sync = (r.json() for r in reads)
    listed = {k["label"]: k for k in default}
    assert {"f-pre", "f-act"} <= listed.keys() and "f-gone" not in listed
    for listed_key in listed.values():
        assert listed_key.keys() >= KEY_FIELDS
    assert {"f-pre", "f-act", "f-gone"} <= {k["label"] for k in everything}
    assert pre["id"] in {k["id"] for k in only_pre} and {k["state"] for k in only_pre} == {"pre_activation"}
    assert act["id"] not in {k["id"] for k in only_pre}
    assert {"f-pre", "f-act"} <= {k["label"] for k in by_vault}
    assert all(k["vault"]["id"] == world.vault["id"] for k in by_vault)
    assert all(k["out_of_sync"] for k in out_of_sync)
    assert {k["id"] for k in out_of_sync} == {k["id"] for k in listed.values() if k["out_of_sync"]}


def test_unknown_ids_and_duplicate_names(world: World) -> None:
    cli = world.cli
    results = cli.many(
        [
            ["key", "show", "00000000-0000-0000-0000-000000000000"],
            ["keystore", "disconnect", "nope"],
            ["template", "show", "nope"],
            ["key", "list", "--vault", "nope"],
            ["vault", "create", world.vault["name"]],
            [*_connect(world, world.keystores[0]["name"])],
            ["template", "create", "--vault", world.vault["id"], "--name", "tmpl", "--keystore", "ks-aws"],
        ]
    )
    for result in results:
        assert result.code == 2, str(result)
        assert result.err.startswith("error: ") and len(result.err.strip().splitlines()) == 1, str(result)
    for result in results[:4]:
        assert "nope" in result.err or "0000" in result.err, str(result)
    for result in results[4:]:
        assert "already" in result.err, str(result)

    taken = world.new_key("dup-label")
    cli.fails(2, "key", "create", "--template", "tmpl", "--label", "dup-label")
    assert [k["id"] for k in cli.ok("key", "list") if k["label"] == "dup-label"] == [taken["id"]]


def _connect(world: World, name: str) -> list[str]:
    return [
        "keystore",
        "connect",
        "--vault",
        world.vault["name"],
        "--name",
        name,
        "--type",
        "aws_kms",
        "--region",
        "us-east-1",
        "--credentials-from-environment",
    ]
