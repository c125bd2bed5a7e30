"""The CLI refuses the shared hostile names and labels (tests/hostile_inputs.py) as the API does: exit 2,
one sentence naming the field, nothing stored; a lookup with text no store can hold is bad input too."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.hostile_inputs import ARGV_NAMES, ARGV_UNSTORABLE

if TYPE_CHECKING:
    from conftest import World


def test_hostile_names_and_labels_are_refused_and_nothing_is_stored(world: World) -> None:
    cli = world.cli
    vaults_before = cli.ok("vault", "list")
    keys_before = cli.ok("key", "list", "--include-destroyed")
    calls = [["vault", "create", "--", name] for name in ARGV_NAMES]
    # labels go through the same kind of check: the newline cases (each call is a whole Python start-up)
    template = world.template["id"]
    calls += [["key", "create", "--template", template, "--label", name] for name in ARGV_NAMES if "\n" in name]
    for args, result in zip(calls, cli.many(calls), strict=True):
        assert result.code == 2, str(result)
        field = "vault name" if args[0] == "vault" else "label"
        assert f"{field} " in result.err and "is not valid" in result.err, str(result)
        assert len(result.err.strip().splitlines()) == 1, str(result)
    assert cli.ok("vault", "list") == vaults_before
    assert cli.ok("key", "list", "--include-destroyed") == keys_before


def test_lookups_with_text_no_store_can_hold_are_bad_input(world: World) -> None:
    calls = [
        args
        for ref in ARGV_UNSTORABLE
        for args in (["vault", "show", ref], ["key", "show", ref], ["key", "list", "--vault", ref])
    ]
    for result in world.cli.many(calls):
        assert result.code == 2, str(result)
        assert "unpaired surrogate" in result.err and "please report" not in result.err, str(result)
