"""`keyorch template …`."""

from __future__ import annotations

import click

from keyorch.cli.backend import Backend, Doc, TemplateRequest
from keyorch.cli.runtime import CliState, emit, make_table, properties_table, with_backend


def _keystores(doc: Doc) -> list[str]:
    return [k["name"] or k["id"] for k in doc["keystores"]]


def _show(state: CliState, doc: Doc, title: str) -> None:
    rows = [(k, v) for k, v in doc.items() if k != "keystores"]
    rows.append(("keystores", ", ".join(f"{k['name']} ({k['id']})" for k in doc["keystores"])))
    emit(state, doc, lambda: properties_table(title, rows))


@click.group(name="template")
def template() -> None:
    """Key templates: algorithm, naming scheme and the keystores keys go to."""


@template.command(name="create")
@click.option("--vault", required=True, help="Vault id or name.")
@click.option("--name", required=True)
@click.option("--keystore", "keystores", multiple=True, required=True, help="Keystore id or name (repeatable).")
@click.option("--algorithm", default="aes", show_default=True)
@click.option("--size", type=int, default=256, show_default=True)
@click.option("--naming-scheme", default="{label}", show_default=True, help="Name in keystores, e.g. 'PAY-{label}'.")
@click.option(
    "--state", "initial_state", default="pre_active", show_default=True, type=click.Choice(["pre_active", "active"])
)
@with_backend
async def create(
    state: CliState,
    backend: Backend,
    vault: str,
    name: str,
    keystores: tuple[str, ...],
    algorithm: str,
    size: int,
    naming_scheme: str,
    initial_state: str,
) -> None:
    """Create a key template."""
    request = TemplateRequest(vault, name, keystores, algorithm, size, naming_scheme, initial_state)
    created = await backend.create_template(request)
    _show(state, created, "template created")


@template.command(name="list")
@click.option("--vault", help="Only this vault's templates.")
@with_backend
async def list_(state: CliState, backend: Backend, vault: str | None) -> None:
    """List key templates."""
    found = await backend.list_templates(vault)
    emit(
        state,
        found,
        lambda: make_table(
            "templates",
            ["id", "name", "algorithm", "size", "initial state", "keystores"],
            [
                (t["id"], t["name"], t["algorithm"], t["size"], t["initial_state"], ", ".join(_keystores(t)))
                for t in found
            ],
        ),
    )


@template.command(name="show")
@click.argument("ref", metavar="ID")
@with_backend
async def show(state: CliState, backend: Backend, ref: str) -> None:
    """Show a key template (by id or name)."""
    _show(state, await backend.get_template(ref), "template")
