"""`keyorch vault …`."""

from __future__ import annotations

import click

from keyorch.cli.runtime import CliState, emit, make_table, properties_table, with_service
from keyorch.domain.models import Vault
from keyorch.service import vaults as ops
from keyorch.service.context import ServiceContext
from keyorch.views import vault_json


def _show(state: CliState, vault: Vault, title: str) -> None:
    doc = vault_json(vault)
    emit(state, doc, lambda: properties_table(title, list(doc.items())))


@click.group(name="vault")
def vault() -> None:
    """Vaults group keystores, templates and keys."""


@vault.command(name="create")
@click.argument("name")
@click.option("--dual-auth", is_flag=True, help="Deleting keys needs two different users.")
@with_service
async def create(state: CliState, ctx: ServiceContext, name: str, dual_auth: bool) -> None:
    """Create a vault."""
    _show(state, await ops.create_vault(ctx, name, dual_auth), "vault created")


@vault.command(name="list")
@with_service
async def list_(state: CliState, ctx: ServiceContext) -> None:
    """List vaults."""
    found = await ops.list_vaults(ctx)
    emit(
        state,
        [vault_json(v) for v in found],
        lambda: make_table(
            "vaults", ["id", "name", "dual auth", "version"], [(v.id, v.name, v.dual_auth, v.version) for v in found]
        ),
    )


@vault.command(name="show")
@click.argument("ref", metavar="ID")
@with_service
async def show(state: CliState, ctx: ServiceContext, ref: str) -> None:
    """Show a vault (by id or name)."""
    _show(state, await ops.get_vault(ctx, ref), "vault")


@vault.command(name="delete")
@click.argument("ref", metavar="ID")
@click.option("--if-version", type=int, default=None, help="Refuse if the vault's version differs.")
@with_service
async def delete(state: CliState, ctx: ServiceContext, ref: str, if_version: int | None) -> None:
    """Delete an empty vault."""
    _show(state, await ops.delete_vault(ctx, ref, if_version), "vault deleted")
