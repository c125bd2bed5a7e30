"""`keyorch key …`: managed keys and their state actions (desired state only)."""

from __future__ import annotations

from typing import Any

import click

from keyorch.cli.backend import Backend, Doc, KeyCommand
from keyorch.cli.runtime import CliState, emit, make_table, properties_table, with_backend
from keyorch.domain.uko import STATE_NAMES, key_state
from keyorch.service.keys import KEEP, KeyFilter

TARGET_COLUMNS = ["keystore", "status", "sync", "reason", "id in keystore", "pending destruction until"]


def show_key(state: CliState, doc: Doc, title: str) -> None:
    def render() -> object:
        from rich.console import Group

        hidden = ("targets", "deletion_authorization", "older_versions_in_keystores")
        props = [(k, v) for k, v in doc.items() if k not in hidden]
        older = doc.get("older_versions_in_keystores") or []
        if older:  # what each keystore does with the older versions after a rotation
            shown = ", ".join(f"{o['keystore']['name']}: {o['older_versions']}" for o in older)
            props.append(("older versions", shown))
        auth = doc["deletion_authorization"]
        if auth:
            props.append(("deletion authorized", f"by {auth['authorized_by']} until {auth['expires_at']}"))
        targets = make_table(
            "targets",
            TARGET_COLUMNS,
            [
                (
                    t["keystore_name"] or t["keystore"],
                    t["status"],
                    t["sync_flag"],
                    t["reason"],
                    t["key_id_in_keystore"],
                    t["pending_destruction_until"],
                )
                for t in doc["targets"]
            ],
        )
        return Group(properties_table(title, props), targets)

    emit(state, doc, render)  # type: ignore[arg-type]


@click.group(name="key")
def key() -> None:
    """Managed keys."""


@key.command(name="create")
@click.option("--template", required=True, help="Template id or name.")
@click.option("--label", required=True)
@click.option("--state", "initial_state", type=click.Choice(["pre_active", "active"]), default=None)
@click.option(
    "--deactivate-on-rotation/--no-deactivate-on-rotation",
    default=None,
    help="After a rotation, disable the older versions where the keystore can (Azure Key Vault, Google Cloud "
    "KMS; AWS KMS and Key Protect keep older material for decryption only anyway); default: the template's.",
)
@click.option(
    "--rotation-policy", help="The key's own rotation schedule, an ISO 8601 duration (P90D); default: its template's."
)
@with_backend
async def create(
    state: CliState,
    backend: Backend,
    template: str,
    label: str,
    initial_state: str | None,
    deactivate_on_rotation: bool | None,
    rotation_policy: str | None,
) -> None:
    """Create a managed key from a template (state, deactivation on rotation and rotation policy default to the
    template's)."""
    made = await backend.create_key(template, label, initial_state, deactivate_on_rotation, rotation_policy)
    show_key(state, made, "key created")


@key.command(name="update")
@click.argument("ref", metavar="ID")
@click.option(
    "--deactivate-on-rotation/--no-deactivate-on-rotation",
    default=None,
    help="Disable the older versions where the keystore can (Azure Key Vault, Google Cloud KMS), or enable them "
    "again; the reconciler carries it out in every keystore.",
)
@click.option(
    "--rotation-policy",
    default=None,
    help="The key's own rotation schedule, an ISO 8601 duration (P90D), or none: its template's again.",
)
@click.option("--if-version", type=int, default=None, help="Refuse if the key's version differs.")
@with_backend
async def update(
    state: CliState,
    backend: Backend,
    ref: str,
    deactivate_on_rotation: bool | None,
    rotation_policy: str | None,
    if_version: int | None,
) -> None:
    """Change a key's settings (an option not given stays as it is); its own rotation policy overrides its
    template's."""
    policy: Any = KEEP if rotation_policy is None else (None if rotation_policy.lower() == "none" else rotation_policy)
    changed = await backend.update_key(
        ref, if_version, deactivate_on_rotation=deactivate_on_rotation, rotation_policy=policy
    )
    show_key(state, changed, "key updated")


def _not_in_sync(doc: Doc) -> str:
    return "; ".join(
        f"{t['keystore_name'] or t['keystore']}: {t['reason'] or t['sync_flag']}"
        for t in doc["targets"]
        if t["sync_flag"] != "in_sync"
    )


@key.command(name="list")
@click.option("--vault", help="Only this vault's keys.")
@click.option("--state", "only_state", type=click.Choice(STATE_NAMES), default=None)
@click.option("--out-of-sync", is_flag=True, help="Only keys out of sync in some keystore.")
@click.option("--include-destroyed", is_flag=True, help="Also list destroyed keys.")
@with_backend
async def list_(
    state: CliState,
    backend: Backend,
    vault: str | None,
    only_state: str | None,
    out_of_sync: bool,
    include_destroyed: bool,
) -> None:
    """List managed keys (destroyed ones only when asked)."""
    only_state = key_state(only_state, "--state").value if only_state else None
    flt = KeyFilter(vault=vault, state=only_state, out_of_sync=out_of_sync, include_destroyed=include_destroyed)
    found = await backend.list_keys(flt)
    emit(
        state,
        found,
        lambda: make_table(
            "keys",
            ["id", "label", "state", "version", "out of sync", "targets not in sync"],
            [
                (k["id"], k["label"], k["state"], k["version"], "yes" if k["out_of_sync"] else "no", _not_in_sync(k))
                for k in found
            ],
        ),
    )


@key.command(name="show")
@click.argument("ref", metavar="ID")
@with_backend
async def show(state: CliState, backend: Backend, ref: str) -> None:
    """Show a key (by id or label) with its status in each keystore."""
    show_key(state, await backend.get_key(ref), "key")


def _state_command(name: KeyCommand, help_text: str, title: str) -> None:
    @key.command(name=name, help=help_text)
    @click.argument("ref", metavar="ID")
    @click.option("--if-version", type=int, default=None, help="Refuse if the key's version differs.")
    @with_backend
    async def command(state: CliState, backend: Backend, ref: str, if_version: int | None) -> None:
        show_key(state, await backend.key_action(name, ref, if_version), title)


_state_command("activate", "Activate a pre-active key.", "key activated")
_state_command("deactivate", "Deactivate an active key (unlinks it in every keystore).", "key deactivated")
_state_command("reactivate", "Reactivate a deactivated key.", "key reactivated")
_state_command(
    "compromise",
    "Declare a key compromised: an active or deactivated key is disabled in every keystore and never used "
    "again (destroy it next); a destroyed key becomes destroyed_compromised.",
    "key compromised",
)
_state_command("remove", "Remove a destroyed (or destroyed compromised) key from its vault.", "key removed")
_state_command(
    "authorize-deletion",
    "First of two authorizations to destroy (dual-auth vaults; needs --server, so that users are authenticated).",
    "deletion authorized",
)
_state_command("withdraw-authorization", "Withdraw a deletion authorization.", "authorization withdrawn")
_state_command(
    "rotate",
    "Rotate an active key: its next version becomes current, and every keystore makes a new primary version "
    "(at most once an hour).",
    "key rotated",
)


@key.command(name="versions")
@click.argument("ref", metavar="ID")
@with_backend
async def versions(state: CliState, backend: Backend, ref: str) -> None:
    """A key's versions, and which one each keystore serves (with the provider's id of its primary)."""
    doc = await backend.key_versions(ref)
    emit(
        state,
        doc,
        lambda: make_table(
            f"versions of {doc['label']}",
            ["version", "created at", "current", "keystores serving it"],
            [
                (
                    v["version"],
                    v["created_at"],
                    "yes" if v["current"] else "",
                    ", ".join(
                        f"{k['keystore']['name']} ({k['version_id_in_keystore'] or '?'})" for k in v["keystores"]
                    ),
                )
                for v in doc["versions"]
            ],
        ),
    )


@key.command(name="destroy")
@click.argument("ref", metavar="ID")
@click.option("--force", is_flag=True, help="Pass force to keystores that refuse keys protecting resources.")
@click.option("--if-version", type=int, default=None, help="Refuse if the key's version differs.")
@with_backend
async def destroy(state: CliState, backend: Backend, ref: str, force: bool, if_version: int | None) -> None:
    """Destroy a pre-active, deactivated or compromised key (schedules destruction in every keystore).

    In a dual-auth vault this is the second authorization, which needs --server (authenticated users).
    """
    show_key(state, await backend.key_action("destroy", ref, if_version, force=force), "key destroyed")


@key.command(name="update-from-template")
@click.argument("ref", metavar="ID")
@click.option("--dry-run", is_flag=True, help="Only show what would change; change nothing.")
@click.option("--if-version", type=int, default=None, help="Refuse if the key's version differs.")
@with_backend
async def update_from_template(
    state: CliState, backend: Backend, ref: str, dry_run: bool, if_version: int | None
) -> None:
    """Realign a key with its template: keystores the template now distributes to, its planned dates.

    Refused (exit 3, naming each) where a change would take a usable key out of a keystore.
    """
    doc = await backend.update_key_from_template(ref, dry_run, if_version)
    if state.output != "json" and doc["changes"]:
        for change in doc["changes"]:
            blocked = f"  [refused: {change['blocked']}]" if change["blocked"] else ""
            click.echo(f"{'would ' if dry_run else ''}{change['description']}{blocked}")
    elif state.output != "json":
        click.echo("the key is aligned with its template: nothing to change")
    shown = doc if state.output == "json" else {k: v for k, v in doc.items() if k != "changes"}
    show_key(state, shown, "key (dry run: unchanged)" if dry_run else "key realigned with its template")
