"""Keystore operations: connect (credentials encrypted at rest) and disconnect (the rule of seed 003)."""

from __future__ import annotations

import json
import ssl
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from keyorch.credentials import public_facts, read_credentials_file
from keyorch.domain import rules
from keyorch.domain.errors import ConfigurationError, Conflict, InvalidInput
from keyorch.domain.models import CredentialsMode, DriftPolicy, Keystore, KeystoreStatus, KeystoreType
from keyorch.domain.states import KeyState
from keyorch.domain.uko import UKO_KEPT_FIELDS, UKO_SETTINGS, check_azure_location
from keyorch.domain.validation import (
    check_description,
    check_groups,
    check_location,
    check_name,
    connection_settings,
    parse_keystore_type,
    shown,
)
from keyorch.providers.base import Health
from keyorch.service.context import Change, ServiceContext
from keyorch.service.keystore_probe import DEFAULT_CHECK_TIMEOUT_SECONDS, check_connection, require_ok
from keyorch.service.versions import check_version
from keyorch.store.repository import Transaction
from keyorch.urls import redact_url

MAX_CA_BYTES = 256 * 1024
#: a UKO field keyorch keeps as given (an Azure resource group, …)
MAX_UKO_FIELD = 256


#: The connection fields of a keystore's settings, by keystore type (see domain.validation.connection_settings).
CONNECTION_FIELDS = ("endpoint", "region", "project", "location", "key_ring", "instance_id")


@dataclass(frozen=True, kw_only=True)
class ConnectionFields:
    """What connecting a keystore and changing one share: where it is, how its TLS is trusted, its credentials."""

    endpoint: str | None = None
    region: str | None = None
    project: str | None = None
    location: str | None = None
    key_ring: str | None = None
    instance_id: str | None = None
    credentials_file: str | None = None
    credentials_from_environment: bool = False
    ca_file: str | None = None


@dataclass(frozen=True, kw_only=True)
class ConnectRequest(ConnectionFields):
    """``location`` is UKO's (where the keystore is, free text), except for a Google keystore given no
    ``google_location``: there it is also the Cloud KMS location, as before keystores had UKO's fields
    (see :func:`split_location`)."""

    vault: str
    name: str
    type: str
    google_location: str | None = None
    description: str = ""
    groups: tuple[str, ...] = ()
    #: UKO's fields keyorch keeps to answer with (domain.uko.UKO_KEPT_FIELDS: Azure's resource group, …)
    uko_fields: Mapping[str, str] = field(default_factory=dict)
    allow_insecure_http: bool = False
    drift_policy: str = "flag"
    rate_per_second: float | None = None  # keystore-wide request rate cap; 0 = none
    max_concurrency: int | None = None  # requests in flight to this keystore
    provider_quotas: bool = True  # pace each operation by the provider's published quota


def read_ca_file(path: str) -> str:
    """The PEM CA bundle in ``path`` (at most 256 KiB, loadable by ssl); bad input otherwise."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"--ca-file {path!r} cannot be read: {exc.strerror}", target="ca_file") from None
    if len(raw) > MAX_CA_BYTES:
        raise InvalidInput(f"--ca-file {path!r} is larger than 256 KiB", target="ca_file")
    try:
        text = raw.decode("ascii")
        ssl.create_default_context(cadata=text)
    except (UnicodeDecodeError, ssl.SSLError, ValueError):
        raise InvalidInput(f"--ca-file {path!r} does not hold PEM CA certificates", target="ca_file") from None
    return text


def check_endpoint_parses(endpoint: str) -> None:
    """urlsplit raises ValueError on a broken IPv6 host or port; say so as bad input."""
    try:
        _ = urlsplit(endpoint).port
    except ValueError as exc:
        raise InvalidInput(
            f"endpoint {shown(redact_url(endpoint))} is not a valid URL: {exc}", target="endpoint"
        ) from None


def _limit_settings(kind: KeystoreType, req: ConnectRequest) -> dict[str, object]:
    """Per-keystore overrides of the request limits, checked by the one place that applies them."""
    from keyorch.providers.limits import limits_for

    overrides: dict[str, object] = {}
    if req.rate_per_second is not None:
        overrides["rate_per_second"] = req.rate_per_second
    if req.max_concurrency is not None:
        overrides["max_concurrency"] = req.max_concurrency
    if not req.provider_quotas:
        overrides["provider_quotas"] = False
    limits_for(kind, overrides)
    return overrides


def stored_credentials(ctx: ServiceContext, kind: KeystoreType, path: str) -> dict[str, Any]:
    """The credentials document in ``path``, checked, to store encrypted (which needs a master key)."""
    if ctx.master_key is None:
        raise ConfigurationError(
            "storing keystore credentials needs a master key: set KEYORCH_MASTER_KEY (base64 of 32 random "
            "bytes, e.g. from `keyorch master-key generate`) or KEYORCH_MASTER_KEY_FILE; or connect with "
            "--credentials-from-environment to store nothing"
        )
    return read_credentials_file(kind, path)


def encrypt_credentials(ctx: ServiceContext, doc: Mapping[str, Any], keystore_id: str) -> bytes:
    assert ctx.master_key is not None
    return ctx.master_key.encrypt(json.dumps(doc).encode(), associated_data=keystore_id)


def with_public_facts(
    kind: KeystoreType, kept: dict[str, str], credentials: Mapping[str, Any] | None
) -> dict[str, str]:
    """UKO's fields keyorch keeps for a keystore (``settings["uko"]``): those given, and what its stored
    credentials say that is no secret (an Azure tenant, …), which they decide where they are stored."""
    unknown = sorted(set(kept) - set(UKO_KEPT_FIELDS[kind]))
    if unknown:
        raise InvalidInput(f"{unknown[0]} does not apply to a keystore of type {kind}", target=unknown[0])
    for name, value in kept.items():
        check_description(name, value, MAX_UKO_FIELD)
    if "azure_location" in kept:
        check_azure_location(kept["azure_location"])
    return {**kept, **(public_facts(kind, credentials) if credentials is not None else {})}


def split_location(kind: KeystoreType, location: str | None, google_location: str | None) -> tuple[str | None, str]:
    """(the Cloud KMS location setting, UKO's ``location``) from what was given. ``location`` names the Cloud KMS
    location of a Google keystore given no ``google_location`` (keyorch's option before UKO's fields; a KMS
    location is where the keystore is, so it is UKO's ``location`` too); otherwise it is UKO's free text."""
    if kind is KeystoreType.GOOGLE_KMS:
        return (location, location or "") if google_location is None else (google_location, location or "")
    if google_location is not None:
        raise InvalidInput(f"google_location does not apply to a keystore of type {kind}", target="google_location")
    return None, location or ""


@dataclass(frozen=True)
class _Prepared:
    """A connect request checked on its own: everything but what needs the store."""

    kind: KeystoreType
    settings: dict[str, Any]
    location: str
    groups: tuple[str, ...]
    drift: DriftPolicy
    credentials: dict[str, Any] | None


def _prepare(ctx: ServiceContext, req: ConnectRequest) -> _Prepared:
    check_name("keystore name", req.name)
    kind = parse_keystore_type(req.type)
    kms_location, location = split_location(kind, req.location, req.google_location)
    check_location(location)
    check_description("description", req.description)
    groups = check_groups(req.groups)
    try:
        drift = DriftPolicy(req.drift_policy)
    except ValueError:
        raise InvalidInput(
            f"drift policy {req.drift_policy!r} is not allowed; choose one of: flag, remediate", target="drift_policy"
        ) from None
    if req.credentials_file and req.credentials_from_environment:
        raise InvalidInput("give either --credentials-file or --credentials-from-environment, not both")
    if not req.credentials_file and not req.credentials_from_environment:
        raise InvalidInput(
            "a keystore needs credentials: give --credentials-file FILE (stored encrypted) or "
            "--credentials-from-environment (resolved at run time, nothing stored)",
            target="credentials_file",
        )
    ca_pem = read_ca_file(req.ca_file) if req.ca_file else None
    if req.endpoint:
        check_endpoint_parses(req.endpoint)
    settings = connection_settings(
        kind,
        {
            "endpoint": req.endpoint,
            "region": req.region,
            "project": req.project,
            "location": kms_location,
            "key_ring": req.key_ring,
            "instance_id": req.instance_id,
        },
        allow_insecure_http=req.allow_insecure_http,
        ca_pem=ca_pem,
    )
    settings.update(_limit_settings(kind, req))
    credentials_doc = stored_credentials(ctx, kind, req.credentials_file) if req.credentials_file else None
    kept = with_public_facts(kind, dict(req.uko_fields), credentials_doc)
    if kept:
        settings[UKO_SETTINGS] = kept
    return _Prepared(kind, settings, location, groups, drift, credentials_doc)


async def _new_keystore(ctx: ServiceContext, tx: Transaction, req: ConnectRequest, p: _Prepared) -> Keystore:
    """The keystore the request connects, checked against the store (its vault, the environment rule, its name)."""
    vault = await tx.vault(req.vault)
    if p.credentials is None:
        ctx.environment.check(vault.name, p.kind, p.settings)
    if await tx.connected_keystore_named(vault.id, req.name) is not None:
        raise Conflict(f"vault {vault.name} already has a connected keystore named {req.name!r}", target="name")
    now = ctx.clock.now()
    return Keystore(
        id=ctx.new_id(),
        vault_id=vault.id,
        name=req.name,
        type=p.kind,
        settings=p.settings,
        credentials_mode=CredentialsMode.STORED if p.credentials else CredentialsMode.ENVIRONMENT,
        drift_policy=p.drift,
        status=KeystoreStatus.CONNECTED,
        created_at=now,
        updated_at=now,
        description=req.description,
        location=p.location,
        groups=p.groups,
        created_by=ctx.actor.user,
        updated_by=ctx.actor.user,
    )


async def connect_keystore(ctx: ServiceContext, req: ConnectRequest) -> Keystore:
    prepared = _prepare(ctx, req)

    async def body(tx: Transaction) -> tuple[Keystore, Change]:
        keystore = await _new_keystore(ctx, tx, req, prepared)
        creds = prepared.credentials
        blob = encrypt_credentials(ctx, creds, keystore.id) if creds is not None else None
        await tx.insert_keystore(keystore, blob)
        return keystore, Change(keystore.id, after=keystore)

    return await ctx.change("keystore.connect", "keystore", req.name, body, creates=True)


async def try_connect(
    ctx: ServiceContext, req: ConnectRequest, timeout_seconds: float = DEFAULT_CHECK_TIMEOUT_SECONDS
) -> tuple[Keystore, Health]:
    """A connect's dry run: every check a connect makes, then the keystore's health check with the credentials
    given; nothing is stored or audited. Raises what the connect would, or the failed test (keystore_probe.refusal);
    returns the keystore as it would be connected (its id made up, never stored) and the check's answer."""
    prepared = _prepare(ctx, req)
    async with ctx.store.read() as tx:
        keystore = await _new_keystore(ctx, tx, req, prepared)
    health = await check_connection(keystore, prepared.credentials, timeout_seconds)
    require_ok(keystore.name, health)
    return keystore, health


async def disconnect_keystore(
    ctx: ServiceContext,
    ref: str,
    expected_version: int | None = None,
    live: Mapping[str, KeyState] | None = None,
) -> Keystore:
    """Refused while an active or deactivated key targets it (by its desired state, and by the
    keystore's live contents when the caller could read them); then unlink keys and templates."""

    async def body(tx: Transaction) -> tuple[Keystore, Change]:
        keystore = await tx.keystore(ref)
        check_version(keystore.version, expected_version, "keystore", keystore.id)
        if not keystore.connected:
            raise Conflict(f"keystore {keystore.name} ({keystore.id}) is already disconnected", target="keystore")
        keys = await tx.keys_targeting(keystore.id)
        rules.check_disconnect(keystore, keys, live)
        now = ctx.clock.now()
        for key in keys:
            await tx.update_key(rules.unlink_key_from_keystore(key, keystore.id, now), key.version)
        for template in await tx.list_templates(keystore.vault_id):
            if keystore.id in template.keystore_ids:
                await tx.update_template(
                    rules.unlink_template_from_keystore(template, keystore.id, now), template.version
                )
        after = replace(keystore, status=KeystoreStatus.DISCONNECTED, updated_at=now)
        after = await tx.update_keystore(after, keystore.version, wipe_credentials=True)
        return after, Change(keystore.id, before=keystore, after=after, detail=f"unlinked {len(keys)} key(s)")

    return await ctx.change("keystore.disconnect", "keystore", ref, body)


async def disconnect_checked(
    ctx: ServiceContext, ref: str, expected_version: int | None = None
) -> tuple[Keystore, str | None]:
    """Disconnect, checking the keystore's live contents too when it can be reached; the note (or None)
    says when it could not, so only keyorch's records decided."""
    live, unreachable = await live_contents(ctx, ref)
    note = None if unreachable is None else f"keystore not reachable ({unreachable}); checked keyorch's records only"
    return await disconnect_keystore(ctx, ref, expected_version, live), note


@dataclass(frozen=True, kw_only=True)
class KeystoreQuery:
    """Which keystores a list shows (UKO's ListKeystores filters; None: any). ``types``: any of these;
    ``name``, ``description``: containing this text; ``groups``: in any of these groups; ``locations``: at
    any of these (exactly); ``sort``: UKO's sort fields, ``-`` before one for descending order."""

    types: tuple[KeystoreType, ...] | None = None
    name: str | None = None
    description: str | None = None
    groups: tuple[str, ...] | None = None
    locations: tuple[str, ...] | None = None
    sort: tuple[str, ...] = ()


#: the fields a keystore list sorts by (UKO's sort parameter); the list is by creation otherwise
KEYSTORE_SORT_FIELDS = ("name", "type", "location", "description", "created_at", "updated_at", "id")


def check_keystore_sort(fields: Collection[str], parameter: str = "sort") -> tuple[str, ...]:
    for given in fields:
        if given.removeprefix("-") not in KEYSTORE_SORT_FIELDS:
            raise InvalidInput(
                f"{parameter} {shown(given)} is not a keystore field to sort by: use one of "
                f"{', '.join(KEYSTORE_SORT_FIELDS)}, with '-' before it for descending order",
                target=parameter,
            )
    return tuple(fields)


def _matches(k: Keystore, q: KeystoreQuery) -> bool:
    return (
        (q.types is None or k.type in q.types)
        and (q.name is None or q.name in k.name)
        and (q.description is None or q.description in k.description)
        and (q.groups is None or not set(q.groups).isdisjoint(k.groups))
        and (q.locations is None or k.location in q.locations)
    )


def _sort_value(k: Keystore, field: str) -> str:
    value = k.type.value if field == "type" else getattr(k, field)
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def select_keystores(found: list[Keystore], q: KeystoreQuery) -> list[Keystore]:
    """The keystores of ``found`` that ``q`` lets through, in its order (stable: ties keep creation order)."""
    chosen = [k for k in found if _matches(k, q)]
    for by in reversed(check_keystore_sort(q.sort)):
        chosen.sort(key=lambda k: _sort_value(k, by.removeprefix("-")), reverse=by.startswith("-"))
    return chosen


async def list_keystores(
    ctx: ServiceContext,
    vault: str | None = None,
    include_disconnected: bool = False,
    query: KeystoreQuery | None = None,
) -> list[Keystore]:
    async with ctx.store.read() as tx:
        vault_id = (await tx.vault(vault)).id if vault else None
        found = await tx.list_keystores(vault_id, include_disconnected=include_disconnected)
    return select_keystores(found, query) if query is not None else found


async def get_keystore(ctx: ServiceContext, ref: str, within: Collection[str] | None = None) -> Keystore:
    """By id or name; with ``within`` (vault ids), only a keystore of those vaults."""
    async with ctx.store.read() as tx:
        return await tx.keystore(ref, within)


async def keystore_names(ctx: ServiceContext) -> dict[str, str]:
    """id → name of every keystore ever connected (targets of disconnected ones keep their name)."""
    async with ctx.store.read() as tx:
        return {k.id: k.name for k in await tx.list_keystores(include_disconnected=True)}


async def live_contents(ctx: ServiceContext, ref: str) -> tuple[dict[str, KeyState] | None, str | None]:
    """What the keystore itself holds, by managed key id (skipping keys pending destruction), listed
    page by page; ``(None, reason)`` when it cannot be reached, so callers fall back to the records."""
    from keyorch.providers.errors import ProviderError
    from keyorch.reconcile.clients import ClientPool

    keystore = await get_keystore(ctx, ref)
    pool = ClientPool(ctx.store, ctx.master_key, environment_endpoints=ctx.environment.endpoints)
    try:
        client = await pool.client(keystore)
        held: dict[str, KeyState] = {}
        async for observation in client.list_keys():
            if observation.managed_key_id and not observation.destruction_pending:
                held[observation.managed_key_id] = observation.state
        return held, None
    except (ProviderError, ConfigurationError) as exc:
        return None, exc.message
    finally:
        await pool.aclose()
