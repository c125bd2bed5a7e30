"""Dual authorization through the CLI (seed 002): two different users, withdrawable, lapsing after 7 days."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import World

DAY_SECONDS = 86_400


def _offset(days: float) -> dict[str, str]:
    return {"KEYORCH_CLOCK_OFFSET_SECONDS": str(int(days * DAY_SECONDS))}


def test_the_same_user_cannot_authorize_and_destroy(dual_world: World) -> None:
    cli = dual_world.cli
    key = dual_world.new_key("d-same", state="pre_active")

    unauthorized = cli.fails(3, "key", "destroy", key["id"], user="bob")
    assert "authorize-deletion" in unauthorized.err

    authorized = cli.ok("key", "authorize-deletion", key["id"], user="alice")
    assert authorized["deletion_authorization"]["authorized_by"] == "alice"
    assert authorized["state"] == "pre_active"
    again = cli.fails(3, "key", "authorize-deletion", key["id"], user="carol")
    assert "already authorized" in again.err and "alice" in again.err

    same = cli.fails(3, "key", "destroy", key["id"], user="alice")
    assert "alice" in same.err and "different user" in same.err
    assert cli.ok("key", "show", key["id"]) == authorized

    destroyed = cli.ok("key", "destroy", key["id"], user="bob")
    assert destroyed["state"] == "destroyed"
    assert destroyed["deletion_authorization"] is None

    records = cli.audit(key["id"])
    assert [(r["action"], r["user"], r["outcome"]) for r in records] == [
        ("key.create", "alice", "accepted"),
        ("key.destroy", "bob", "refused"),
        ("key.authorize_deletion", "alice", "accepted"),
        ("key.authorize_deletion", "carol", "refused"),
        ("key.destroy", "alice", "refused"),
        ("key.destroy", "bob", "accepted"),
    ]
    assert "different user" in records[4]["detail"]


def test_a_withdrawn_authorization_no_longer_allows_destroy(dual_world: World) -> None:
    cli = dual_world.cli
    key = dual_world.new_key("d-withdrawn", state="pre_active")
    cli.ok("key", "authorize-deletion", key["id"], user="alice")
    withdrawn = cli.ok("key", "withdraw-authorization", key["id"], user="alice")
    assert withdrawn["deletion_authorization"] is None

    refused = cli.fails(3, "key", "destroy", key["id"], user="bob")
    assert "authorize-deletion" in refused.err
    cli.fails(3, "key", "withdraw-authorization", key["id"], user="alice")
    assert cli.ok("key", "show", key["id"])["state"] == "pre_active"


def test_an_authorization_lapses_after_seven_days(dual_world: World) -> None:
    cli = dual_world.cli
    key = dual_world.new_key("d-lapse", state="pre_active")
    authorized = cli.ok("key", "authorize-deletion", key["id"], user="alice", env=_offset(0))

    lapsed = cli.fails(3, "key", "destroy", key["id"], user="bob", env=_offset(8))
    assert "lapsed" in lapsed.err
    assert cli.ok("key", "show", key["id"])["version"] == authorized["version"]

    # within the window a different user may destroy
    destroyed = cli.ok("key", "destroy", key["id"], user="bob", env=_offset(6))
    assert destroyed["state"] == "destroyed"
