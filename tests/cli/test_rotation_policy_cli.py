"""Rotation policies as a user gives them: `template create/update --rotation-policy`, `key create
--rotation-policy` and `key update --rotation-policy` (subprocesses, a real SQLite file); a bad value is exit 2
naming the option's field, the value and the form allowed."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Cli


def _setup(cli: Cli) -> None:
    assert cli("init").code == 0
    cli.ok("vault", "create", "v")
    cli.ok(
        "keystore", "connect", "--vault", "v", "--name", "a", "--type", "aws_kms", "--region", "us-east-1",
        "--credentials-from-environment",
    )  # fmt: skip


def test_policies_on_templates_and_keys(cli: Cli) -> None:
    _setup(cli)
    template = cli.ok(
        "template", "create", "--vault", "v", "--name", "t", "--keystore", "a", "--rotation-policy", "P90D"
    )
    assert template["key"]["rotation_policy"] == "P90D"
    key = cli.ok("key", "create", "--template", "t", "--label", "k", "--state", "active")
    assert (key["rotation_policy"], key["rotation_policy_from"]) == ("P90D", "template")
    made = datetime.fromisoformat(key["created_at"])
    assert datetime.fromisoformat(key["next_rotation_at"]) == made + timedelta(days=90)

    own = cli.ok("key", "update", "k", "--rotation-policy", "P30D")
    assert (own["rotation_policy"], own["rotation_policy_from"]) == ("P30D", "key")
    assert datetime.fromisoformat(own["next_rotation_at"]) == made + timedelta(days=30)
    back = cli.ok("key", "update", "k", "--rotation-policy", "none")
    assert (back["rotation_policy"], back["rotation_policy_from"]) == ("P90D", "template")

    changed = cli.ok("template", "update", "t", "--rotation-policy", "P1Y")
    assert changed["key"]["rotation_policy"] == "P1Y"
    assert cli.ok("key", "show", "k")["rotation_policy"] == "P1Y"
    cleared = cli.ok("template", "update", "t", "--rotation-policy", "none")
    assert "rotation_policy" not in cleared["key"]
    shown = cli.ok("key", "show", "k")
    assert "rotation_policy" not in shown and "next_rotation_at" not in shown

    other = cli.ok("key", "create", "--template", "t", "--label", "o", "--rotation-policy", "P6M")
    assert (other["rotation_policy"], other["rotation_policy_from"]) == ("P6M", "key")
    assert "next_rotation_at" not in other  # pre-active: it rotates once active


def test_bad_policies_are_exit_2_naming_field_value_and_form(cli: Cli) -> None:
    _setup(cli)
    bad = cli.fails(
        2, "template", "create", "--vault", "v", "--name", "t", "--keystore", "a", "--rotation-policy", "90d"
    )
    assert "key.rotation_policy '90d' is not valid" in bad.err and "ISO 8601 duration such as P90D" in bad.err
    cli.ok("template", "create", "--vault", "v", "--name", "t", "--keystore", "a")
    short = cli.fails(2, "key", "create", "--template", "t", "--label", "k", "--rotation-policy", "PT10M")
    assert "rotation_policy 'PT10M' is shorter than the least time between two rotations" in short.err
    cli.ok("key", "create", "--template", "t", "--label", "k")
    again = cli.fails(2, "key", "update", "k", "--rotation-policy", "P")
    assert "rotation_policy 'P' is not valid" in again.err
    update = cli.fails(2, "template", "update", "t", "--rotation-policy", "P0D")
    assert "key.rotation_policy 'P0D' is no time at all" in update.err
