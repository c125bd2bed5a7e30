"""`keyorch key …`: managed keys and their state actions (desired state only)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import click

from keyorch.cli.runtime import CliState, emit, make_table, properties_table, with_service
from keyorch.domain.models import ManagedKey
from keyorch.domain.states import KeyState
from keyorch.service import keys as ops
from keyorch.service.context import ServiceContext
from keyorch.service.keystores import keystore_names
from keyorch.views import key_json

TARGET_COLUMNS = ["keystore", "status", "sync", "reason", "id in keystore", "pending destruction until"]


async def show_key(state: CliState, ctx: ServiceContext, key: ManagedKey, title: str) -> None:
    doc = key_json(key, await keystore_names(ctx))

    def render() -> object:
        from rich.console import Group

        props = [(k, v) for k, v in doc.items() if k not in ("targets", "deletion_authorization")]
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
@with_service
async def create(state: CliState, ctx: ServiceContext, template: str, label: str, initial_state: str | None) -> None:
    """Create a managed key from a template (state defaults to the template's)."""
    await show_key(
        state, ctx, await ops.create_key(ctx, template=template, label=label, state=initial_state), "key created"
    )


@key.command(name="list")
@click.option("--vault", help="Only this vault's keys.")
@click.option("--state", "only_state", type=click.Choice([s.value for s in KeyState]), default=None)
@click.option("--out-of-sync", is_flag=True, help="Only keys out of sync in some keystore.")
@click.option("--include-destroyed", is_flag=True, help="Also list destroyed keys.")
@with_service
async def list_(
    state: CliState,
    ctx: ServiceContext,
    vault: str | None,
    only_state: str | None,
    out_of_sync: bool,
    include_destroyed: bool,
) -> None:
    """List managed keys (destroyed ones only when asked)."""
    flt = ops.KeyFilter(vault=vault, state=only_state, out_of_sync=out_of_sync, include_destroyed=include_destroyed)
    found = await ops.list_keys(ctx, flt)
    names = await keystore_names(ctx)

    def reasons(k: ManagedKey) -> str:
        return "; ".join(
            f"{names.get(t.keystore_id, t.keystore_id)}: {t.reason or t.sync_flag}"
            for t in k.targets
            if t.sync_flag.value != "in_sync"
        )

    emit(
        state,
        [key_json(k, names) for k in found],
        lambda: make_table(
            "keys",
            ["id", "label", "state", "version", "out of sync", "targets not in sync"],
            [(k.id, k.label, k.state, k.version, "yes" if k.out_of_sync else "no", reasons(k)) for k in found],
        ),
    )


@key.command(name="show")
@click.argument("ref", metavar="ID")
@with_service
async def show(state: CliState, ctx: ServiceContext, ref: str) -> None:
    """Show a key (by id or label) with its status in each keystore."""
    await show_key(state, ctx, await ops.get_key(ctx, ref), "key")


def _state_command(
    name: str, help_text: str, op: Callable[[ServiceContext, str, int | None], Awaitable[ManagedKey]], title: str
) -> None:
    @key.command(name=name, help=help_text)
    @click.argument("ref", metavar="ID")
    @click.option("--if-version", type=int, default=None, help="Refuse if the key's version differs.")
    @with_service
    async def command(state: CliState, ctx: ServiceContext, ref: str, if_version: int | None) -> None:
        await show_key(state, ctx, await op(ctx, ref, if_version), title)


_state_command("activate", "Activate a pre-active key.", ops.activate_key, "key activated")
_state_command(
    "deactivate", "Deactivate an active key (unlinks it in every keystore).", ops.deactivate_key, "key deactivated"
)
_state_command("reactivate", "Reactivate a deactivated key.", ops.reactivate_key, "key reactivated")
_state_command("remove", "Remove a destroyed key from its vault.", ops.remove_key, "key removed")
_state_command(
    "authorize-deletion",
    "First of two authorizations to destroy (dual-auth vaults).",
    ops.authorize_deletion,
    "deletion authorized",
)
_state_command(
    "withdraw-authorization",
    "Withdraw a deletion authorization.",
    ops.withdraw_authorization,
    "authorization withdrawn",
)


@key.command(name="destroy")
@click.argument("ref", metavar="ID")
@click.option("--force", is_flag=True, help="Pass force to keystores that refuse keys protecting resources.")
@click.option("--if-version", type=int, default=None, help="Refuse if the key's version differs.")
@with_service
async def destroy(state: CliState, ctx: ServiceContext, ref: str, force: bool, if_version: int | None) -> None:
    """Destroy a pre-active or deactivated key (schedules destruction in every keystore)."""
    await show_key(
        state, ctx, await ops.destroy_key(ctx, ref, force=force, expected_version=if_version), "key destroyed"
    )
