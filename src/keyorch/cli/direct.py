"""The CLI's backend on the database itself: each call is the service function, its result as a document."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from keyorch.cli.backend import Doc, KeyCommand, ProgressHook, TemplateRequest, VaultChanges
from keyorch.domain.models import Keystore, KeyTemplate, ManagedKey, Vault, VaultCounts
from keyorch.domain.rotation import DEFAULT_MIN_INTERVAL
from keyorch.reconcile import report
from keyorch.reconcile.clients import ClientPool
from keyorch.reconcile.controller import Controller
from keyorch.service import (
    adoption,
    audit,
    inventory,
    key_template,
    keys,
    keystore_update,
    keystores,
    rotation,
    template_edits,
    templates,
    uko_migration,
    vaults,
)
from keyorch.service.adoption_request import AdoptRequest, UkoMigration
from keyorch.service.context import ServiceContext
from keyorch.service.directory import load_directory
from keyorch.service.keys import KEEP, KeyFilter
from keyorch.service.keystore_probe import DEFAULT_CHECK_TIMEOUT_SECONDS, StatusChecks
from keyorch.service.keystore_update import UpdateRequest
from keyorch.service.keystores import ConnectRequest, KeystoreQuery
from keyorch.service.template_edits import TemplateEdit
from keyorch.service.versions import check_version
from keyorch.settings import ReconcileSettings
from keyorch.store.audit_chain import Anchor
from keyorch.views import (
    audit_json,
    key_json,
    keystore_dry_run_json,
    keystore_json,
    keystore_status_json,
    realignment_json,
    scan_json,
    statuses_json,
    template_json,
    vault_json,
    versions_json,
)
from keyorch.views_adoption import adoption_json, migration_json

_KEY_ACTIONS: dict[str, Callable[[ServiceContext, str, int | None], Awaitable[ManagedKey]]] = {
    "activate": keys.activate_key,
    "deactivate": keys.deactivate_key,
    "reactivate": keys.reactivate_key,
    "compromise": keys.compromise_key,
    "remove": keys.remove_key,
    "authorize-deletion": keys.authorize_deletion,
    "withdraw-authorization": keys.withdraw_authorization,
}


@dataclass
class DirectBackend:
    ctx: ServiceContext
    reconcile: ReconcileSettings = field(default_factory=ReconcileSettings)
    #: a keystore's connection test takes this at most (setting api.keystore_check_timeout_seconds)
    check_timeout_seconds: float = DEFAULT_CHECK_TIMEOUT_SECONDS
    #: a key rotates at most once in this long (setting keys.rotation_min_interval_seconds)
    rotation_min_interval: timedelta = DEFAULT_MIN_INTERVAL

    async def aclose(self) -> None:
        await self.ctx.store.close()

    # --- vaults ---------------------------------------------------------------------------

    async def _vault_json(self, vault: Vault) -> Doc:
        counts = await vaults.vault_counts(self.ctx, [vault.id])
        return vault_json(vault, counts[vault.id])

    async def create_vault(
        self, name: str, dual_auth: bool, description: str = "", recovery_key_label: str | None = None
    ) -> Doc:
        made = await vaults.create_vault(self.ctx, name, dual_auth, description, recovery_key_label)
        return vault_json(made, VaultCounts())

    async def update_vault(self, ref: str, if_version: int | None, changes: VaultChanges) -> Doc:
        after = await vaults.update_vault(
            self.ctx,
            ref,
            if_version,
            name=changes.name,
            description=changes.description,
            recovery_key_label=changes.recovery_key_label,
        )
        return await self._vault_json(after)

    async def list_vaults(self) -> list[Doc]:
        found = await vaults.list_vaults(self.ctx)
        counts = await vaults.vault_counts(self.ctx, [v.id for v in found])
        return [vault_json(v, counts[v.id]) for v in found]

    async def get_vault(self, ref: str) -> Doc:
        return await self._vault_json(await vaults.get_vault(self.ctx, ref))

    async def delete_vault(self, ref: str, if_version: int | None) -> Doc:
        # an empty vault (the service refuses any other): nothing left to count
        return vault_json(await vaults.delete_vault(self.ctx, ref, if_version), VaultCounts())

    # --- keystores ------------------------------------------------------------------------

    async def _vault_names(self) -> dict[str, str]:
        return {v.id: v.name for v in await vaults.list_vaults(self.ctx)}

    async def _keystore_json(self, keystore: Keystore) -> Doc:
        return keystore_json(keystore, (await self._vault_names()).get(keystore.vault_id))

    async def connect_keystore(self, request: ConnectRequest, dry_run: bool = False) -> Doc:
        if dry_run:
            tried, health = await keystores.try_connect(self.ctx, request, self.check_timeout_seconds)
            vault_name = (await self._vault_names()).get(tried.vault_id)
            return keystore_dry_run_json(tried, vault_name, health, self.ctx.clock.now())
        return await self._keystore_json(await keystores.connect_keystore(self.ctx, request))

    async def keystore_status(self, ref: str) -> Doc:
        keystore = await keystores.get_keystore(self.ctx, ref)
        if not keystore.connected:
            return keystore_status_json(keystore, None, None)
        checks = StatusChecks(cache_seconds=0, timeout_seconds=self.check_timeout_seconds)  # one command, one check
        checked = await checks.status(self.ctx, keystore)
        return keystore_status_json(keystore, checked.health, checked.at)

    async def list_keystores(
        self, vault: str | None, include_disconnected: bool, query: KeystoreQuery | None = None
    ) -> list[Doc]:
        found = await keystores.list_keystores(self.ctx, vault, include_disconnected, query)
        names = await self._vault_names()
        return [keystore_json(k, names.get(k.vault_id)) for k in found]

    async def get_keystore(self, ref: str) -> Doc:
        return await self._keystore_json(await keystores.get_keystore(self.ctx, ref))

    async def migrate_uko(self, request: UkoMigration) -> Doc:
        outcomes = await uko_migration.migrate(self.ctx, uko_migration.read_export(request.export), request)
        return migration_json(outcomes, request.dry_run)

    async def adopt_keys(self, request: AdoptRequest) -> Doc:
        return adoption_json(await adoption.run_adoption(self.ctx, request))

    async def scan_keystore(self, ref: str, uko_names: Sequence[str], made_by: str | None) -> Doc:
        keystore = await keystores.get_keystore(self.ctx, ref)
        chosen = inventory.MadeBy(made_by) if made_by is not None else None
        return scan_json(await inventory.unmanaged_keys(self.ctx, keystore, uko_names=uko_names, made_by=chosen))

    async def update_keystore(self, ref: str, request: UpdateRequest, if_version: int | None) -> Doc:
        timeout = self.check_timeout_seconds
        after = await keystore_update.update_keystore(self.ctx, ref, request, if_version, timeout)
        return await self._keystore_json(after)

    async def disconnect_keystore(self, ref: str, if_version: int | None) -> tuple[Doc, str | None]:
        keystore, note = await keystores.disconnect_checked(self.ctx, ref, if_version)
        return await self._keystore_json(keystore), note

    # --- templates ------------------------------------------------------------------------

    async def _template(self, template: KeyTemplate) -> Doc:
        return template_json(template, await templates.template_facts(self.ctx, [template]))

    async def create_template(self, request: TemplateRequest) -> Doc:
        interval = self.rotation_min_interval
        return await self._template(await templates.create_template(self.ctx, **asdict(request), min_interval=interval))

    async def list_templates(self, vault: str | None) -> list[Doc]:
        found = await templates.list_templates(self.ctx, vault)
        facts = await templates.template_facts(self.ctx, found)
        return [template_json(t, facts) for t in found]

    async def get_template(self, ref: str) -> Doc:
        return await self._template(await templates.get_template(self.ctx, ref))

    async def update_template(self, ref: str, if_version: int | None, edit: TemplateEdit) -> Doc:
        interval = self.rotation_min_interval
        after = await template_edits.update_template(self.ctx, ref, edit, if_version, min_interval=interval)
        return await self._template(after)

    async def delete_template(self, ref: str, if_version: int | None) -> Doc:
        return await self._template(await template_edits.delete_template(self.ctx, ref, if_version))

    async def archive_template(self, ref: str, archived: bool, if_version: int | None) -> Doc:
        return await self._template(await template_edits.set_archived(self.ctx, ref, archived, if_version))

    async def update_key_from_template(self, ref: str, dry_run: bool, if_version: int | None) -> Doc:
        if dry_run:
            before, plan = await key_template.preview_update_from_template(self.ctx, ref)
            check_version(before.version, if_version, "key", before.id)
            shown = plan.key
        else:
            shown, plan = await key_template.update_from_template(self.ctx, ref, if_version)
        return realignment_json(plan, shown, await load_directory(self.ctx), dry_run)

    # --- keys -----------------------------------------------------------------------------

    async def _key(self, key: ManagedKey) -> Doc:
        return key_json(key, await load_directory(self.ctx))

    async def create_key(
        self,
        template: str,
        label: str,
        state: str | None,
        deactivate_on_rotation: bool | None = None,
        rotation_policy: str | None = None,
    ) -> Doc:
        made = await keys.create_key(
            self.ctx,
            template=template,
            label=label,
            state=state,
            deactivate_on_rotation=deactivate_on_rotation,
            rotation_policy=rotation_policy,
            min_interval=self.rotation_min_interval,
        )
        return await self._key(made)

    async def update_key(
        self, ref: str, if_version: int | None, *, deactivate_on_rotation: bool | None, rotation_policy: Any = KEEP
    ) -> Doc:
        changed = await keys.update_key(
            self.ctx,
            ref,
            if_version,
            deactivate_on_rotation=deactivate_on_rotation,
            rotation_policy=rotation_policy,
            min_interval=self.rotation_min_interval,
        )
        return await self._key(changed)

    async def list_keys(self, flt: KeyFilter) -> list[Doc]:
        found = await keys.list_keys(self.ctx, flt)
        directory = await load_directory(self.ctx)
        return [key_json(k, directory) for k in found]

    async def get_key(self, ref: str) -> Doc:
        return await self._key(await keys.get_key(self.ctx, ref))

    async def key_action(self, action: KeyCommand, ref: str, if_version: int | None, *, force: bool = False) -> Doc:
        if action == "destroy":
            return await self._key(await keys.destroy_key(self.ctx, ref, force=force, expected_version=if_version))
        if action == "rotate":
            interval = self.rotation_min_interval
            return await self._key(await rotation.rotate_key(self.ctx, ref, if_version, min_interval=interval))
        return await self._key(await _KEY_ACTIONS[action](self.ctx, ref, if_version))

    async def key_versions(self, ref: str) -> Doc:
        found = await rotation.key_versions(self.ctx, ref)
        return versions_json(found.key, found.versions, await load_directory(self.ctx), found.ids)

    # --- reconciling ----------------------------------------------------------------------

    def _controller(self) -> Controller:
        cfg = self.reconcile
        pool = ClientPool(
            self.ctx.store,
            self.ctx.master_key,
            call_timeout_seconds=cfg.call_timeout_seconds,
            environment_endpoints=self.ctx.environment.endpoints,
        )
        return Controller(
            self.ctx.store,
            pool,
            self.ctx.clock,
            workers=cfg.workers,
            listing_timeout_seconds=cfg.listing_timeout_seconds,
            rotation_min_interval=self.rotation_min_interval,
        )

    async def sync_key(self, ref: str) -> Doc:
        controller = self._controller()
        try:
            doc = report.sync_document(await report.sync_pass(controller, ref))
        finally:
            await controller.pool.aclose()
        # as the API answers it: UKO's status of the key in each keystore after the pass
        after = await keys.get_key(self.ctx, ref)
        doc["status_in_keystores"] = statuses_json(after, await load_directory(self.ctx))
        return doc

    async def reconcile_once(self, progress: ProgressHook | None) -> Doc:
        controller = self._controller()
        try:
            return report.reconcile_document(await controller.run_once(progress=progress))
        finally:
            await controller.pool.aclose()

    async def plan(self, refs: Sequence[str]) -> Doc:
        controller = self._controller()
        try:
            return await report.plan_document(controller, refs, self.ctx.clock.now())
        finally:
            await controller.pool.aclose()

    # --- audit ----------------------------------------------------------------------------

    async def audit_records(self, object_id: str | None, limit: int) -> list[Doc]:
        return [audit_json(r) for r in await audit.list_records(self.ctx, object_id, limit)]

    async def verify_audit(self, anchor: str | None = None) -> Doc:
        parsed = Anchor.parse(anchor) if anchor is not None else None
        return (await audit.verify_chain(self.ctx, parsed)).as_json()
