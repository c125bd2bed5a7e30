"""The names and kinds of the objects a key refers to (its vault, template and keystores), read once per answer
so a page of keys shows UKO's ``{id, name, href}`` references without one query per key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from keyorch.domain.models import Keystore
from keyorch.service.context import ServiceContext


@dataclass(frozen=True)
class Directory:
    """id → name of vaults and templates, id → record of every keystore ever connected (a disconnected keystore's
    targets keep its name and type)."""

    vaults: Mapping[str, str] = field(default_factory=dict)
    templates: Mapping[str, str] = field(default_factory=dict)
    keystores: Mapping[str, Keystore] = field(default_factory=dict)
    #: template id → its rotation policy, for the templates that have one (a key's schedule without its own)
    rotation_policies: Mapping[str, str] = field(default_factory=dict)

    def keystore_name(self, keystore_id: str) -> str | None:
        found = self.keystores.get(keystore_id)
        return found.name if found is not None else None

    @property
    def keystore_names(self) -> dict[str, str]:
        return {k: v.name for k, v in self.keystores.items()}


async def load_directory(ctx: ServiceContext) -> Directory:
    async with ctx.store.read() as tx:
        vaults = {v.id: v.name for v in await tx.list_vaults()}
        found = await tx.list_templates()
        keystores = {k.id: k for k in await tx.list_keystores(include_disconnected=True)}
    return Directory(
        vaults=vaults,
        templates={t.id: t.name for t in found},
        keystores=keystores,
        rotation_policies={t.id: t.rotation_policy for t in found if t.rotation_policy is not None},
    )
