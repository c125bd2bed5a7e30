"""`keyorch vault create/update/list` with UKO's vault fields."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Cli


def test_create_update_and_list_carry_uko_fields(cli: Cli) -> None:
    assert cli("init").code == 0
    made = cli.ok("vault", "create", "team-a", "--description", "the A team", "--recovery-key-label", "rk-a")
    assert (made["description"], made["recovery_key_label"], made["created_by"]) == ("the A team", "rk-a", "alice")
    assert made["href"] == f"/api/v4/vaults/{made['id']}" and made["keys_count"] == 0

    changed = cli.ok("vault", "update", "team-a", "--description", "now B", "--name", "team-b", user="bob")
    assert (changed["name"], changed["description"], changed["recovery_key_label"]) == ("team-b", "now B", "rk-a")
    assert (changed["created_by"], changed["updated_by"], changed["version"]) == ("alice", "bob", made["version"] + 1)

    stale = cli.fails(3, "vault", "update", made["id"], "--description", "x", "--if-version", str(made["version"]))
    assert "version" in stale.err
    bad = cli.fails(2, "vault", "update", made["id"], "--recovery-key-label", "no spaces allowed")
    assert "recovery_key_label" in bad.err

    [listed] = cli.ok("vault", "list")
    assert listed == changed
    updates = [r for r in cli.audit(made["id"]) if r["action"] == "vault.update"]
    assert [(r["user"], r["outcome"]) for r in updates].count(("bob", "accepted")) == 1
