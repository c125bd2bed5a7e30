"""`keyorch keystore connect` of an Azure keystore takes UKO's azure_location, resource group and subscription,
keeps them and answers them (also `keystore show`), and refuses what UKO would not accept."""

from __future__ import annotations

from tests.uko.contract import validate_uko

from .conftest import World


def test_connect_keeps_uko_azure_fields(world: World) -> None:
    cli = world.cli
    args = world.connect_args("kv-uko-cli", "azure_key_vault")
    uko = ["--azure-location", "europe_west", "--azure-resource-group", "rg-7", "--azure-subscription-id", "sub-7"]
    made = cli.ok(*args, "--credentials-from-environment", *uko)
    fields = ("azure_location", "azure_resource_group", "azure_subscription_id")
    assert tuple(made[f] for f in fields) == ("europe_west", "rg-7", "sub-7")
    shown = cli.ok("keystore", "show", made["id"])
    assert tuple(shown[f] for f in fields) == ("europe_west", "rg-7", "sub-7")
    validate_uko("Keystore", shown)

    bad = cli.fails(2, *world.connect_args("kv-bad", "azure_key_vault"), "--credentials-from-environment",
                    "--azure-location", "westeurope")  # fmt: skip
    assert "azure_location 'westeurope' is not one of UKO's Azure locations" in bad.err, bad.err
    other = cli.fails(2, *world.connect_args("aws-bad"), "--credentials-from-environment", "--azure-location",
                      "europe_west")  # fmt: skip
    assert "azure_location does not apply to a keystore of type aws_kms" in other.err, other.err
    assert not {"kv-bad", "aws-bad"} & {k["name"] for k in cli.ok("keystore", "list")}
