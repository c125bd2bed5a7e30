"""Changing a connected keystore: its connection settings, credentials and drift policy.

A keystore's stored credentials were entered for the place its requests go: its effective endpoint,
and the TLS trust that decides who answers there (``ca_pem``, ``allow_insecure_http``). Changing any
of those without entering the credentials again would send them to a host they were never meant
for, so it is refused. A keystore on credentials from keyorch's environment is checked against the
operator's rule again (:mod:`keyorch.service.environment`) whenever its endpoint moves or it turns
to them. Settings not given stay as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from keyorch.domain.errors import Conflict, InvalidInput, RuleViolation
from keyorch.domain.models import CredentialsMode, DriftPolicy, Keystore, KeystoreType
from keyorch.domain.validation import connection_settings
from keyorch.providers.endpoints import effective_endpoint
from keyorch.service.context import Change, ServiceContext
from keyorch.service.keystores import (
    CONNECTION_FIELDS,
    ConnectionFields,
    check_endpoint_parses,
    encrypt_credentials,
    get_keystore,
    read_ca_file,
    stored_credentials,
)
from keyorch.service.versions import check_version
from keyorch.store.repository import Transaction

_TLS_FIELDS = ("allow_insecure_http", "ca_pem")


@dataclass(frozen=True, kw_only=True)
class UpdateRequest(ConnectionFields):
    """What `keyorch keystore update` (``PATCH /api/v4/keystores/{id}``) changes; None: unchanged."""

    allow_insecure_http: bool | None = None
    drift_policy: str | None = None

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


def _settings(keystore: Keystore, req: UpdateRequest, ca_pem: str | None) -> dict[str, Any]:
    old = keystore.settings
    fields = {f: getattr(req, f) if getattr(req, f) is not None else old.get(f) for f in CONNECTION_FIELDS}
    allow = req.allow_insecure_http if req.allow_insecure_http is not None else bool(old.get("allow_insecure_http"))
    settings = connection_settings(keystore.type, fields, allow_insecure_http=allow, ca_pem=ca_pem or old.get("ca_pem"))
    kept = {k: v for k, v in old.items() if k not in CONNECTION_FIELDS and k not in _TLS_FIELDS}
    return {**settings, **kept}  # request limits and the like stay as they are


async def update_keystore(
    ctx: ServiceContext, ref: str, req: UpdateRequest, expected_version: int | None = None
) -> Keystore:
    if req.empty():
        raise InvalidInput("give at least one setting to change", target="keystore")
    if req.credentials_file and req.credentials_from_environment:
        raise InvalidInput("give either --credentials-file or --credentials-from-environment, not both")
    if req.endpoint:
        check_endpoint_parses(req.endpoint)
    kind = (await get_keystore(ctx, ref)).type  # a keystore's type never changes
    drift = _drift(req.drift_policy)
    ca_pem = read_ca_file(req.ca_file) if req.ca_file else None
    doc = stored_credentials(ctx, kind, req.credentials_file) if req.credentials_file else None

    async def body(tx: Transaction) -> tuple[Keystore, Change]:
        keystore = await tx.keystore(ref)
        check_version(keystore.version, expected_version, "keystore", keystore.id)
        if not keystore.connected:
            raise Conflict(
                f"keystore {keystore.name} ({keystore.id}) is disconnected; connect it again", target="keystore"
            )
        settings = _settings(keystore, req, ca_pem)
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
        now = ctx.clock.now()
        after = replace(
            keystore,
            settings=settings,
            credentials_mode=mode,
            drift_policy=drift or keystore.drift_policy,
            updated_at=now,
        )
        blob = encrypt_credentials(ctx, doc, keystore.id) if doc is not None else None
        wipe = mode is CredentialsMode.ENVIRONMENT
        after = await tx.update_keystore(after, keystore.version, wipe_credentials=wipe, credentials=blob)
        dropped = wipe and keystore.credentials_mode is CredentialsMode.STORED
        detail = "credentials replaced" if doc is not None else ("stored credentials removed" if dropped else None)
        return after, Change(keystore.id, before=keystore, after=after, detail=detail)

    return await ctx.change("keystore.update", "keystore", ref, body)
