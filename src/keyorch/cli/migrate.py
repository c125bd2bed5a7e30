"""`keyorch migrate uko`: adopt the keys of a UKO managed-key export (docs/migrating-from-uko.md)."""

from __future__ import annotations

from pathlib import Path

import click

from keyorch.cli.backend import Backend
from keyorch.cli.runtime import CliState, emit, make_table, with_backend
from keyorch.domain.errors import InvalidInput, RuleViolation
from keyorch.service.adoption_request import UkoMigration


def _mapping(option: str, values: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for value in values:
        uko, sep, ours = value.partition("=")
        if not sep or not uko or not ours:
            raise InvalidInput(f"{option} {value!r} must be UKO_NAME=KEYORCH_NAME", target=option.lstrip("-"))
        found[uko] = ours
    return found


@click.group(name="migrate")
def migrate() -> None:
    """Migrate from other key managers."""


@migrate.command(name="uko")
@click.option(
    "--export", "export", required=True, type=click.Path(path_type=Path), help="UKO's managed key list (JSON)."
)
@click.option("--vault", required=True, help="The keyorch vault (id or name) the keys go to.")
@click.option("--keystore-map", "keystore_map", multiple=True, metavar="UKO=KS", help="A UKO keystore's keyorch name.")
@click.option("--template-map", "template_map", multiple=True, metavar="UKO=T", help="A UKO template's keyorch name.")
@click.option("--default-template", help="The template for entries whose UKO template keyorch has no name for.")
@click.option("--dry-run", is_flag=True, help="Print what would be adopted; write nothing, change nothing.")
@click.option("--no-marker", is_flag=True, help="Do not add keyorch's tag, label or alias to the keys.")
@with_backend
async def uko(
    state: CliState,
    backend: Backend,
    export: Path,
    vault: str,
    keystore_map: tuple[str, ...],
    template_map: tuple[str, ...],
    default_template: str | None,
    dry_run: bool,
    no_marker: bool,
) -> None:
    """Adopt each key of a UKO export with UKO's label, state, tags and template, changing nothing in the providers
    but keyorch's marker. An entry that cannot be matched is reported and skipped; the rest goes on. Exit 3 if any
    entry was not migrated."""
    templates = _mapping("--template-map", template_map)
    if default_template:
        templates[""] = default_template
    request = UkoMigration(
        export, vault, _mapping("--keystore-map", keystore_map), templates, dry_run=dry_run, marker=not no_marker
    )
    doc = await backend.migrate_uko(request)
    rows = [
        (e["index"], e["label"], e["outcome"], e.get("managed_key", {}).get("id", ""), e.get("problem", ""))
        for e in doc["entries"]
    ]
    title = f"UKO export{' (dry run: nothing written)' if dry_run else ''}: " + ", ".join(
        f"{n} {name}" for name, n in doc["counts"].items()
    )
    emit(state, doc, lambda: make_table(title, ["entry", "label", "outcome", "managed key", "why not"], rows))
    missed = [e for e in doc["entries"] if e["outcome"] in ("skipped", "refused")]
    if missed:
        raise RuleViolation(
            f"{len(missed)} of {len(doc['entries'])} entries not migrated: "
            + "; ".join(f"{e['label']}: {e['problem']}" for e in missed)[:2000],
            target="export",
        )
