"""`keyorch key adopt`: bring keys that exist in keystores under management, exactly as they are."""

from __future__ import annotations

import click

from keyorch.cli.backend import Backend, Doc
from keyorch.cli.keys import key
from keyorch.cli.runtime import CliState, emit, make_table, with_backend
from keyorch.domain.errors import InvalidInput, RuleViolation
from keyorch.service.adoption_request import AdoptRequest, Selection


def _pairs(keystores: tuple[str, ...], ids: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``--id-in-keystore`` values as (keystore, id): ``KEYSTORE=ID``, or a bare id when one keystore is named."""
    pairs = []
    for value in ids:
        ref, sep, key_id = value.partition("=")
        if sep and ref in keystores:
            pairs.append((ref, key_id))
        elif len(keystores) == 1:
            pairs.append((keystores[0], value))
        else:
            raise InvalidInput(
                f"--id-in-keystore {value!r}: with several --keystore, write KEYSTORE=ID naming one of them",
                target="id_in_keystore",
            )
    return tuple(pairs)


def _tags(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    tags = []
    for value in values:
        name, sep, tag_value = value.partition("=")
        if not sep or not name:
            raise InvalidInput(f"--tag {value!r} must be NAME=VALUE", target="tag")
        tags.append((name, tag_value))
    return tuple(tags)


def _show(state: CliState, doc: Doc) -> None:
    title = (
        f"adoption{' (dry run: nothing written)' if doc['dry_run'] else ''}: {doc['adopted']} adopted, "
        f"{doc['planned']} planned, {doc['refused']} refused"
    )
    rows = []
    for k in doc["managed_keys"]:
        for n, inst in enumerate(k["instances"]):
            rows.append(
                (
                    k["label"] if n == 0 else "",
                    k["outcome"] if n == 0 else "",
                    k.get("state", "") if n == 0 else "",
                    inst["keystore"]["name"],
                    inst["key_id_in_keystore"],
                    inst["state_in_keystore"],
                    inst.get("marker", ""),
                    k.get("conflict", "") if n == 0 else "",
                )
            )
    columns = ["label", "outcome", "state", "keystore", "id in keystore", "in keystore", "marker", "refused because"]
    emit(state, doc, lambda: make_table(title, columns, rows))


@key.command(name="adopt")
@click.option("--keystore", "keystores", multiple=True, required=True, help="Keystore id or name. Repeatable.")
@click.option(
    "--id-in-keystore",
    "ids",
    multiple=True,
    metavar="ID",
    help="A key to adopt, by its provider id or name (KEYSTORE=ID with several --keystore): together ONE managed "
    "key. Repeatable.",
)
@click.option("--all-unmanaged", is_flag=True, help="Every key no managed key targets (bulk).")
@click.option("--name-pattern", "patterns", multiple=True, metavar="GLOB", help="Keys whose name matches (bulk).")
@click.option("--tag", "tags", multiple=True, metavar="NAME=VALUE", help="Keys carrying this tag or label (bulk).")
@click.option("--vault", required=True, help="Vault id or name the managed keys go to.")
@click.option("--template", required=True, help="Template id or name (in that vault) the managed keys are made from.")
@click.option("--label", help="The managed key's label (with --id-in-keystore; bulk keys take their names).")
@click.option("--state", "adopted_state", type=click.Choice(["active", "deactivated"]), help="The state to take.")
@click.option("--dry-run", is_flag=True, help="Print the plan; write nothing and change nothing in any keystore.")
@click.option("--no-marker", is_flag=True, help="Do not add keyorch's tag, label or alias to the keys.")
@with_backend
async def adopt(
    state: CliState,
    backend: Backend,
    keystores: tuple[str, ...],
    ids: tuple[str, ...],
    all_unmanaged: bool,
    patterns: tuple[str, ...],
    tags: tuple[str, ...],
    vault: str,
    template: str,
    label: str | None,
    adopted_state: str | None,
    dry_run: bool,
    no_marker: bool,
) -> None:
    """Adopt keys that exist in keystores, leaving them exactly as they are.

    Nothing changes in a provider but keyorch's ownership marker (none with --no-marker). Keys of different
    keystores with the same UKO mark or name become one managed key. The managed key takes the state its keys show;
    keys that disagree are refused naming each state, unless --state is given. Exit 3 if any key is refused.
    """
    request = AdoptRequest(
        keystores=keystores,
        vault=vault,
        template=template,
        selection=Selection(_pairs(keystores, ids), all_unmanaged, patterns, _tags(tags)),
        label=label,
        state=adopted_state,
        marker=not no_marker,
        dry_run=dry_run,
    )
    doc = await backend.adopt_keys(request)
    _show(state, doc)
    if doc["refused"]:
        refused = [f"{k['label']}: {k['conflict']}" for k in doc["managed_keys"] if k["outcome"] == "refused"]
        raise RuleViolation(f"{doc['refused']} key(s) not adopted: " + "; ".join(refused)[:2000], target="adopt")
