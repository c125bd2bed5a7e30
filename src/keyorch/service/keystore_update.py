"""Changing a connected keystore: its connection settings, credentials and drift policy.

A keystore's stored credentials were entered for the place its requests go: its effective endpoint,
and the TLS trust that decides who answers there (``ca_pem``, ``allow_insecure_http``). Changing any
of those without entering the credentials again would send them to a host they were never meant
for, so it is refused. A keystore on credentials from keyorch's environment is checked against the
operator's rule again (:mod:`keyorch.service.environment`) whenever its endpoint moves or it turns
to them. Settings not given stay as they are. New connection settings or credentials are tried on the
keystore before they are saved (:mod:`keyorch.service.keystore_probe`): a refused change keeps the old ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from keyorch.domain.errors import ConfigurationError, Conflict, InvalidInput, KeyorchError, RuleViolation
from keyorch.domain.models import CredentialsMode, DriftPolicy, Keystore, KeystoreType
from keyorch.domain.uko import UKO_SETTINGS
from keyorch.domain.validation import check_description, check_groups, check_name, connection_settings
from keyorch.providers.base import Health, HealthStatus
from keyorch.providers.endpoints import effective_endpoint
from keyorch.service.context import Change, ServiceContext
from keyorch.service.keystore_probe import (
    DEFAULT_CHECK_TIMEOUT_SECONDS,
    check_connection,
    require_ok,
    stored_connection,
)
from keyorch.service.keystores import (
    CONNECTION_FIELDS,
    ConnectionFields,
    check_endpoint_parses,
    encrypt_credentials,
    get_keystore,
    read_ca_file,
    stored_credentials,
    with_public_facts,
)
from keyorch.service.versions import check_version
from keyorch.store.repository import Transaction

_TLS_FIELDS = ("allow_insecure_http", "ca_pem")


@dataclass(frozen=True, kw_only=True)
class UpdateRequest(ConnectionFields):
    """What `keyorch keystore update` (``PATCH /api/v4/keystores/{id}``) changes; None: unchanged."""

    allow_insecure_http: bool | None = None
    drift_policy: str | None = None
    name: str | None = None
    description: str | None = None
    groups: tuple[str, ...] | None = None
    #: UKO's fields keyorch keeps to answer with (``settings["uko"]``), to set
    uko_fields: Mapping[str, str] | None = None

    def empty(self) -> bool:
        return self == UpdateRequest()


def destination(kind: KeystoreType, settings: Mapping[str, Any]) -> tuple[object, ...]:
    """Where the keystore's credentials go: its effective endpoint and the TLS trust on the way there."""
    return (effective_endpoint(kind, settings), bool(settings.get("allow_insecure_http")), settings.get("ca_pem"))


def _drift(value: str | None) -> DriftPolicy | None:
    if value is None:
        return None
    try:
        return DriftPolicy(value)
    except ValueError:
        raise InvalidInput(
            f"drift policy {value!r} is not allowed; choose one of: flag, remediate", target="drift_policy"
        ) from None


def _settings(
    keystore: Keystore, req: UpdateRequest, ca_pem: str | None, doc: Mapping[str, Any] | None
) -> dict[str, Any]:
    old = keystore.settings
    fields = {f: getattr(req, f) if getattr(req, f) is not None else old.get(f) for f in CONNECTION_FIELDS}
    allow = req.allow_insecure_http if req.allow_insecure_http is not None else bool(old.get("allow_insecure_http"))
    settings = connection_settings(keystore.type, fields, allow_insecure_http=allow, ca_pem=ca_pem or old.get("ca_pem"))
    kept = {k: v for k, v in old.items() if k not in CONNECTION_FIELDS and k not in _TLS_FIELDS}
    settings = {**settings, **kept}  # request limits and the like stay as they are
    if req.uko_fields or doc is not None:
        before: Mapping[str, str] = old.get(UKO_SETTINGS) or {}
        settings[UKO_SETTINGS] = {**before, **with_public_facts(keystore.type, dict(req.uko_fields or {}), doc)}
    return settings


def _connection_of(settings: Mapping[str, Any]) -> dict[str, Any]:
    """What decides how the keystore is reached (UKO's kept fields only describe it)."""
    return {k: v for k, v in settings.items() if k != UKO_SETTINGS}


@dataclass(frozen=True)
class _Planned:
    before: Keystore
    after: Keystore
    #: the change touches how the keystore is reached or who it acts as: tried live before it is saved
    needs_test: bool
    detail: str | None


async def _plan(
    ctx: ServiceContext,
    tx: Transaction,
    ref: str,
    req: UpdateRequest,
    expected_version: int | None,
    doc: Mapping[str, Any] | None,
    ca_pem: str | None,
) -> _Planned:
    """The keystore after the change, with every rule checked (nothing written)."""
    keystore = await tx.keystore(ref)
    kind = keystore.type
    check_version(keystore.version, expected_version, "keystore", keystore.id)
    if not keystore.connected:
        raise Conflict(f"keystore {keystore.name} ({keystore.id}) is disconnected; connect it again", target="keystore")
    settings = _settings(keystore, req, ca_pem, doc)
    moved = destination(kind, keystore.settings) != destination(kind, settings)
    mode = keystore.credentials_mode
    if doc is not None:
        mode = CredentialsMode.STORED
    elif req.credentials_from_environment:
        mode = CredentialsMode.ENVIRONMENT
    if moved and mode is CredentialsMode.STORED and doc is None:
        raise RuleViolation(
            f"keystore {keystore.name}'s endpoint or TLS trust cannot change while it keeps the credentials "
            "entered for the old one: give its credentials again (--credentials-file, API: credentials) or "
            "--credentials-from-environment",
            target="credentials",
        )
    if mode is CredentialsMode.ENVIRONMENT and (moved or keystore.credentials_mode is not mode):
        ctx.environment.check((await tx.vault_by_id(keystore.vault_id)).name, kind, settings)
    name = keystore.name
    if req.name is not None and req.name != keystore.name:
        check_name("keystore name", req.name)
        if await tx.connected_keystore_named(keystore.vault_id, req.name) is not None:
            raise Conflict(f"the vault already has a connected keystore named {req.name!r}", target="name")
        name = req.name
    if req.description is not None:
        check_description("description", req.description)
    after = replace(
        keystore,
        name=name,
        description=req.description if req.description is not None else keystore.description,
        groups=check_groups(req.groups) if req.groups is not None else keystore.groups,
        settings=settings,
        credentials_mode=mode,
        drift_policy=_drift(req.drift_policy) or keystore.drift_policy,
        updated_at=ctx.clock.now(),
        updated_by=ctx.actor.user,
    )
    needs_test = (
        doc is not None
        or mode is not keystore.credentials_mode
        or _connection_of(settings) != _connection_of(keystore.settings)
    )
    dropped = mode is CredentialsMode.ENVIRONMENT and keystore.credentials_mode is CredentialsMode.STORED
    detail = "credentials replaced" if doc is not None else ("stored credentials removed" if dropped else None)
    return _Planned(keystore, after, needs_test, detail)


async def _tried(ctx: ServiceContext, planned: _Planned, doc: Mapping[str, Any] | None, seconds: float) -> Health:
    """The changed keystore's health check, with the credentials it would use from then on."""
    try:
        if doc is not None:
            credentials: Mapping[str, Any] | None = doc
        elif planned.after.credentials_mode is CredentialsMode.ENVIRONMENT:
            credentials = await stored_connection(ctx, planned.after)  # checks the operator's rule; None
        else:
            credentials = await stored_connection(ctx, planned.before)  # the stored ones, kept
    except ConfigurationError as exc:
        return Health(HealthStatus.CONFIGURATION_ERROR, exc.message)
    return await check_connection(planned.after, credentials, seconds)


async def update_keystore(
    ctx: ServiceContext,
    ref: str,
    req: UpdateRequest,
    expected_version: int | None = None,
    timeout_seconds: float = DEFAULT_CHECK_TIMEOUT_SECONDS,
) -> Keystore:
    """Change the keystore. A change of how it is reached or of its credentials is tried live first (its
    adapter's health check with what it would use from then on): refused, nothing is saved and the old
    connection and credentials stay in use. The refusal is audited like any other."""
    if req.empty():
        raise InvalidInput("give at least one setting to change", target="keystore")
    if req.credentials_file and req.credentials_from_environment:
        raise InvalidInput("give either --credentials-file or --credentials-from-environment, not both")
    if req.endpoint:
        check_endpoint_parses(req.endpoint)
    kind = (await get_keystore(ctx, ref)).type  # a keystore's type never changes
    _drift(req.drift_policy)
    ca_pem = read_ca_file(req.ca_file) if req.ca_file else None
    doc = stored_credentials(ctx, kind, req.credentials_file) if req.credentials_file else None

    health: Health | None = None
    tried_version: int | None = None
    try:
        async with ctx.store.read() as tx:
            planned = await _plan(ctx, tx, ref, req, expected_version, doc, ca_pem)
    except KeyorchError:
        pass  # refused: the change below refuses it again, and audits the refusal
    else:
        if planned.needs_test:  # outside any transaction: the keystore may take seconds to answer
            health = await _tried(ctx, planned, doc, timeout_seconds)
            tried_version = planned.before.version

    async def body(tx: Transaction) -> tuple[Keystore, Change]:
        p = await _plan(ctx, tx, ref, req, expected_version, doc, ca_pem)
        if p.needs_test:
            if health is None or tried_version != p.before.version:
                raise Conflict(
                    f"keystore {p.before.name} changed while its new connection was tested; try again",
                    target="keystore",
                )
            require_ok(p.before.name, health)
        blob = encrypt_credentials(ctx, doc, p.before.id) if doc is not None else None
        wipe = p.after.credentials_mode is CredentialsMode.ENVIRONMENT
        after = await tx.update_keystore(p.after, p.before.version, wipe_credentials=wipe, credentials=blob)
        return after, Change(p.before.id, before=p.before, after=after, detail=p.detail)

    return await ctx.change("keystore.update", "keystore", ref, body)
