"""The one interface every CLI command calls, implemented twice.

* :class:`~keyorch.cli.direct.DirectBackend` calls the service functions on the database itself
  (``--db``): for bootstrap and one-operator use; the user is self-declared (``--user``) and recorded
  with the source ``cli-direct``, so the steps of dual authorization are refused there.
* :class:`~keyorch.cli.remote.RemoteBackend` sends each call to a daemon's REST API (``--server``),
  acting as the bearer token's user with its roles (source ``api``).

Both answer with the same JSON documents (those of :mod:`keyorch.views` and
:mod:`keyorch.reconcile.report`), so a command prints the same table or ``--output json`` and exits
with the same code in either mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from keyorch.service.adoption_request import AdoptRequest, UkoMigration
from keyorch.service.keys import KEEP, KeyFilter
from keyorch.service.keystore_update import UpdateRequest
from keyorch.service.keystores import ConnectRequest, KeystoreQuery
from keyorch.service.template_edits import TemplateEdit

Doc = dict[str, Any]

#: The `keyorch key …` state actions.
KeyCommand = Literal[
    "activate",
    "deactivate",
    "reactivate",
    "compromise",
    "destroy",
    "remove",
    "authorize-deletion",
    "withdraw-authorization",
    "rotate",
]

ProgressHook = Callable[[int, int], None]


@dataclass(frozen=True)
class TemplateRequest:
    """The fields of `keyorch template create` (those of the API's template body)."""

    vault: str
    name: str
    keystores: tuple[str, ...]
    algorithm: str = "aes"
    size: int = 256
    naming_scheme: str = "{label}"
    state: str = "pre_active"
    #: UKO's distribution entries: (group, keystore type)
    groups: tuple[tuple[str, str], ...] = ()
    description: str = ""
    activation_date: str | None = None
    expiration_date: str | None = None
    deactivate_on_rotation: bool = False
    #: how often its keys rotate (an ISO 8601 duration; None: on no schedule)
    rotation_policy: str | None = None


@dataclass(frozen=True)
class VaultChanges:
    """What `keyorch vault update` changes (None: leave as it is)."""

    name: str | None = None
    description: str | None = None
    recovery_key_label: str | None = None


class Backend(Protocol):
    async def create_vault(
        self, name: str, dual_auth: bool, description: str = "", recovery_key_label: str | None = None
    ) -> Doc: ...

    async def update_vault(self, ref: str, if_version: int | None, changes: VaultChanges) -> Doc: ...

    async def list_vaults(self) -> list[Doc]: ...

    async def get_vault(self, ref: str) -> Doc: ...

    async def delete_vault(self, ref: str, if_version: int | None) -> Doc: ...

    async def connect_keystore(self, request: ConnectRequest, dry_run: bool = False) -> Doc:
        """The connected keystore; with ``dry_run``, the one that would be, after its connection test passed."""
        ...

    async def keystore_status(self, ref: str) -> Doc:
        """UKO's KeystoreStatus of the keystore, from a live check."""
        ...

    async def list_keystores(
        self, vault: str | None, include_disconnected: bool, query: KeystoreQuery | None = None
    ) -> list[Doc]: ...

    async def migrate_uko(self, request: UkoMigration) -> Doc:
        """Each entry of a UKO managed-key export adopted (``views_adoption.migration_json``)."""
        ...

    async def adopt_keys(self, request: AdoptRequest) -> Doc:
        """The adoption's plan (a dry run) or outcome (``views_adoption.adoption_json``)."""
        ...

    async def scan_keystore(self, ref: str, uko_names: Sequence[str], made_by: str | None) -> Doc:
        """The keystore's keys that no managed key targets (``views.scan_json``), read live from the provider."""
        ...

    async def get_keystore(self, ref: str) -> Doc: ...

    async def update_keystore(self, ref: str, request: UpdateRequest, if_version: int | None) -> Doc: ...

    async def disconnect_keystore(self, ref: str, if_version: int | None) -> tuple[Doc, str | None]:
        """The disconnected keystore, and a note when its live contents could not be checked."""
        ...

    async def create_template(self, request: TemplateRequest) -> Doc: ...

    async def list_templates(self, vault: str | None) -> list[Doc]: ...

    async def get_template(self, ref: str) -> Doc: ...

    async def update_template(self, ref: str, if_version: int | None, edit: TemplateEdit) -> Doc: ...

    async def delete_template(self, ref: str, if_version: int | None) -> Doc:
        """The template as it was when deleted."""
        ...

    async def archive_template(self, ref: str, archived: bool, if_version: int | None) -> Doc: ...

    async def update_key_from_template(self, ref: str, dry_run: bool, if_version: int | None) -> Doc:
        """The key realigned with its template (with ``dry_run``: as it would be), with its ``changes``."""
        ...

    async def create_key(
        self,
        template: str,
        label: str,
        state: str | None,
        deactivate_on_rotation: bool | None = None,
        rotation_policy: str | None = None,
    ) -> Doc: ...

    async def update_key(
        self, ref: str, if_version: int | None, *, deactivate_on_rotation: bool | None, rotation_policy: Any = KEEP
    ) -> Doc:
        """The key after ``key update`` (None: as it is; ``rotation_policy`` KEEP: as it is, None: its template's
        again)."""
        ...

    async def list_keys(self, flt: KeyFilter) -> list[Doc]: ...

    async def get_key(self, ref: str) -> Doc: ...

    async def key_action(self, action: KeyCommand, ref: str, if_version: int | None, *, force: bool = False) -> Doc:
        """The key after the action (for ``remove``: as it was when removed)."""
        ...

    async def key_versions(self, ref: str) -> Doc:
        """The key's versions (``versions``) and each keystore's version and primary version id."""
        ...

    async def sync_key(self, ref: str) -> Doc: ...

    async def reconcile_once(self, progress: ProgressHook | None) -> Doc: ...

    async def plan(self, refs: Sequence[str]) -> Doc: ...

    async def audit_records(self, object_id: str | None, limit: int) -> list[Doc]: ...

    async def verify_audit(self, anchor: str | None = None) -> Doc: ...

    async def aclose(self) -> None: ...
