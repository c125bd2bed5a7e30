"""/api/v4/keystores: list, connect, get, health status, disconnect (DELETE).

Disconnecting checks the keystore's live contents too when it can be reached (as the CLI does); when
it cannot, the answer says so in its ``Keyorch-Note`` header. DELETE takes UKO's ``mode``
(:data:`keyorch.domain.uko.DISCONNECT_MODES`): every mode is decided by the one disconnect rule, so a
disconnect never changes or abandons a live key (``deactivate`` and ``destroy`` are done through the keys'
lifecycle first). It answers 204 with no body, as UKO does (its SDK reads none) and as keyorch's other
DELETEs do; the disconnected keystore stays readable at ``GET /keystores/{id}``.

Connecting takes the fields of `keyorch keystore connect`. Inline credentials and a CA bundle reach
the one connect implementation as in-memory files (memfd where the system has it), never as a file
on disk a second process could read; credentials are stored encrypted and never returned.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from keyorch.api.auth import Permission
from keyorch.api.errors import MasterKeyMissing
from keyorch.api.models import (
    KeystoreConnect,
    KeystoreConnectQuery,
    KeystoreDeleteQuery,
    KeystoreFields,
    KeystoreFilter,
    KeystoreUpdate,
)
from keyorch.api.responses import Keystore as KeystoreDocument
from keyorch.api.responses import KeystoreDryRun, KeystoreHealth, KeystoreList
from keyorch.api.routing import PREFIX, Call, Route, linked_page, respond
from keyorch.credentials import MAX_CREDENTIALS_BYTES, parse_credentials
from keyorch.domain import uko, uko_keystores
from keyorch.domain.errors import ConfigurationError, InvalidInput, RuleViolation
from keyorch.domain.models import CredentialsMode, Keystore, KeystoreType
from keyorch.domain.validation import check_name
from keyorch.service import keystore_update as update_ops
from keyorch.service import keystores as ops
from keyorch.service.context import ServiceContext
from keyorch.service.keystore_probe import stored_connection
from keyorch.service.keystore_update import UpdateRequest
from keyorch.views import keystore_dry_run_json, keystore_json, keystore_status_json

#: The header of a disconnect whose live check could not reach the keystore (so the records alone decided).
NOTE_HEADER = "Keyorch-Note"


@contextmanager
def _private_file(data: bytes) -> Iterator[str]:
    """A path that reads back ``data``: an anonymous memory file, or a 0600 file in a 0700 directory."""
    if hasattr(os, "memfd_create") and Path("/proc/self/fd").is_dir():
        fd = os.memfd_create("keyorch-api", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="keyorch-api-") as folder:
        path = Path(folder) / "doc"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        yield str(path)


def _inline_files(
    call: Call, kind: KeystoreType, credentials: dict[str, Any] | None, ca_pem: str | None, stack: ExitStack
) -> tuple[str | None, str | None]:
    """Inline credentials and CA bundle as the in-memory files the service reads (``None`` when not given)."""
    credentials_file = None
    if credentials is not None:
        if call.deps.master_key is None:
            raise MasterKeyMissing(
                "this keyorch has no master key, so it cannot store keystore credentials; configure "
                "KEYORCH_MASTER_KEY or KEYORCH_MASTER_KEY_FILE, or connect with credentials_from_environment: true",
                target="credentials",
            )
        parse_credentials(kind, credentials)  # 400 naming the fields, never the secret values
        doc = json.dumps(credentials).encode()
        if len(doc) > MAX_CREDENTIALS_BYTES:
            raise InvalidInput("credentials are larger than 64 KiB", target="credentials")
        credentials_file = stack.enter_context(_private_file(doc))
    ca_file = stack.enter_context(_private_file(ca_pem.encode())) if ca_pem is not None else None
    return credentials_file, ca_file


def _connection(body: KeystoreFields) -> dict[str, Any]:
    return body.model_dump(include=set(ops.CONNECTION_FIELDS))


def _one_kind_of_credentials(credentials: dict[str, Any] | None, from_environment: bool) -> None:
    if credentials is not None and from_environment:
        raise InvalidInput(
            "give either credentials or credentials_from_environment: true, not both", target="credentials"
        )


def _uko_connection(
    body: KeystoreFields,
    kind: KeystoreType,
    *,
    create: bool,
    kept: dict[str, str] | None = None,
    stored: Mapping[str, Any] | None = None,
) -> uko_keystores.UkoConnection:
    """UKO's per-type fields of the body in keyorch's terms (:mod:`keyorch.domain.uko_keystores`)."""
    fields, extra = body.uko_fields(), body.keyorch_fields()
    return uko_keystores.from_uko(kind, fields, extra, create=create, kept_before=kept, stored_before=stored)


async def _stored_before(ctx: ServiceContext, keystore: Keystore, body: KeystoreFields) -> Mapping[str, Any] | None:
    """The keystore's stored credentials, where a UKO body changes part of them (a new secret alone)."""
    if keystore.credentials_mode is not CredentialsMode.STORED or not any(
        body.uko_fields().get(name) is not None for name in uko_keystores.SECRET_FIELDS[keystore.type]
    ):
        return None
    try:
        return await stored_connection(ctx, keystore)
    except ConfigurationError:
        return None  # then the body must name the whole set, and is told which field is missing


def _connect_request(call: Call, body: KeystoreConnect, stack: ExitStack) -> ops.ConnectRequest:
    _one_kind_of_credentials(body.credentials, body.credentials_from_environment)
    if body.type is KeystoreType.IBM_KEY_PROTECT and body.ibm_variant is not None:
        uko.keystore_type("ibm_cloud_kms", ibm_variant=body.ibm_variant)  # another variant: refused naming it
    given = _uko_connection(body, body.type, create=True)
    credentials = given.credentials if given.credentials is not None else body.credentials
    if credentials is None and not body.credentials_from_environment:
        raise InvalidInput(
            "a keystore needs credentials: give credentials (an object, stored encrypted), UKO's credential fields "
            "of its type, or credentials_from_environment: true (resolved at run time, nothing stored)",
            target="credentials",
        )
    name = body.name
    if name is None and body.type is KeystoreType.AZURE_KEY_VAULT:
        name = body.azure_service_name  # UKO's SDK makes an Azure keystore's name optional
    if name is None:
        raise InvalidInput("a keystore needs a name", target="name")
    credentials_file, ca_file = _inline_files(call, body.type, credentials, body.ca_pem, stack)
    connection = {**_connection(body), **given.connection}
    return ops.ConnectRequest(
        vault=body.vault if isinstance(body.vault, str) else body.vault.id,
        name=name,
        type=body.type.value,
        **connection,
        google_location=given.google_location,
        description=body.description,
        groups=tuple(body.groups),
        uko_fields=given.kept,
        credentials_file=credentials_file,
        credentials_from_environment=body.credentials_from_environment,
        allow_insecure_http=body.allow_insecure_http,
        ca_file=ca_file,
        drift_policy=body.drift_policy.value,
        rate_per_second=body.rate_per_second,
        max_concurrency=body.max_concurrency,
        provider_quotas=body.provider_quotas,
    )


@contextmanager
def _ca_pem_named() -> Iterator[None]:
    """The service names the CA file it read; the API's caller gave ca_pem."""
    try:
        yield
    except InvalidInput as exc:
        if exc.target == "ca_file":
            raise InvalidInput("ca_pem does not hold PEM CA certificates", target="ca_pem") from None
        raise


async def connect_keystore(call: Call) -> web.StreamResponse:
    body = call.parsed(KeystoreConnect, call.body)
    dry_run = call.parsed(KeystoreConnectQuery, call.query).dry_run
    vault = await call.vault(body.vault if isinstance(body.vault, str) else body.vault.id)
    named = body.name if body.name is not None else body.azure_service_name
    if dry_run:  # nothing changes, so nothing is audited: the caller needs the right to connect all the same
        ctx = await call.authorize(Permission.ADMINISTER, vault.name, "keystore.test", "keystore", named)
        with ExitStack() as stack, _ca_pem_named():
            tried, health = await ops.try_connect(
                ctx, _connect_request(call, body, stack), call.deps.keystore_checks.timeout_seconds
            )
        doc = keystore_dry_run_json(tried, vault.name, health, ctx.clock.now())
        KeystoreDryRun.model_validate(doc)  # what the document describes (an answer other than the route's 201)
        return respond(doc)
    ctx = await call.authorize(Permission.ADMINISTER, vault.name, "keystore.connect", "keystore", named)
    with ExitStack() as stack, _ca_pem_named():
        keystore = await ops.connect_keystore(ctx, _connect_request(call, body, stack))
    return call.answer(
        await keystore_document(call, keystore),
        tag=(keystore.id, keystore.version),
        location=f"{PREFIX}/keystores/{keystore.id}",
    )


def _split(value: str | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in value.split(",")) if value is not None else None


def keystore_query(q: KeystoreFilter) -> ops.KeystoreQuery:
    """UKO's ListKeystores parameters as the service's query (each one filters, or is refused naming it)."""
    try:
        if q.group is not None and q.groups is not None:
            raise InvalidInput("give group or groups[], not both", target="groups[]")
        types = _split(q.type)
        groups = (q.group,) if q.group is not None else _split(q.groups)
        for group in groups or ():
            check_name("group", group, target="group" if q.group is not None else "groups[]")
        return ops.KeystoreQuery(
            types=tuple(uko.keystore_type(t, "type") for t in types) if types is not None else None,
            name=q.name,
            description=q.description,
            groups=groups,
            locations=_split(q.location),
            sort=ops.check_keystore_sort(_split(q.sort) or ()),
        )
    except InvalidInput as exc:  # each names the query parameter
        raise InvalidInput(exc.message, target=exc.target, target_type="parameter") from None


async def _vault_names(call: Call) -> dict[str, str]:
    return {v.id: v.name for v in (await call.readable_vaults()).values()}


async def keystore_document(call: Call, keystore: Keystore) -> dict[str, Any]:
    """The keystore as the API answers with it (its vault referenced by id, name and href)."""
    return keystore_json(keystore, (await _vault_names(call)).get(keystore.vault_id))


async def list_keystores(call: Call) -> web.StreamResponse:
    q = call.parsed(KeystoreFilter, call.query)
    query = keystore_query(q)
    listed = await call.listed_vaults(q)
    found = await ops.list_keystores(call.context(), include_disconnected=q.include_disconnected, query=query)
    chosen = [k for k in found if listed is None or k.vault_id in listed]
    names = await _vault_names(call)
    shown = [keystore_json(k, names.get(k.vault_id)) for k in chosen[q.offset : q.offset + q.limit]]
    return call.answer(linked_page(shown, len(chosen), q.limit, q.offset, "keystores", call.request))


async def get_keystore(call: Call) -> web.StreamResponse:
    keystore = await call.keystore(call.path_id)
    return call.answer(await keystore_document(call, keystore), tag=(keystore.id, keystore.version))


async def keystore_status(call: Call) -> web.StreamResponse:
    """UKO's KeystoreStatus from a live check of the keystore with the credentials keyorch uses (cached a few
    seconds per keystore); a disconnected keystore is not checked."""
    keystore = await call.keystore(call.path_id)
    if not keystore.connected:
        return call.answer(keystore_status_json(keystore, None, None))
    checked = await call.deps.keystore_checks.status(call.context(), keystore)
    return call.answer(keystore_status_json(keystore, checked.health, checked.at))


async def update_keystore(call: Call) -> web.StreamResponse:
    body = call.parsed(KeystoreUpdate, call.body)
    keystore = await call.keystore(call.path_id)
    vault = await call.vault(keystore.vault_id)
    ctx = await call.authorize(Permission.ADMINISTER, vault.name, "keystore.update", "keystore", keystore.id)
    version = await call.expected_version(ctx, "keystore.update", "keystore", keystore.id, keystore.version)
    _one_kind_of_credentials(body.credentials, body.credentials_from_environment)
    kept = keystore.settings.get(uko.UKO_SETTINGS) or {}
    stored = await _stored_before(ctx, keystore, body)
    given = _uko_connection(body, keystore.type, create=False, kept=kept, stored=stored)
    credentials = given.credentials if given.credentials is not None else body.credentials
    connection = {**_connection(body), **given.connection}
    if given.google_location is not None:
        connection["location"] = given.google_location  # the Cloud KMS location
    with ExitStack() as stack, _ca_pem_named():
        credentials_file, ca_file = _inline_files(call, keystore.type, credentials, body.ca_pem, stack)
        request = UpdateRequest(
            **connection,
            ca_file=ca_file,
            allow_insecure_http=body.allow_insecure_http,
            drift_policy=body.drift_policy.value if body.drift_policy is not None else None,
            credentials_file=credentials_file,
            credentials_from_environment=body.credentials_from_environment,
            name=body.name,
            description=body.description,
            groups=tuple(body.groups) if body.groups is not None else None,
            uko_fields=given.kept or None,
        )
        after = await update_ops.update_keystore(
            ctx, keystore.id, request, version, call.deps.keystore_checks.timeout_seconds
        )
    return call.answer(await keystore_document(call, after), tag=(after.id, after.version))


#: what a refused disconnect adds for UKO's modes that change keys first: how to do that in keyorch
_MODE_HINTS = {
    "deactivate": "keyorch does not deactivate keys as part of a disconnect (a deactivated key still blocks it)",
    "destroy": "keyorch destroys keys only through their lifecycle (deactivate, then destroy, with dual "
    "authorization where the vault requires it), then disconnect",
}


async def disconnect_keystore(call: Call) -> web.StreamResponse:
    q = call.parsed(KeystoreDeleteQuery, call.query)
    try:
        mode = uko.disconnect_mode(q.mode)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, target="mode", target_type="parameter") from None
    keystore = await call.keystore(call.path_id)
    vault = await call.vault(keystore.vault_id)
    ctx = await call.authorize(Permission.ADMINISTER, vault.name, "keystore.disconnect", "keystore", keystore.id)
    version = await call.expected_version(ctx, "keystore.disconnect", "keystore", keystore.id, keystore.version)
    try:
        _, note = await ops.disconnect_checked(ctx, keystore.id, version)
    except RuleViolation as exc:
        hint = _MODE_HINTS.get(mode)
        if hint is None or type(exc) is not RuleViolation:  # a stale If-Match (412) stays what it is
            raise
        raise RuleViolation(f"{exc.message} (mode {mode}: {hint})", target=exc.target) from None
    response = web.Response(status=204)
    if note is not None:
        response.headers[NOTE_HEADER] = " ".join(note.encode("ascii", "replace").decode().split())
    return response


ROUTES = [
    Route(
        "GET",
        "/keystores",
        list_keystores,
        "list_keystores",
        "List keystores in the vaults the caller can read",
        "keystores",
        Permission.READ,
        query=KeystoreFilter,
        response=KeystoreList,
        refusals=(403, 404),
    ),
    Route(
        "POST",
        "/keystores",
        connect_keystore,
        "connect_keystore",
        "Connect a keystore to a vault (keyorch's body or UKO's of its type); with dry_run=true, test its "
        "connection and store nothing (200 with the keystore it would connect)",
        "keystores",
        Permission.ADMINISTER,
        body=KeystoreConnect,
        query=KeystoreConnectQuery,
        success=201,
        response=KeystoreDocument,
        refusals=(404, 409, 503),
    ),
    Route(
        "GET",
        "/keystores/{id}",
        get_keystore,
        "get_keystore",
        "Get a keystore by id or name",
        "keystores",
        Permission.READ,
        response=KeystoreDocument,
        refusals=(404,),
    ),
    Route(
        "GET",
        "/keystores/{id}/status",
        keystore_status,
        "get_keystore_status",
        "A keystore's health (UKO's KeystoreStatus) from a live check with the credentials keyorch uses, "
        "cached a few seconds",
        "keystores",
        Permission.READ,
        refusals=(404,),
        response=KeystoreHealth,
    ),
    Route(
        "PATCH",
        "/keystores/{id}",
        update_keystore,
        "update_keystore",
        "Change a keystore (keyorch's body or UKO's KeystoreUpdateRequest of its type): its name, description, "
        "groups, connection, credentials or drift policy; a new connection or credentials are tested live before "
        "they are saved (its endpoint or TLS trust only with its credentials again)",
        "keystores",
        Permission.ADMINISTER,
        body=KeystoreUpdate,
        if_match=True,
        refusals=(404, 409, 503),
        response=KeystoreDocument,
    ),
    Route(
        "DELETE",
        "/keystores/{id}",
        disconnect_keystore,
        "disconnect_keystore",
        "Disconnect a keystore (UKO's mode; refused in every mode while an active, deactivated or compromised key "
        "targets it); 204, no content",
        "keystores",
        Permission.ADMINISTER,
        query=KeystoreDeleteQuery,
        success=204,
        if_match=True,
        refusals=(404, 409),
    ),
]
