"""`keyorch vault …`."""

from __future__ import annotations

import click

from keyorch.cli.backend import Backend, Doc, VaultChanges
from keyorch.cli.runtime import CliState, emit, make_table, properties_table, with_backend


def _show(state: CliState, doc: Doc, title: str) -> None:
    emit(state, doc, lambda: properties_table(title, list(doc.items())))


@click.group(name="vault")
def vault() -> None:
    """Vaults group keystores, templates and keys."""


@vault.command(name="create")
@click.argument("name")
@click.option("--dual-auth", is_flag=True, help="Deleting keys needs two different users.")
@click.option("--description", default="", help="What the vault is for (free text).")
@click.option("--recovery-key-label", default=None, help="The label of the vault's recovery key.")
@with_backend
async def create(
    state: CliState, backend: Backend, name: str, dual_auth: bool, description: str, recovery_key_label: str | None
) -> None:
    """Create a vault."""
    _show(state, await backend.create_vault(name, dual_auth, description, recovery_key_label), "vault created")


@vault.command(name="update")
@click.argument("ref", metavar="ID")
@click.option("--name", default=None, help="A new name.")
@click.option("--description", default=None, help="A new description.")
@click.option("--recovery-key-label", default=None, help="A new recovery key label.")
@click.option("--if-version", type=int, default=None, help="Refuse if the vault's version differs.")
@with_backend
async def update(
    state: CliState,
    backend: Backend,
    ref: str,
    name: str | None,
    description: str | None,
    recovery_key_label: str | None,
    if_version: int | None,
) -> None:
    """Change a vault's name, description or recovery key label."""
    changes = VaultChanges(name=name, description=description, recovery_key_label=recovery_key_label)
    _show(state, await backend.update_vault(ref, if_version, changes), "vault updated")


@vault.command(name="list")
@with_backend
async def list_(state: CliState, backend: Backend) -> None:
    """List vaults."""
    found = await backend.list_vaults()
    emit(
        state,
        found,
        lambda: make_table(
            "vaults",
            ["id", "name", "dual auth", "version"],
            [(v["id"], v["name"], v["dual_auth"], v["version"]) for v in found],
        ),
    )


@vault.command(name="show")
@click.argument("ref", metavar="ID")
@with_backend
async def show(state: CliState, backend: Backend, ref: str) -> None:
    """Show a vault (by id or name)."""
    _show(state, await backend.get_vault(ref), "vault")


@vault.command(name="delete")
@click.argument("ref", metavar="ID")
@click.option("--if-version", type=int, default=None, help="Refuse if the vault's version differs.")
@with_backend
async def delete(state: CliState, backend: Backend, ref: str, if_version: int | None) -> None:
    """Delete an empty vault."""
    _show(state, await backend.delete_vault(ref, if_version), "vault deleted")
