"""Dual authorization (seed 002) on the database directly: refused, since a self-declared user proves nobody.

One person could authorize as ``KEYORCH_USER=alice`` and destroy as ``KEYORCH_USER=bob``. The two steps
now need authenticated users (``keyorch --server``, see tests/daemon/test_cli_server.py); the 7-day lapse
is tested through the API (tests/api/test_keys_api.py) and in the rules (tests/domain/test_rules.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import World

REFUSAL = "error: dual authorization needs authenticated users: use --server\n"


def test_direct_mode_refuses_the_steps_of_dual_authorization(dual_world: World) -> None:
    cli = dual_world.cli
    key = dual_world.new_key("d-direct", state="pre_active")
    before = cli.ok("key", "show", key["id"])

    authorize = cli.fails(3, "key", "authorize-deletion", key["id"], user="alice")
    destroy = cli.fails(3, "key", "destroy", key["id"], user="bob")
    assert authorize.err == destroy.err == REFUSAL
    assert cli.ok("key", "show", key["id"]) == before

    records = cli.audit(key["id"])
    assert [(r["action"], r["user"], r["source"], r["outcome"]) for r in records] == [
        ("key.create", "alice", "cli-direct", "accepted"),
        ("key.authorize_deletion", "alice", "cli-direct", "refused"),
        ("key.destroy", "bob", "cli-direct", "refused"),
    ]
    assert "use --server" in records[1]["detail"]


def test_direct_mode_destroys_where_the_vault_needs_one_user(world: World) -> None:
    """Without dual authorization a destroy is one step, which direct mode still takes."""
    key = world.new_key("d-single", state="pre_active")
    assert world.cli.ok("key", "destroy", key["id"], user="bob")["state"] == "destroyed"
    refused = world.cli.fails(3, "key", "authorize-deletion", key["id"])
    assert "does not use dual authorization" in refused.err
