"""`keyorch keystore …`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from keyorch.cli.backend import Backend, Doc
from keyorch.cli.runtime import CliState, emit, make_table, properties_table, with_backend
from keyorch.domain import uko
from keyorch.domain.models import KeystoreType
from keyorch.domain.validation import check_name
from keyorch.service import keystores as ops
from keyorch.service.keystore_update import UpdateRequest


def _show(state: CliState, doc: Doc, title: str) -> None:
    shown = {**doc, "vault": f"{doc['vault'].get('name', '')} ({doc['vault']['id']})"}
    rows = [(k, v) for k, v in shown.items() if k != "settings"] + [
        (f"settings.{k}", v) for k, v in doc["settings"].items()
    ]
    emit(state, doc, lambda: properties_table(title, rows))


F = TypeVar("F", bound=Callable[..., Any])


def connection_options(command: F) -> F:
    """Where a keystore is, how its TLS is trusted, its credentials: options of `connect` and `update`."""
    options = [
        click.option("--endpoint", help="Service URL (https://; http:// only to loopback with --allow-insecure-http)."),
        click.option("--region", help="AWS or IBM region, e.g. us-east-1 or us-south."),
        click.option("--project", help="Google Cloud project id."),
        click.option(
            "--location",
            help="Where the keystore is (UKO's location, free text); for google_kms without --google-location, "
            "its Cloud KMS location.",
        ),
        click.option("--key-ring", help="Google Cloud KMS key ring."),
        click.option("--instance-id", help="IBM Key Protect instance id."),
        click.option("--credentials-file", type=str, help="JSON/YAML credentials; stored encrypted (master key)."),
        click.option("--credentials-from-environment", is_flag=True, help="Resolve credentials at run time."),
        click.option("--ca-file", type=str, help="PEM CA bundle to trust for this keystore's TLS."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group(name="keystore")
def keystore() -> None:
    """Keystores: the AWS, Azure, Google and IBM key services keys are distributed to."""


@keystore.command(name="connect")
@click.option("--vault", required=True, help="Vault id or name.")
@click.option("--name", required=True, help="Name of the keystore in keyorch.")
@click.option("--type", "type_", required=True, type=click.Choice([t.value for t in KeystoreType]))
@connection_options
@click.option("--google-location", help="Google Cloud KMS location (UKO's google_location).")
@click.option("--azure-location", help="Azure: UKO's azure_location of the key vault (e.g. europe_west).")
@click.option("--azure-resource-group", help="Azure: the key vault's resource group (UKO's azure_resource_group).")
@click.option("--azure-subscription-id", help="Azure: the key vault's subscription (UKO's azure_subscription_id).")
@click.option(
    "--dry-run", is_flag=True, help="Test the connection with these credentials now; connect and store nothing."
)
@click.option("--description", default="", help="What the keystore is for (free text).")
@click.option("--group", "groups", multiple=True, help="A group the keystore is in (repeatable).")
@click.option("--allow-insecure-http", is_flag=True, help="Allow a plain http:// loopback endpoint (testing).")
@click.option("--drift-policy", type=click.Choice(["flag", "remediate"]), default="flag", show_default=True)
@click.option(
    "--rate-per-second",
    type=float,
    default=None,
    help="Cap on this keystore's request rate, requests/s (at least 0.1; 0: none).",
)
@click.option("--max-concurrency", type=int, default=None, help="Requests in flight to this keystore at most.")
@click.option(
    "--provider-quotas/--no-provider-quotas",
    default=True,
    show_default=True,
    help="Pace each operation by the provider's published request quota.",
)
@with_backend
async def connect(
    state: CliState,
    backend: Backend,
    /,
    vault: str,
    name: str,
    type_: str,
    google_location: str | None,
    azure_location: str | None,
    azure_resource_group: str | None,
    azure_subscription_id: str | None,
    dry_run: bool,
    description: str,
    groups: tuple[str, ...],
    allow_insecure_http: bool,
    drift_policy: str,
    rate_per_second: float | None,
    max_concurrency: int | None,
    provider_quotas: bool,
    **connection: Any,
) -> None:
    """Connect a keystore to a vault."""
    azure = {"azure_location": azure_location, "azure_resource_group": azure_resource_group}
    azure["azure_subscription_id"] = azure_subscription_id
    request = ops.ConnectRequest(
        vault=vault,
        name=name,
        type=type_,
        **connection,
        google_location=google_location,
        uko_fields={name: value for name, value in azure.items() if value is not None},
        description=description,
        groups=groups,
        allow_insecure_http=allow_insecure_http,
        drift_policy=drift_policy,
        rate_per_second=rate_per_second,
        max_concurrency=max_concurrency,
        provider_quotas=provider_quotas,
    )
    if dry_run:
        _show(state, await backend.connect_keystore(request, dry_run=True), "connection test passed; nothing stored")
        return
    _show(state, await backend.connect_keystore(request), "keystore connected")


keystore.add_command(connect, name="add")  # UKO calls connecting a keystore creating one


@keystore.command(name="update")
@click.argument("ref", metavar="ID")
@connection_options
@click.option("--allow-insecure-http/--no-allow-insecure-http", default=None, help="Plain http:// to loopback.")
@click.option("--drift-policy", type=click.Choice(["flag", "remediate"]), default=None)
@click.option("--if-version", type=int, default=None, help="Refuse if the keystore's version differs.")
@with_backend
async def update(
    state: CliState,
    backend: Backend,
    /,
    ref: str,
    allow_insecure_http: bool | None,
    drift_policy: str | None,
    if_version: int | None,
    **connection: Any,
) -> None:
    """Change a connected keystore's settings; what is not given stays as it is.

    Its credentials were entered for where its requests go: changing the endpoint (or region) or the TLS
    trust of a keystore with stored credentials needs them again (--credentials-file).
    """
    request = UpdateRequest(**connection, allow_insecure_http=allow_insecure_http, drift_policy=drift_policy)
    _show(state, await backend.update_keystore(ref, request, if_version), "keystore updated")


@keystore.command(name="list")
@click.option("--vault", help="Only this vault's keystores.")
@click.option("--include-disconnected", is_flag=True)
@click.option("--group", "groups", multiple=True, help="Only keystores in this group (repeatable: in any of them).")
@click.option("--type", "types", multiple=True, help="Only keystores of this type (repeatable; UKO's or keyorch's).")
@with_backend
async def list_(
    state: CliState,
    backend: Backend,
    vault: str | None,
    include_disconnected: bool,
    groups: tuple[str, ...],
    types: tuple[str, ...],
) -> None:
    """List keystores."""
    for group in groups:
        check_name("group", group, target="--group")
    query = ops.KeystoreQuery(groups=groups or None, types=tuple(uko.keystore_type(t, "--type") for t in types) or None)
    found = await backend.list_keystores(vault, include_disconnected, query)
    emit(
        state,
        found,
        lambda: make_table(
            "keystores",
            ["id", "name", "type", "status", "endpoint", "credentials", "version"],
            [
                (
                    k["id"],
                    k["name"],
                    k["type"],
                    k["status"],
                    k["settings"].get("endpoint", "(default)"),
                    k["credentials"],
                    k["version"],
                )
                for k in found
            ],
        ),
    )


@keystore.command(name="show")
@click.argument("ref", metavar="ID")
@with_backend
async def show(state: CliState, backend: Backend, ref: str) -> None:
    """Show a keystore (by id or name)."""
    _show(state, await backend.get_keystore(ref), "keystore")


#: the exit code of `keystore status` by UKO's health_status
STATUS_EXIT = {"ok": 0, "configuration_error": 2, "not_responding": 4}


@keystore.command(name="status")
@click.argument("ref", metavar="ID")
@with_backend
async def status(state: CliState, backend: Backend, ref: str) -> int:
    """Check a keystore live with the credentials keyorch uses (UKO's KeystoreStatus).

    Exit 0 if it answers (ok), 2 if it refuses or is misconfigured (configuration_error), 4 if it cannot be
    reached (not_responding).
    """
    doc = await backend.keystore_status(ref)
    emit(state, doc, lambda: properties_table("keystore status", list(doc.items())))
    return STATUS_EXIT[str(doc["health_status"])]


@keystore.command(name="scan")
@click.argument("ref", metavar="ID")
@click.option(
    "--uko-name",
    "uko_names",
    multiple=True,
    metavar="GLOB",
    help="A name UKO gave keys (a label, or a pattern: akms-*); matching keys look made by UKO. Repeatable.",
)
@click.option("--made-by", type=click.Choice(["uko", "keyorch", "unknown"]), help="Only keys that look made so.")
@with_backend
async def scan(state: CliState, backend: Backend, ref: str, uko_names: tuple[str, ...], made_by: str | None) -> None:
    """List the keys the keystore holds that no managed key targets (read live: reads only).

    Each shows its id and name in the keystore, state, versions, creation date and tags, and whether it looks
    made by UKO (UKO's marks, or a --uko-name), by keyorch (an orphan: keyorch's identity, but no managed key
    targets it) or by neither (unknown). --output json gives every field, with the evidence.
    """
    doc = await backend.scan_keystore(ref, uko_names, made_by)
    keystore_name = doc["keystore"].get("name", doc["keystore"]["id"])
    title = (
        f"keys in {keystore_name} no managed key targets: {len(doc['unmanaged_keys'])} "
        f"(of {doc['keys_in_keystore']}; {doc['managed_in_keystore']} managed)"
    )
    emit(
        state,
        doc,
        lambda: make_table(
            title,
            ["id in keystore", "name", "state", "versions", "created", "made by", "tags"],
            [
                (
                    k["key_id_in_keystore"],
                    k.get("label_in_keystore", ""),
                    k["state"] + (" (destruction pending)" if k["destruction_pending"] else ""),
                    len(k["versions"]),
                    k.get("created_at", ""),
                    k["made_by"],
                    ", ".join(f"{t['name']}={t['value']}" if t["value"] else t["name"] for t in k["tags"]),
                )
                for k in doc["unmanaged_keys"]
            ],
        ),
    )


@keystore.command(name="disconnect")
@click.argument("ref", metavar="ID")
@click.option("--if-version", type=int, default=None, help="Refuse if the keystore's version differs.")
@with_backend
async def disconnect(state: CliState, backend: Backend, ref: str, if_version: int | None) -> None:
    """Disconnect a keystore; refused while an active or deactivated key targets it.

    When the keystore can be reached its live contents are checked too; otherwise the records alone decide
    (and a note on stderr says so).
    """
    doc, note = await backend.disconnect_keystore(ref, if_version)
    if note is not None:
        click.echo(f"note: {note}", err=True)
    _show(state, doc, "keystore disconnected")
