"""Adopting keys that exist in keystores (issue 16): each becomes a managed key, exactly as it is.

:func:`plan_adoption` reads (each keystore's own listing, through :func:`keyorch.service.inventory.unmanaged_keys`)
and decides; :func:`adopt` carries the plan out. What adoption changes in a provider is keyorch's ownership marker
(a tag, a label, Key Protect's ``keyorch-<id>`` alias), and with ``marker=False`` not even that: no rename, no state
change, no new version. The key's provider id becomes its target's identity (``key_id_in_keystore``, the target
marked ``adopted``): the reconciler reads it by that id, never by a listing, and never makes another key in its place.

* **Which keys.** Named by their provider id (``ids``: one managed key, labelled ``label``, with one key per
  keystore), or in bulk from the keystores' unmanaged keys: all of them, those whose name matches a glob, or those
  carrying every given tag. UKO's Azure key-import key is never a candidate in bulk.
* **Together.** In bulk, the keys of different keystores that carry the same UKO managed key id, or else the same
  name (the AWS alias without ``alias/``, compared without case), become one managed key with several targets,
  labelled by that name.
* **State.** The managed key takes the state its keys show: active where usable everywhere, deactivated where
  disabled everywhere. Keys that disagree are refused with each keystore's state, unless ``state`` names the one to
  take (the reconciler then brings the others in line, like any change of desired state). A key pending destruction
  is refused: keyorch cannot cancel a destruction, and a managed key made from it could only be destroyed.
* **Atomic per managed key**: each is one audited transaction that first checks, under the keystores' lock, that
  no managed key targets its keys yet; a second run therefore adopts nothing twice.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import select

from keyorch.domain.errors import Conflict, InvalidInput, KeyorchError
from keyorch.domain.models import Keystore, KeyTemplate, ManagedKey, SyncFlag, Tag, Target, TargetStatus, Vault
from keyorch.domain.states import KeyState
from keyorch.domain.uko_markers import UKO_AZURE_IMPORT_KEK
from keyorch.domain.validation import check_description, check_label, check_tags
from keyorch.providers.base import InventoryKey, KeyRef, primary_version
from keyorch.providers.errors import ProviderError
from keyorch.providers.identity import key_identity
from keyorch.service import templates
from keyorch.service.adoption_request import AdoptRequest, Selection
from keyorch.service.context import Change, ServiceContext
from keyorch.service.inventory import Scan, UnmanagedKey, unmanaged_keys
from keyorch.service.keystore_probe import keystore_client
from keyorch.store.repository import Transaction
from keyorch.store.schema import keystores as keystores_table

#: the keystore state a key shows -> the managed key state it is adopted in
_ADOPTED_STATE = {KeyState.ACTIVE: KeyState.ACTIVE, KeyState.DEACTIVATED: KeyState.DEACTIVATED}
_TARGET_STATUS = {KeyState.ACTIVE: TargetStatus.ACTIVE, KeyState.DEACTIVATED: TargetStatus.DEACTIVATED}


@dataclass(frozen=True)
class Instance:
    """One provider key of a proposed managed key."""

    keystore: Keystore
    found: UnmanagedKey

    @property
    def key(self) -> InventoryKey:
        return self.found.key


@dataclass(frozen=True)
class Proposal:
    """A managed key the adoption makes (or refuses, with ``conflict``)."""

    label: str
    instances: tuple[Instance, ...]
    state: KeyState | None
    conflict: str | None = None
    #: once adopted: the managed key, and per keystore id the marker added (or why none was)
    key: ManagedKey | None = None
    markers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AdoptionPlan:
    vault: Vault
    template: KeyTemplate
    keystores: tuple[Keystore, ...]
    proposals: tuple[Proposal, ...]
    request: AdoptRequest

    @property
    def marker(self) -> bool:
        return self.request.marker

    @property
    def dry_run(self) -> bool:
        return self.request.dry_run

    @property
    def adoptable(self) -> list[Proposal]:
        return [p for p in self.proposals if p.conflict is None]

    @property
    def conflicts(self) -> list[Proposal]:
        return [p for p in self.proposals if p.conflict is not None]


def _short_name(key: InventoryKey) -> str:
    return (key.name or key.key_id_in_keystore).removeprefix("alias/")


def _matches(found: UnmanagedKey, selection: Selection) -> bool:
    key = found.key
    if any(UKO_AZURE_IMPORT_KEK in e for e in found.evidence):
        return False
    if selection.name_patterns:
        names = {_short_name(key), key.name or "", *key.aliases}
        if not any(fnmatch.fnmatchcase(n, p) for n in names for p in selection.name_patterns):
            return False
    return all(key.labels.get(name) == value for name, value in selection.tags)


def _group_key(found: UnmanagedKey) -> str:
    if found.uko_managed_key_id:
        return "uko:" + found.uko_managed_key_id.lower()
    return "name:" + _short_name(found.key).lower()


def _decide(label: str, instances: Sequence[Instance], requested: KeyState | None) -> Proposal:
    """The proposal for keys that belong together: its state, or why it cannot be adopted."""
    where = [i.keystore.name for i in instances]
    doubled = sorted({n for n in where if where.count(n) > 1})
    if doubled:
        return Proposal(label, tuple(instances), None, f"more than one key in keystore {', '.join(doubled)}")
    try:
        check_label(label)
    except InvalidInput as exc:
        return Proposal(label, tuple(instances), None, f"its name cannot be a label: {exc.message}")
    pending = [i for i in instances if i.key.destruction_pending or i.key.state is KeyState.DESTROYED]
    if pending:
        names = ", ".join(f"{i.keystore.name} ({i.key.raw_state})" for i in pending)
        return Proposal(
            label, tuple(instances), None, f"pending destruction in {names}: keyorch cannot cancel a destruction"
        )
    states = {i.keystore.name: i.key.state for i in instances}
    if requested is not None:
        return Proposal(label, tuple(instances), requested)
    shown = set(states.values())
    if len(shown) == 1 and (only := shown.pop()) in _ADOPTED_STATE:
        return Proposal(label, tuple(instances), _ADOPTED_STATE[only])
    described = ", ".join(
        f"{name}: {i.key.raw_state or i.key.state}" for name, i in zip(states, instances, strict=True)
    )
    return Proposal(
        label,
        tuple(instances),
        None,
        f"the keystores disagree ({described}); name the state to take (--state active or deactivated)",
    )


async def plan_adoption(
    ctx: ServiceContext, request: AdoptRequest, scans: Mapping[str, Scan] | None = None
) -> AdoptionPlan:
    """What ``request`` would make (reads only). ``scans``: the keystores' scans by keystore id, when the caller
    has them already (a UKO export adopts many keys from the same keystores)."""
    keystores, vault, template, selection = request.keystores, request.vault, request.template, request.selection
    label, state = request.label, request.state
    check_description("description", request.description)
    check_tags(request.tags)
    if not keystores:
        raise InvalidInput("name at least one keystore to adopt keys from", target="keystore")
    if selection.bulk and selection.ids:
        raise InvalidInput("adopt keys either by id_in_keystore or by a filter, not both", target="id_in_keystore")
    if not selection.bulk and not selection.ids:
        raise InvalidInput(
            "name the keys to adopt: id_in_keystore, or a filter (all_unmanaged, name_pattern, tag)",
            target="id_in_keystore",
        )
    if selection.ids and label is None:
        raise InvalidInput("a key adopted by id_in_keystore needs a label", target="label")
    if selection.bulk and label is not None:
        raise InvalidInput(
            "keys adopted in bulk are labelled by their names; label goes with id_in_keystore", target="label"
        )
    requested = None
    if state is not None:
        requested = next((s for s in _ADOPTED_STATE if s.value == state), None)
        if requested is None:
            raise InvalidInput(
                f"state {state!r} is not allowed to adopt a key in; choose one of: active, deactivated", target="state"
            )
    async with ctx.store.read() as tx:
        found_vault = await tx.vault(vault)
        tmpl = await tx.template(template, [found_vault.id])
        templates.check_makes_keys(tmpl)
        stores = [await tx.keystore(ref) for ref in keystores]
    ids = {ks.id for ks in stores}
    if len(ids) != len(stores):
        raise InvalidInput("each keystore may be named once", target="keystore")
    scans = {ks.id: scans[ks.id] if scans and ks.id in scans else await unmanaged_keys(ctx, ks) for ks in stores}
    if selection.ids:
        proposals = [_decide(label or "", await _named(ctx, stores, scans, selection.ids), requested)]
    else:
        groups: dict[str, list[Instance]] = {}
        for ks in stores:
            for found in scans[ks.id].unmanaged:
                if _matches(found, selection):
                    groups.setdefault(_group_key(found), []).append(Instance(ks, found))
        proposals = [_decide(_short_name(group[0].key), group, requested) for group in groups.values()]
        proposals.sort(key=lambda p: p.label.lower())
    return AdoptionPlan(found_vault, tmpl, tuple(stores), tuple(proposals), request)


async def _named(
    ctx: ServiceContext,
    stores: Sequence[Keystore],
    scans: dict[str, Scan],
    ids: Sequence[tuple[str, str]],
) -> list[Instance]:
    instances = []
    by_ref = {ref: ks for ks in stores for ref in (ks.id, ks.name)}
    for ref, key_id in ids:
        ks = by_ref.get(ref) if ref else (stores[0] if len(stores) == 1 else None)
        if ks is None:
            raise InvalidInput(
                f"id_in_keystore {key_id!r} names no keystore given with --keystore (write KEYSTORE=ID with several)",
                target="id_in_keystore",
            )
        scan = scans[ks.id]
        wanted = key_identity(ks.type, key_id)
        match = [
            u
            for u in scan.unmanaged
            if key_identity(ks.type, u.key.key_id_in_keystore) == wanted
            or (u.key.name or "").removeprefix("alias/").lower() == key_id.removeprefix("alias/").lower()
        ]
        if not match:
            raise InvalidInput(
                f"id_in_keystore {key_id!r}: keystore {ks.name} holds no unmanaged key with that id or name (a key a "
                "managed key targets already is not adopted again; `keyorch keystore scan` lists the others)",
                target="id_in_keystore",
            )
        instances.append(Instance(ks, match[0]))
    return instances


def _targets(proposal: Proposal, now: datetime) -> tuple[Target, ...]:
    targets = []
    for inst in proposal.instances:
        key = inst.key
        try:
            primary = primary_version(list(key.versions)).version_id if key.versions else None
        except ProviderError:
            primary = None
        status = _TARGET_STATUS.get(key.state, TargetStatus.UNKNOWN)
        in_line = proposal.state is not None and _TARGET_STATUS.get(proposal.state) is status
        targets.append(
            Target(
                keystore_id=inst.keystore.id,
                status=status,
                sync_flag=SyncFlag.IN_SYNC if in_line else SyncFlag.PENDING,
                key_id_in_keystore=key.key_id_in_keystore,
                updated_at=now,
                synced_generation=1 if in_line else None,
                label_in_keystore=key.name,
                primary_version_id=primary,
                adopted=True,
            )
        )
    return tuple(targets)


async def _lock_keystores(tx: Transaction, keystore_ids: Sequence[str]) -> None:
    """Serialise adoptions into the same keystores (PostgreSQL; SQLite writers are serial already)."""
    if tx.conn.dialect.name == "postgresql":
        stmt = select(keystores_table.c.id).where(keystores_table.c.id.in_(sorted(keystore_ids))).with_for_update()
        await tx.conn.execute(stmt)


async def _adopt_one(ctx: ServiceContext, plan: AdoptionPlan, proposal: Proposal) -> ManagedKey:
    async def body(tx: Transaction) -> tuple[ManagedKey, Change]:
        await _lock_keystores(tx, [i.keystore.id for i in proposal.instances])
        for inst in proposal.instances:
            wanted = key_identity(inst.keystore.type, inst.key.key_id_in_keystore)
            for other in await tx.keys_targeting(inst.keystore.id):
                for t in other.targets:
                    recorded = t.key_id_in_keystore
                    if (
                        t.keystore_id == inst.keystore.id
                        and recorded
                        and key_identity(inst.keystore.type, recorded) == wanted
                    ):
                        raise Conflict(
                            f"key {inst.key.key_id_in_keystore} of keystore {inst.keystore.name} is managed already, "
                            f"by managed key {other.label} ({other.id})",
                            target="id_in_keystore",
                        )
        if await tx.label_taken(plan.vault.id, proposal.label):
            raise Conflict(f"vault {plan.vault.name} already has a key labelled {proposal.label!r}", target="label")
        now = ctx.clock.now()
        if proposal.state is None:  # a proposal with a conflict is never adopted
            raise Conflict(proposal.conflict or "no state to adopt the key in", target="state")
        in_template = set(plan.template.keystore_ids) | {k.id for k in await templates.distribution(tx, plan.template)}
        key = ManagedKey(
            id=ctx.new_id(),
            label=proposal.label,
            name=proposal.label,
            vault_id=plan.vault.id,
            template_id=plan.template.id,
            algorithm=plan.template.algorithm,
            size=plan.template.size,
            state=proposal.state,
            created_at=now,
            updated_at=now,
            targets=_targets(proposal, now),
            description=plan.request.description,
            tags=tuple(Tag(name, value) for name, value in plan.request.tags),
            created_by=ctx.actor.user,
            updated_by=ctx.actor.user,
            template_aligned={i.keystore.id for i in proposal.instances} == in_template,
        )
        await tx.insert_key(key)
        held = ", ".join(f"{i.keystore.name}: {i.key.key_id_in_keystore}" for i in proposal.instances)
        return key, Change(key.id, after=key, detail=f"adopted ({held})")

    return await ctx.change("key.adopt", "key", proposal.label, body, creates=True)


async def _mark(ctx: ServiceContext, key: ManagedKey, proposal: Proposal) -> dict[str, str]:
    """keyorch's marker on each adopted key; a keystore that refuses it leaves the adoption as it is."""
    markers: dict[str, str] = {}
    for inst in proposal.instances:
        ref = KeyRef(inst.key.key_id_in_keystore, key.id, inst.key.name)
        try:
            async with keystore_client(ctx, inst.keystore, "the adopted key's marker") as client:
                markers[inst.keystore.id] = await client.mark_managed(ref, key.id)
        except KeyorchError as exc:
            markers[inst.keystore.id] = f"no marker: {exc.message}"
    return markers


async def adopt(ctx: ServiceContext, plan: AdoptionPlan) -> AdoptionPlan:
    """Carry ``plan`` out (a dry run returns it unchanged): one transaction per managed key, then the markers. A
    proposal refused on the way (its key adopted meanwhile, its label taken) keeps its refusal as its conflict."""
    if plan.dry_run:
        return plan
    done: list[Proposal] = []
    for proposal in plan.proposals:
        if proposal.conflict is not None:
            done.append(proposal)
            continue
        try:
            key = await _adopt_one(ctx, plan, proposal)
        except (Conflict, InvalidInput) as exc:
            done.append(replace(proposal, conflict=exc.message))
            continue
        markers = await _mark(ctx, key, proposal) if plan.marker else {}
        done.append(replace(proposal, key=key, markers=markers))
    return replace(plan, proposals=tuple(done))


async def run_adoption(
    ctx: ServiceContext, request: AdoptRequest, scans: Mapping[str, Scan] | None = None
) -> AdoptionPlan:
    """Plan ``request`` and, unless it is a dry run, carry it out."""
    return await adopt(ctx, await plan_adoption(ctx, request, scans))
