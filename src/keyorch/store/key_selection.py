"""Which managed keys a listing selects and in what order, as SQL: the one place UKO's key filters
(``vault.id``, ``state``, ``algorithm``, ``size``, ``label``, the template's, the keystores', the date ranges)
and ``sort`` become WHERE and ORDER BY clauses, shared by a page and its count."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, select

from keyorch.domain.models import SyncFlag, TargetStatus
from keyorch.domain.states import KeyState
from keyorch.store.schema import key_targets, keystores, managed_keys, templates

#: what a key listing can be sorted by (UKO's names) -> the column; ties are broken by creation time, then id
SORTABLE: dict[str, Any] = {
    "label": managed_keys.c.label,
    "name": managed_keys.c.name,
    "algorithm": managed_keys.c.algorithm,
    "state": managed_keys.c.state_code,
    "size": managed_keys.c.size,
    "activation_date": managed_keys.c.activation_date,
    "expiration_date": managed_keys.c.expiration_date,
    "created_at": managed_keys.c.created_at,
    "updated_at": managed_keys.c.updated_at,
    "vault.id": managed_keys.c.vault_id,
}
#: the columns a range filter may bound (``<name>``, ``<name>_min``, ``<name>_max`` in UKO's query)
RANGED: dict[str, Any] = {
    "activation_date": managed_keys.c.activation_date,
    "expiration_date": managed_keys.c.expiration_date,
    "created_at": managed_keys.c.created_at,
    "updated_at": managed_keys.c.updated_at,
    "size": managed_keys.c.size,
}

Bound = date | datetime | int


@dataclass(frozen=True)
class KeySelection:
    vault_id: str | None = None
    vault_ids: Collection[str] | None = None
    states: Sequence[KeyState] | None = None
    out_of_sync: bool = False
    #: only keys some keystore holds pending destruction
    pending_destruction: bool = False
    #: only keys no longer aligned with their template (it changed since they were made or realigned)
    unaligned: bool = False
    label: str | None = None
    #: only keys whose label contains this text (any case): the console's search
    label_contains: str | None = None
    algorithms: tuple[str, ...] = ()
    template_ids: tuple[str, ...] = ()
    template_names: tuple[str, ...] = ()
    #: keyorch's type values of keystores the key is in (not unlinked from them), and their names
    keystore_types: tuple[str, ...] = ()
    keystore_names: tuple[str, ...] = ()
    #: ids of keystores the key is in (not unlinked from them): UKO's ListManagedKeysFromKeystore
    keystore_ids: tuple[str, ...] = ()
    #: a RANGED name -> (lowest, highest), both inclusive, either None for no bound
    ranges: dict[str, tuple[Bound | None, Bound | None]] = field(default_factory=dict)
    #: (a SORTABLE name, descending) in order of precedence
    sort: tuple[tuple[str, bool], ...] = ()

    def conditions(self) -> list[ColumnElement[bool]]:
        keys = managed_keys.c
        where: list[ColumnElement[bool]] = []
        if self.vault_id is not None:
            where.append(keys.vault_id == self.vault_id)
        if self.vault_ids is not None:
            where.append(keys.vault_id.in_(sorted(self.vault_ids)))
        if self.states is not None:
            where.append(keys.state.in_([s.value for s in self.states]))
        if self.out_of_sync:  # out of sync: some target carries the flag
            flagged = select(key_targets.c.key_id).where(
                key_targets.c.key_id == keys.id, key_targets.c.sync_flag == SyncFlag.OUT_OF_SYNC.value
            )
            where.append(flagged.exists())
        if self.pending_destruction:
            pending = select(key_targets.c.key_id).where(
                key_targets.c.key_id == keys.id, key_targets.c.status == TargetStatus.DESTRUCTION_PENDING.value
            )
            where.append(pending.exists())
        if self.unaligned:
            where.append(keys.template_aligned.is_(False))
        if self.label is not None:
            where.append(keys.label == self.label)
        if self.label_contains:
            escaped = self.label_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append(keys.label.ilike(f"%{escaped}%", escape="\\"))
        if self.algorithms:
            where.append(keys.algorithm.in_(self.algorithms))
        if self.template_ids:
            where.append(keys.template_id.in_(self.template_ids))
        if self.template_names:
            named = select(templates.c.id).where(templates.c.name.in_(self.template_names))
            where.append(keys.template_id.in_(named))
        if self.keystore_types or self.keystore_names or self.keystore_ids:
            linked = (
                select(key_targets.c.key_id)
                .join(keystores, keystores.c.id == key_targets.c.keystore_id)
                .where(key_targets.c.key_id == keys.id, key_targets.c.status != TargetStatus.REMOVED.value)
            )
            if self.keystore_types:
                linked = linked.where(keystores.c.type.in_(self.keystore_types))
            if self.keystore_names:
                linked = linked.where(keystores.c.name.in_(self.keystore_names))
            if self.keystore_ids:
                linked = linked.where(key_targets.c.keystore_id.in_(self.keystore_ids))
            where.append(linked.exists())
        for name, (low, high) in self.ranges.items():
            column = RANGED[name]
            if low is not None:
                where.append(column >= low)
            if high is not None:
                where.append(column <= high)
        return where

    def order(self) -> list[Any]:
        chosen = [SORTABLE[name].desc() if descending else SORTABLE[name].asc() for name, descending in self.sort]
        return [*chosen, managed_keys.c.created_at, managed_keys.c.id]


#: no filter: every key, by creation time
EVERY_KEY = KeySelection()
