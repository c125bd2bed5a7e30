"""The CLI's backend over a daemon's REST API (``keyorch --server URL``): the token's user and roles act.

Every call is one or two requests to ``/api/v4`` (a change to an existing object first reads it for
its ETag, sent as ``If-Match``; ``--if-version N`` sends version N instead). Lists are read page by
page. An error answer becomes a :class:`RemoteRefusal` carrying the API's message and the exit code
of the refusal its ``code`` names, so a refused command exits as it would in direct mode.

TLS is verified always (against ``--server-ca-file`` when given); plain ``http://`` is accepted only
to a loopback address, since the bearer token would otherwise cross the network in clear.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from keyorch.api.routes_keystores import NOTE_HEADER
from keyorch.cli.backend import Doc, KeyCommand, ProgressHook, TemplateRequest, VaultChanges
from keyorch.credentials import read_credentials_file
from keyorch.domain import uko
from keyorch.domain.errors import ConfigurationError, InvalidInput, KeyorchError
from keyorch.domain.validation import is_loopback_host, parse_keystore_type
from keyorch.service.adoption_request import AdoptRequest, UkoMigration
from keyorch.service.keys import KEEP as KEY_KEEP
from keyorch.service.keys import KeyFilter
from keyorch.service.keystore_update import UpdateRequest
from keyorch.service.keystores import CONNECTION_FIELDS, ConnectRequest, KeystoreQuery, read_ca_file
from keyorch.service.template_edits import KEEP, TemplateEdit

API = "/api/v4"
PAGE = 1000
EXIT_INTERNAL = 70

#: CLI key actions → (HTTP method, path suffix, query).
_KEY_ROUTES: dict[str, tuple[str, str, dict[str, str]]] = {
    "activate": ("POST", "/activate", {"transition": "activate"}),
    "reactivate": ("POST", "/activate", {"transition": "reactivate"}),
    "deactivate": ("POST", "/deactivate", {}),
    "compromise": ("POST", "/compromise", {}),
    "destroy": ("POST", "/destroy", {}),
    "remove": ("DELETE", "", {}),
    "authorize-deletion": ("POST", "/authorize_deletion", {}),
    "withdraw-authorization": ("POST", "/withdraw_authorization", {}),
    "rotate": ("POST", "/rotate", {}),
}


class RemoteRefusal(KeyorchError):
    """The daemon refused a request; ``exit_code`` is that of the refusal its error code names."""

    def __init__(self, message: str, exit_code: int, code: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.code = code


class ServerUnreachable(KeyorchError):
    exit_code = 4
    code = "server_unreachable"


def _error_classes() -> dict[str, int]:
    """Error code → exit code, for every refusal keyorch defines (one table: the error classes)."""
    import keyorch.api.errors
    import keyorch.providers.errors
    import keyorch.store.audit_chain  # noqa: F401 - these modules define error codes too

    found: dict[str, int] = {}
    pending: list[type[KeyorchError]] = [KeyorchError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls.exit_code)
        pending.extend(cls.__subclasses__())
    found["internal_error"] = EXIT_INTERNAL
    return found


def _exit_code_for_status(status: int) -> int:
    """For an error code this CLI does not know (a newer daemon): by the HTTP status."""
    if status in (403, 409, 412):
        return 3
    if status in (502, 503, 504):
        return 4
    return EXIT_INTERNAL if status >= 500 else 2


def check_server_url(url: str) -> str:
    """The base URL without a trailing slash; refuse what would expose the token (one sentence)."""
    usage = "--server must be a URL such as https://keyorch.example.com:8443"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port
    except ValueError:
        raise ConfigurationError(usage) from None
    if parts.scheme not in ("https", "http") or not host:
        raise ConfigurationError(usage)
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ConfigurationError(
            f"--server for host {host!r} must not carry a user name, password, query or fragment; "
            "the token comes from KEYORCH_TOKEN or --token-file"
        )
    if parts.scheme == "http" and not is_loopback_host(host):
        raise ConfigurationError(
            f"--server http://{host} is refused: the token would cross the network in clear; use https:// "
            "(with --server-ca-file for a private CA), plain http:// is allowed only to a loopback address"
        )
    return url.rstrip("/")


def _ssl_context(ca_file: str | None) -> ssl.SSLContext | bool:
    if ca_file is None:
        return True
    try:
        return ssl.create_default_context(cadata=read_ca_file(ca_file))
    except KeyorchError as exc:
        raise ConfigurationError(exc.message.replace("--ca-file", "--server-ca-file")) from None


def _ref(ref: str) -> str:
    return quote(ref, safe="")


class RemoteBackend:
    def __init__(self, server: str, token: str, *, ca_file: str | None = None) -> None:
        self.base = check_server_url(server)
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self._ssl = _ssl_context(ca_file)
        self._session: aiohttp.ClientSession | None = None
        self._codes = _error_classes()

    def __repr__(self) -> str:
        return f"RemoteBackend(server={self.base!r})"

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=600)
            connector = aiohttp.TCPConnector(ssl=self._ssl)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False)
        return self._session

    async def _call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        if_match: str | None = None,
    ) -> tuple[Any, Mapping[str, str]]:
        """One request; the parsed body and headers of a 2xx answer, else a :class:`RemoteRefusal`."""
        headers = dict(self._headers)
        if if_match is not None:
            headers["If-Match"] = if_match
        url = self.base + API + path
        try:
            async with self._open().request(
                method, url, params=query, json=body, headers=headers, allow_redirects=False
            ) as response:
                raw = await response.read()
                status, answer_headers = response.status, response.headers.copy()
        except aiohttp.ClientSSLError as exc:
            raise ConfigurationError(
                f"TLS with the keyorch server at {self.base} failed ({type(exc).__name__}); check --server "
                "and --server-ca-file"
            ) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ServerUnreachable(f"cannot reach the keyorch server at {self.base} ({type(exc).__name__})") from None
        doc = self._parse(raw, status)
        if 200 <= status < 300:
            return doc, answer_headers
        raise self._refusal(status, doc)

    def _parse(self, raw: bytes, status: int) -> Any:
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ServerUnreachable(
                f"the server at {self.base} answered HTTP {status} with a body that is not JSON: is it keyorch?"
            ) from None

    def _refusal(self, status: int, doc: Any) -> RemoteRefusal:
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if not isinstance(errors, list) or not errors or not all(isinstance(e, dict) for e in errors):
            return RemoteRefusal(f"the keyorch server answered HTTP {status}", _exit_code_for_status(status), "")
        code = str(errors[0].get("code", ""))
        message = "; ".join(str(e.get("message", "")) for e in errors)
        if status == 401:
            message += " (check KEYORCH_TOKEN or --token-file)"
        return RemoteRefusal(message, self._codes.get(code, _exit_code_for_status(status)), code)

    async def _json(self, method: str, path: str, *, query: Mapping[str, str] | None = None, body: Any = None) -> Doc:
        """A request whose answer is a JSON object."""
        doc, _ = await self._call(method, path, query=query, body=body)
        return self._object(doc)

    def _object(self, doc: Any) -> Doc:
        if not isinstance(doc, dict):
            raise ServerUnreachable(f"the server at {self.base} answered with something other than a JSON object")
        return doc

    async def _get(self, path: str, query: Mapping[str, str] | None = None) -> Doc:
        return await self._json("GET", path, query=query)

    async def _all(self, path: str, name: str, query: Mapping[str, str] | None = None) -> list[Doc]:
        """Every item of a paged list, page by page."""
        items: list[Doc] = []
        while True:
            page = await self._get(path, {**(query or {}), "limit": str(PAGE), "offset": str(len(items))})
            found: list[Doc] = page[name]
            items.extend(found)
            if not found or len(items) >= int(page["total_count"]):
                return items

    async def _current(self, path: str, if_version: int | None) -> tuple[Doc, str]:
        """The object and the If-Match to change it with: its ETag, or ``--if-version``'s version."""
        doc, headers = await self._call("GET", path)
        doc, etag = self._object(doc), headers.get("ETag", "")
        return doc, etag if if_version is None else f'"{doc["id"]}:{if_version}"'

    # --- vaults ---------------------------------------------------------------------------

    async def create_vault(
        self, name: str, dual_auth: bool, description: str = "", recovery_key_label: str | None = None
    ) -> Doc:
        body: dict[str, Any] = {"name": name, "dual_auth": dual_auth, "description": description}
        if recovery_key_label is not None:
            body["recovery_key_label"] = recovery_key_label
        return await self._json("POST", "/vaults", body=body)

    async def update_vault(self, ref: str, if_version: int | None, changes: VaultChanges) -> Doc:
        vault, if_match = await self._current(f"/vaults/{_ref(ref)}", if_version)
        body = {k: v for k, v in vars(changes).items() if v is not None}
        doc, _ = await self._call("PATCH", f"/vaults/{_ref(vault['id'])}", body=body, if_match=if_match)
        return self._object(doc)

    async def list_vaults(self) -> list[Doc]:
        return await self._all("/vaults", "vaults")

    async def get_vault(self, ref: str) -> Doc:
        return await self._get(f"/vaults/{_ref(ref)}")

    async def delete_vault(self, ref: str, if_version: int | None) -> Doc:
        vault, if_match = await self._current(f"/vaults/{_ref(ref)}", if_version)
        await self._call("DELETE", f"/vaults/{_ref(vault['id'])}", if_match=if_match)
        return vault

    # --- keystores ------------------------------------------------------------------------

    async def connect_keystore(self, request: ConnectRequest, dry_run: bool = False) -> Doc:
        body: Doc = {
            "vault": request.vault,
            "name": request.name,
            "type": request.type,
            "credentials_from_environment": request.credentials_from_environment,
            "allow_insecure_http": request.allow_insecure_http,
            "drift_policy": request.drift_policy,
            "provider_quotas": request.provider_quotas,
        }
        for field in CONNECTION_FIELDS:
            value = getattr(request, field)
            if value is not None:
                body[field] = value
        if request.google_location is not None:
            body["google_location"] = request.google_location
        body.update(request.uko_fields)  # UKO's fields of the type (azure_location, …): the API takes them by name
        if request.description:
            body["description"] = request.description
        if request.groups:
            body["groups"] = list(request.groups)
        if request.rate_per_second is not None:
            body["rate_per_second"] = request.rate_per_second
        if request.max_concurrency is not None:
            body["max_concurrency"] = request.max_concurrency
        if request.credentials_file:  # read and checked here; sent inline, stored encrypted by the daemon
            body["credentials"] = read_credentials_file(parse_keystore_type(request.type), request.credentials_file)
        if request.ca_file:
            body["ca_pem"] = read_ca_file(request.ca_file)
        return await self._json("POST", "/keystores", query={"dry_run": "true"} if dry_run else None, body=body)

    async def keystore_status(self, ref: str) -> Doc:
        return await self._get(f"/keystores/{_ref(ref)}/status")

    async def migrate_uko(self, request: UkoMigration) -> Doc:
        raise ConfigurationError(
            "keyorch migrate uko works on the database (--db or --config), not through --server: the API has no "
            "migration route (it adopts with POST /managed_keys/adopt, one managed key or filter at a time)"
        )

    async def adopt_keys(self, request: AdoptRequest) -> Doc:
        sel = request.selection
        body: Doc = {
            "keystores": [{"id": ref} for ref in request.keystores],
            "vault": {"id": request.vault},
            "template": {"id": request.template},
            "marker": request.marker,
        }
        if sel.ids:
            body["instances"] = [{"keystore": {"id": ks}, "key_id_in_keystore": key_id} for ks, key_id in sel.ids]
        else:
            body["filter"] = {
                "all_unmanaged": sel.all_unmanaged,
                "name_pattern": list(sel.name_patterns),
                "tags": [{"name": n, "value": v} for n, v in sel.tags],
            }
        for name in ("label", "state"):
            if (value := getattr(request, name)) is not None:
                body[name] = value
        query = {"dry_run": "true"} if request.dry_run else None
        doc, _ = await self._call("POST", "/managed_keys/adopt", query=query, body=body)
        return dict(doc)

    async def scan_keystore(self, ref: str, uko_names: Sequence[str], made_by: str | None) -> Doc:
        """Every page of ``GET /keystores/{id}/unmanaged_keys`` (each page is a scan of its own: the pages are
        as large as the API allows, so a keystore of up to that many unmanaged keys is scanned once)."""
        query = {k: v for k, v in (("uko_name", ",".join(uko_names)), ("made_by", made_by or "")) if v}
        path = f"/keystores/{_ref(ref)}/unmanaged_keys"
        first = await self._get(path, {**query, "limit": str(PAGE), "offset": "0"})
        keys: list[Doc] = list(first["unmanaged_keys"])
        while keys and len(keys) < int(first["total_count"]):
            page = await self._get(path, {**query, "limit": str(PAGE), "offset": str(len(keys))})
            if not page["unmanaged_keys"]:
                break
            keys.extend(page["unmanaged_keys"])
        names = ("keystore", "keys_in_keystore", "managed_in_keystore")
        return {**{name: first[name] for name in names}, "unmanaged_keys": keys}

    async def update_keystore(self, ref: str, request: UpdateRequest, if_version: int | None) -> Doc:
        keystore, if_match = await self._current(f"/keystores/{_ref(ref)}", if_version)
        body: Doc = {"credentials_from_environment": request.credentials_from_environment}
        for name in (*CONNECTION_FIELDS, "allow_insecure_http", "drift_policy"):
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        if request.credentials_file:
            body["credentials"] = read_credentials_file(uko.keystore_type(keystore["type"]), request.credentials_file)
        if request.ca_file:
            body["ca_pem"] = read_ca_file(request.ca_file)
        doc, _ = await self._call("PATCH", f"/keystores/{_ref(keystore['id'])}", body=body, if_match=if_match)
        return self._object(doc)

    async def list_keystores(
        self, vault: str | None, include_disconnected: bool, query: KeystoreQuery | None = None
    ) -> list[Doc]:
        params = {"include_disconnected": "true" if include_disconnected else "false"}
        if vault is not None:
            params["vault"] = vault
        if query is not None and query.types is not None:
            params["type"] = ",".join(uko.uko_type(t) for t in query.types)
        if query is not None and query.groups is not None:
            params["groups[]"] = ",".join(query.groups)
        return await self._all("/keystores", "keystores", params)

    async def get_keystore(self, ref: str) -> Doc:
        return await self._get(f"/keystores/{_ref(ref)}")

    async def disconnect_keystore(self, ref: str, if_version: int | None) -> tuple[Doc, str | None]:
        keystore, if_match = await self._current(f"/keystores/{_ref(ref)}", if_version)
        _, headers = await self._call("DELETE", f"/keystores/{_ref(keystore['id'])}", if_match=if_match)
        # the DELETE answers 204, as UKO's does: the keystore as it is now is read back
        return await self.get_keystore(keystore["id"]), headers.get(NOTE_HEADER)

    # --- templates ------------------------------------------------------------------------

    async def create_template(self, request: TemplateRequest) -> Doc:
        fields = asdict(request)
        groups = [{"group": group, "type": kind} for group, kind in fields.pop("groups")]
        dates = {k: fields.pop(k) for k in ("activation_date", "expiration_date", "rotation_policy")}
        deactivate = fields.pop("deactivate_on_rotation")
        body = {**fields, "keystores": [*request.keystores, *groups]}
        key_properties: Doc = {k: v for k, v in dates.items() if v is not None}
        if deactivate:
            key_properties["deactivate_on_rotation"] = True
        if key_properties:
            body["key"] = key_properties
        return await self._json("POST", "/templates", body=body)

    async def list_templates(self, vault: str | None) -> list[Doc]:
        return await self._all("/templates", "templates", {"vault": vault} if vault is not None else None)

    async def get_template(self, ref: str) -> Doc:
        return await self._get(f"/templates/{_ref(ref)}")

    async def update_template(self, ref: str, if_version: int | None, edit: TemplateEdit) -> Doc:
        template, if_match = await self._current(f"/templates/{_ref(ref)}", if_version)
        body: Doc = {k: v for k, v in (("name", edit.name), ("description", edit.description)) if v is not None}
        if edit.keystores is not None or edit.groups is not None:
            current = template["keystores"]
            explicit = list(edit.keystores) if edit.keystores is not None else [e["id"] for e in current if "id" in e]
            groups = (
                [{"group": g, "type": t} for g, t in edit.groups]
                if edit.groups is not None
                else [e for e in current if "group" in e]
            )
            body["keystores"] = [*explicit, *groups]
        fields = ("activation_date", "expiration_date", "rotation_policy")
        dates = {k: getattr(edit, k) for k in fields if getattr(edit, k) is not KEEP}
        if edit.deactivate_on_rotation is not None:
            dates["deactivate_on_rotation"] = edit.deactivate_on_rotation
        if dates:
            body["key"] = dates
        doc, _ = await self._call("PATCH", f"/templates/{_ref(template['id'])}", body=body, if_match=if_match)
        return self._object(doc)

    async def delete_template(self, ref: str, if_version: int | None) -> Doc:
        template, if_match = await self._current(f"/templates/{_ref(ref)}", if_version)
        await self._call("DELETE", f"/templates/{_ref(template['id'])}", if_match=if_match)
        return template

    async def archive_template(self, ref: str, archived: bool, if_version: int | None) -> Doc:
        template, if_match = await self._current(f"/templates/{_ref(ref)}", if_version)
        action = "archive" if archived else "unarchive"
        doc, _ = await self._call("POST", f"/templates/{_ref(template['id'])}/{action}", if_match=if_match)
        return self._object(doc)

    async def update_key_from_template(self, ref: str, dry_run: bool, if_version: int | None) -> Doc:
        key, if_match = await self._current(f"/managed_keys/{_ref(ref)}", if_version)
        path = f"/managed_keys/{_ref(key['id'])}/update_from_template"
        query = {"dry_run": "true"} if dry_run else None
        doc, _ = await self._call("POST", path, query=query, if_match=if_match)
        return self._object(doc)

    # --- keys -----------------------------------------------------------------------------

    async def create_key(
        self,
        template: str,
        label: str,
        state: str | None,
        deactivate_on_rotation: bool | None = None,
        rotation_policy: str | None = None,
    ) -> Doc:
        body: Doc = {"template": template, "label": label}
        if state is not None:
            body["state"] = state
        if deactivate_on_rotation is not None:
            body["deactivate_on_rotation"] = deactivate_on_rotation
        if rotation_policy is not None:
            body["rotation_policy"] = rotation_policy
        return await self._json("POST", "/managed_keys", body=body)

    async def update_key(
        self, ref: str, if_version: int | None, *, deactivate_on_rotation: bool | None, rotation_policy: Any = KEY_KEEP
    ) -> Doc:
        key, if_match = await self._current(f"/managed_keys/{_ref(ref)}", if_version)
        body: Doc = {} if deactivate_on_rotation is None else {"deactivate_on_rotation": deactivate_on_rotation}
        if rotation_policy is not KEY_KEEP:
            body["rotation_policy"] = rotation_policy
        doc, _ = await self._call("PATCH", f"/managed_keys/{_ref(key['id'])}", body=body, if_match=if_match)
        return self._object(doc)

    async def list_keys(self, flt: KeyFilter) -> list[Doc]:
        query = {
            "out_of_sync": "true" if flt.out_of_sync else "false",
            "include_destroyed": "true" if flt.include_destroyed else "false",
        }
        if flt.vault is not None:
            query["vault"] = flt.vault
        if flt.state is not None:
            query["state"] = flt.state
        return await self._all("/managed_keys", "managed_keys", query)

    async def get_key(self, ref: str) -> Doc:
        return await self._get(f"/managed_keys/{_ref(ref)}")

    async def key_action(self, action: KeyCommand, ref: str, if_version: int | None, *, force: bool = False) -> Doc:
        method, suffix, query = _KEY_ROUTES[action]
        key, if_match = await self._current(f"/managed_keys/{_ref(ref)}", if_version)
        if action == "destroy":
            query = {"force": "true" if force else "false"}
        path = f"/managed_keys/{_ref(key['id'])}{suffix}"
        doc, _ = await self._call(method, path, query=query, if_match=if_match)
        return key if action == "remove" else self._object(doc)

    async def key_versions(self, ref: str) -> Doc:
        return await self._get(f"/managed_keys/{_ref(ref)}/versions")

    # --- reconciling ----------------------------------------------------------------------

    async def sync_key(self, ref: str) -> Doc:
        doc = await self._json("POST", f"/managed_keys/{_ref(ref)}/sync_status_in_keystores")
        doc.pop("id", None)  # the API names the key; the document is otherwise the one direct mode prints
        return doc

    async def reconcile_once(self, progress: ProgressHook | None) -> Doc:
        return await self._json("POST", "/reconcile")

    async def plan(self, refs: Sequence[str]) -> Doc:
        return await self._json("POST", "/plan", body={"keys": list(refs)})

    # --- audit ----------------------------------------------------------------------------

    async def audit_records(self, object_id: str | None, limit: int) -> list[Doc]:
        query = {"limit": str(limit)}
        if object_id is not None:
            query["object"] = object_id
        records: list[Doc] = (await self._get("/audit_records", query))["audit_records"]
        return records

    async def verify_audit(self, anchor: str | None = None) -> Doc:
        if anchor is not None:
            raise InvalidInput(
                "--anchor is checked on the database directly: run `keyorch audit verify --anchor` without --server",
                target="anchor",
            )
        return await self._get("/audit_chain")
