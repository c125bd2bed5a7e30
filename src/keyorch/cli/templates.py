"""`keyorch template …`."""

from __future__ import annotations

from typing import Any

import click

from keyorch.cli.backend import Backend, Doc, TemplateRequest
from keyorch.cli.runtime import CliState, emit, make_table, properties_table, with_backend
from keyorch.service.template_edits import KEEP, TemplateEdit


def _entry(entry: Doc, long: bool = False) -> str:
    """A distribution entry: a keystore group of a type, or a keystore named by id."""
    if "group" in entry:
        return f"group {entry['group']} ({entry['type']})"
    name = entry.get("name") or entry["id"]
    return f"{name} ({entry['id']})" if long else str(name)


def _keystores(doc: Doc) -> list[str]:
    return [_entry(k) for k in doc["keystores"]]


def _show(state: CliState, doc: Doc, title: str) -> None:
    rows = [(k, v) for k, v in doc.items() if k not in ("keystores", "vault", "key")]
    rows.insert(1, ("vault", f"{doc['vault'].get('name', '')} ({doc['vault']['id']})"))
    rows += [(f"key.{k}", v) for k, v in doc["key"].items()]
    rows.append(("keystores", ", ".join(_entry(k, long=True) for k in doc["keystores"])))
    emit(state, doc, lambda: properties_table(title, rows))


def _group(value: str) -> tuple[str, str]:
    group, sep, kind = value.rpartition(":")
    if not sep or not group or not kind:
        raise click.BadParameter(f"{value!r} is not GROUP:TYPE, e.g. production:aws_kms", param_hint="--group")
    return group, kind


@click.group(name="template")
def template() -> None:
    """Key templates: algorithm, naming scheme and the keystores keys go to."""


@template.command(name="create")
@click.option("--vault", required=True, help="Vault id or name.")
@click.option("--name", required=True)
@click.option("--keystore", "keystores", multiple=True, help="Keystore id or name (repeatable).")
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="GROUP:TYPE",
    help="Every connected keystore of this group and type, e.g. production:aws_kms (repeatable; UKO's keystores).",
)
@click.option("--algorithm", default="aes", show_default=True)
@click.option("--size", type=int, default=256, show_default=True)
@click.option("--naming-scheme", default="{label}", show_default=True, help="Name in keystores, e.g. 'PAY-{label}'.")
@click.option(
    "--state", "initial_state", default="pre_active", show_default=True, type=click.Choice(["pre_active", "active"])
)
@click.option("--description", default="", help="Free text about the template.")
@click.option("--activation-date", help="Keys planned to activate: ISO 8601 period after creation (P1Y) or date.")
@click.option("--expiration-date", help="Keys planned to expire: ISO 8601 period after creation (P1Y) or date.")
@click.option(
    "--deactivate-on-rotation/--no-deactivate-on-rotation",
    default=None,
    help="Keys made from it disable their older versions after a rotation where the keystore can (Azure Key "
    "Vault, Google Cloud KMS); AWS KMS and Key Protect keep older material for decryption only anyway.",
)
@click.option("--rotation-policy", help="Keys rotate on this schedule: an ISO 8601 duration (P90D, P3M, P1Y).")
@with_backend
async def create(
    state: CliState,
    backend: Backend,
    vault: str,
    name: str,
    keystores: tuple[str, ...],
    groups: tuple[str, ...],
    algorithm: str,
    size: int,
    naming_scheme: str,
    initial_state: str,
    description: str,
    activation_date: str | None,
    expiration_date: str | None,
    deactivate_on_rotation: bool | None,
    rotation_policy: str | None,
) -> None:
    """Create a key template: keys go to each --keystore and to every connected keystore of each --group."""
    request = TemplateRequest(
        vault,
        name,
        keystores,
        algorithm,
        size,
        naming_scheme,
        initial_state,
        groups=tuple(_group(g) for g in groups),
        description=description,
        activation_date=activation_date,
        expiration_date=expiration_date,
        deactivate_on_rotation=bool(deactivate_on_rotation),
        rotation_policy=rotation_policy,
    )
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
            ["id", "name", "state", "algorithm", "size", "initial state", "keys", "keystores"],
            [
                (
                    t["id"],
                    t["name"],
                    t["state"],
                    t["algorithm"],
                    t["size"],
                    t["initial_state"],
                    t["keys_count"],
                    ", ".join(_keystores(t)),
                )
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


def _date(value: str | None) -> Any:
    """A planned date option: not given (as it is), ``none`` (no date planned), or the period or date."""
    if value is None:
        return KEEP
    return None if value.lower() == "none" else value


@template.command(name="update")
@click.argument("ref", metavar="ID")
@click.option("--name", help="A new name.")
@click.option("--description", help="A new description.")
@click.option("--keystore", "keystores", multiple=True, help="Replace the keystores named (repeatable).")
@click.option("--group", "groups", multiple=True, metavar="GROUP:TYPE", help="Replace the group entries (repeatable).")
@click.option("--no-groups", is_flag=True, help="Remove every group entry.")
@click.option("--activation-date", help="Keys' planned activation: period (P1Y), date, or none.")
@click.option("--expiration-date", help="Keys' planned expiration: period (P1Y), date, or none.")
@click.option(
    "--deactivate-on-rotation/--no-deactivate-on-rotation",
    default=None,
    help="What keys made from now on get (keys made before keep theirs: `keyorch key update`).",
)
@click.option("--rotation-policy", help="Keys' rotation schedule: an ISO 8601 duration (P90D), or none.")
@click.option("--if-version", type=int, default=None, help="Refuse if the template's version differs.")
@with_backend
async def update(
    state: CliState,
    backend: Backend,
    ref: str,
    name: str | None,
    description: str | None,
    keystores: tuple[str, ...],
    groups: tuple[str, ...],
    no_groups: bool,
    activation_date: str | None,
    expiration_date: str | None,
    deactivate_on_rotation: bool | None,
    rotation_policy: str | None,
    if_version: int | None,
) -> None:
    """Change a template. A change of its keystores, groups or planned dates marks the keys made from it
    unaligned: realign each with `keyorch key update-from-template`."""
    if no_groups and groups:
        raise click.BadParameter("give --group or --no-groups, not both", param_hint="--no-groups")
    edit = TemplateEdit(
        name=name,
        description=description,
        keystores=keystores or None,
        groups=() if no_groups else (tuple(_group(g) for g in groups) or None),
        activation_date=_date(activation_date),
        expiration_date=_date(expiration_date),
        deactivate_on_rotation=deactivate_on_rotation,
        rotation_policy=_date(rotation_policy),
    )
    _show(state, await backend.update_template(ref, if_version, edit), "template updated")


@template.command(name="delete")
@click.argument("ref", metavar="ID")
@click.option("--if-version", type=int, default=None, help="Refuse if the template's version differs.")
@with_backend
async def delete(state: CliState, backend: Backend, ref: str, if_version: int | None) -> None:
    """Delete a template no managed key was made from (refused, exit 3, while such keys exist)."""
    _show(state, await backend.delete_template(ref, if_version), "template deleted")


@template.command(name="archive")
@click.argument("ref", metavar="ID")
@click.option("--if-version", type=int, default=None, help="Refuse if the template's version differs.")
@with_backend
async def archive(state: CliState, backend: Backend, ref: str, if_version: int | None) -> None:
    """Archive a template: it makes no new keys; the keys made from it keep working."""
    _show(state, await backend.archive_template(ref, True, if_version), "template archived")


@template.command(name="unarchive")
@click.argument("ref", metavar="ID")
@click.option("--if-version", type=int, default=None, help="Refuse if the template's version differs.")
@with_backend
async def unarchive(state: CliState, backend: Backend, ref: str, if_version: int | None) -> None:
    """Unarchive a template: it makes keys again."""
    _show(state, await backend.archive_template(ref, False, if_version), "template unarchived")
