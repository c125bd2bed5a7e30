"""`keyorch template …`."""

from __future__ import annotations

import click

from keyorch.cli.runtime import CliState, emit, make_table, properties_table, with_service
from keyorch.domain.models import KeyTemplate
from keyorch.service import templates as ops
from keyorch.service.context import ServiceContext
from keyorch.service.keystores import keystore_names
from keyorch.views import template_json


async def _show(state: CliState, ctx: ServiceContext, template: KeyTemplate, title: str) -> None:
    doc = template_json(template, await keystore_names(ctx))
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
@with_service
async def create(
    state: CliState,
    ctx: ServiceContext,
    vault: str,
    name: str,
    keystores: tuple[str, ...],
    algorithm: str,
    size: int,
    naming_scheme: str,
    initial_state: str,
) -> None:
    """Create a key template."""
    created = await ops.create_template(
        ctx,
        vault=vault,
        name=name,
        keystores=keystores,
        algorithm=algorithm,
        size=size,
        naming_scheme=naming_scheme,
        state=initial_state,
    )
    await _show(state, ctx, created, "template created")


@template.command(name="list")
@click.option("--vault", help="Only this vault's templates.")
@with_service
async def list_(state: CliState, ctx: ServiceContext, vault: str | None) -> None:
    """List key templates."""
    found = await ops.list_templates(ctx, vault)
    names = await keystore_names(ctx)
    emit(
        state,
        [template_json(t, names) for t in found],
        lambda: make_table(
            "templates",
            ["id", "name", "algorithm", "size", "initial state", "keystores"],
            [
                (t.id, t.name, t.algorithm, t.size, t.initial_state, ", ".join(names.get(k, k) for k in t.keystore_ids))
                for t in found
            ],
        ),
    )


@template.command(name="show")
@click.argument("ref", metavar="ID")
@with_service
async def show(state: CliState, ctx: ServiceContext, ref: str) -> None:
    """Show a key template (by id or name)."""
    await _show(state, ctx, await ops.get_template(ctx, ref), "template")
