"""A keystore's keys that no managed key targets (issue 16's scan), each with who seems to have made it.

:func:`unmanaged_keys` lists every key the keystore holds through its adapter
(:meth:`keyorch.providers.base.KeystoreClient.inventory`: the provider's own listing, page by page, reads
only) and leaves out those a managed key targets: the key a target has recorded (its ``key_id_in_keystore``),
and a key carrying keyorch's identity for a managed key whose target there has recorded none yet (a create whose
answer keyorch has not recorded: the reconciler finds it by that identity). What remains is classified by
:func:`provenance`:

* ``keyorch``: it carries keyorch's identity (alias, tag, label) but no target has it: an orphan keyorch made
  (its managed key was removed, no longer targets the keystore, or holds another key there);
* ``uko``: it carries UKO's marks (:mod:`keyorch.domain.uko_markers`), is UKO's Azure key-import key, or its
  name matches one of the caller's UKO names (globs: labels from a UKO export, or a template's naming scheme);
* ``unknown``: anything else (made by a person, a script or another tool).

CLI (``keyorch keystore scan``) and API (``GET /api/v4/keystores/{id}/unmanaged_keys``) call this one function;
the adoption work builds on :func:`unmanaged_keys` and :class:`UnmanagedKey`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from keyorch.domain.errors import RuleViolation
from keyorch.domain.models import Keystore, KeystoreType, ManagedKey, TargetStatus
from keyorch.domain.uko_markers import UKO_AWS_ORIGIN, UKO_AZURE_IMPORT_KEK, UKO_ID_TAG, uko_id_from
from keyorch.providers.base import InventoryKey
from keyorch.providers.identity import key_identity
from keyorch.service.context import ServiceContext
from keyorch.service.keystore_probe import keystore_client


class MadeBy(StrEnum):
    UKO = "uko"
    KEYORCH = "keyorch"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class UnmanagedKey:
    """A key of the keystore that no managed key targets, and why it looks made by whom."""

    key: InventoryKey
    made_by: MadeBy
    #: what the verdict rests on, in words (``tag uko-managed-key-id=…``, ``keyorch's identity for managed key …``)
    evidence: tuple[str, ...]
    #: the UKO managed key its marks name (for matching a UKO export)
    uko_managed_key_id: str | None = None


@dataclass(frozen=True)
class Scan:
    keystore: Keystore
    #: by name, then id
    unmanaged: list[UnmanagedKey]
    #: keys the keystore holds, and how many of them managed keys target
    total: int
    managed: int


def provenance(
    kind: KeystoreType, key: InventoryKey, known: dict[str, ManagedKey], uko_names: Sequence[str] = ()
) -> UnmanagedKey:
    """Who seems to have made ``key`` (a key no managed key targets); ``known``: managed keys by id, lower-cased."""
    if key.managed_key_id is not None:
        owner = known.get(key.managed_key_id.lower())
        why = (
            f"managed key {owner.label} ({owner.id}) holds another key in this keystore or does not target it"
            if owner is not None
            else "no such managed key exists (it was removed, or this keystore belonged to another keyorch)"
        )
        return UnmanagedKey(key, MadeBy.KEYORCH, (f"keyorch's identity for managed key {key.managed_key_id}", why))
    evidence: list[str] = []
    uko_id = uko_id_from(kind, key.labels, key.description)
    if uko_id is not None:
        mark = "description" if kind is KeystoreType.IBM_KEY_PROTECT else f"{UKO_ID_TAG}={uko_id}"
        evidence.append(f"UKO's mark ({mark})")
    if kind is KeystoreType.AZURE_KEY_VAULT and (key.name or "").upper() == UKO_AZURE_IMPORT_KEK:
        evidence.append(f"{UKO_AZURE_IMPORT_KEK} is the key UKO imports keys with into Azure, not a managed key")
    short = (key.name or "").removeprefix("alias/")
    matched = [p for p in uko_names if p and (fnmatch.fnmatchcase(short, p) or fnmatch.fnmatchcase(key.name or "", p))]
    evidence += [f"its name matches UKO's {pattern!r}" for pattern in matched]
    if evidence:
        if key.origin == UKO_AWS_ORIGIN:
            evidence.append("imported key material (origin EXTERNAL), as UKO distributes keys")
        return UnmanagedKey(key, MadeBy.UKO, tuple(evidence), uko_id)
    hints = ["imported key material (origin EXTERNAL)"] if key.origin == UKO_AWS_ORIGIN else []
    return UnmanagedKey(key, MadeBy.UNKNOWN, tuple(hints))


@dataclass(frozen=True)
class _Targeted:
    """What the managed keys targeting a keystore hold there: the key ids their targets recorded (in one form,
    :func:`key_identity`), and the managed keys whose target there has recorded none yet."""

    recorded: frozenset[str]
    awaiting: frozenset[str]

    @classmethod
    def of(cls, keystore: Keystore, keys: list[ManagedKey]) -> _Targeted:
        recorded, awaiting = set(), set()
        for managed in keys:
            for target in managed.targets:
                if target.keystore_id != keystore.id or target.status is TargetStatus.REMOVED:
                    continue
                if target.key_id_in_keystore is not None:
                    recorded.add(key_identity(keystore.type, target.key_id_in_keystore))
                else:
                    awaiting.add(managed.id.lower())
        return cls(frozenset(recorded), frozenset(awaiting))

    def holds(self, kind: KeystoreType, key: InventoryKey) -> bool:
        """Whether a managed key targets ``key``: its recorded id, or (none recorded yet) keyorch's identity on it."""
        if key_identity(kind, key.key_id_in_keystore) in self.recorded:
            return True
        return key.managed_key_id is not None and key.managed_key_id.lower() in self.awaiting


async def inventory(ctx: ServiceContext, keystore: Keystore) -> list[InventoryKey]:
    """Every key ``keystore`` holds, from its provider (reads only); a provider error stays what it is."""
    if not keystore.connected:
        raise RuleViolation(
            f"keystore {keystore.name} is disconnected, so keyorch does not ask it for its keys; connect it again "
            "to scan it",
            target="keystore",
        )
    async with keystore_client(ctx, keystore, "its keys") as client:
        return [key async for key in client.inventory()]


async def unmanaged_keys(
    ctx: ServiceContext, keystore: Keystore, *, uko_names: Sequence[str] = (), made_by: MadeBy | None = None
) -> Scan:
    """The keys of ``keystore`` that no managed key targets, each classified (:func:`provenance`); ``uko_names``:
    globs of names UKO gave keys (``akms-*``, or the labels of a UKO export), matched against each key's name;
    ``made_by``: only the keys so classified (the counts stay the keystore's)."""
    found = await inventory(ctx, keystore)
    marked = sorted({k.managed_key_id for k in found if k.managed_key_id is not None})
    async with ctx.store.read() as tx:
        targeting = await tx.keys_targeting(keystore.id)
        named = await tx.keys_by_id(sorted({*marked, *(m.lower() for m in marked)}))
    known = {k.id.lower(): k for k in named}
    targeted = _Targeted.of(keystore, targeting)
    unmanaged = [
        provenance(keystore.type, key, known, uko_names) for key in found if not targeted.holds(keystore.type, key)
    ]
    unmanaged.sort(key=lambda u: ((u.key.name or "").lower(), u.key.key_id_in_keystore))
    chosen = [u for u in unmanaged if made_by is None or u.made_by is made_by]
    return Scan(keystore, chosen, len(found), len(found) - len(unmanaged))
