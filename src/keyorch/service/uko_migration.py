"""``keyorch migrate uko``: adopt the keys of a UKO managed-key export, with UKO's label, state, tags and template.

The export is UKO's managed-key list as its v4 API and IBM's SDK return it: ``{"managed_keys": [ManagedKey…]}`` (one
or several pages' documents in a JSON list are taken too) or a bare list of ``ManagedKey``. Each entry names its
keystores in ``referenced_keystores`` (``{id, name, type}``) and its keys there in ``instances``
(``label_in_keystore``, ``keystore: {group, type}``). keyorch finds each UKO keystore among its own by name (or by
``keystore_map``: UKO name -> keyorch keystore), the key in it among the keystore's unmanaged keys by UKO's mark (the
UKO managed key's id) or by ``label_in_keystore``, and the template by UKO's template name (or ``template_map``) in
the vault. Each entry is then one adoption (:mod:`keyorch.service.adoption`: atomic, nothing changed in the
providers but keyorch's marker). An entry keyorch cannot match (a keystore it does not know, a key missing from its
keystore, a state with nothing to adopt) is reported with why, and the rest goes on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keyorch.domain.errors import InvalidInput, KeyorchError
from keyorch.domain.models import Keystore
from keyorch.domain.states import KeyState
from keyorch.domain.uko import key_state, uko_type
from keyorch.service.adoption import AdoptionPlan, run_adoption
from keyorch.service.adoption_request import AdoptRequest, Selection, UkoMigration
from keyorch.service.context import ServiceContext
from keyorch.service.inventory import Scan, unmanaged_keys

#: UKO states whose keys are in keystores, and the state they are adopted in
_ADOPTABLE = {KeyState.ACTIVE: "active", KeyState.DEACTIVATED: "deactivated"}
#: the largest export read (a UKO instance of many thousand keys stays far below)
MAX_EXPORT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    """One managed key of the export, as far as keyorch reads it."""

    index: int
    uko_id: str
    label: str
    state: str
    template: str | None
    tags: tuple[tuple[str, str], ...]
    description: str
    keystores: tuple[dict[str, Any], ...]
    instances: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class EntryOutcome:
    entry: Entry
    #: the adoption's plan or outcome, when the entry was matched
    plan: AdoptionPlan | None
    #: why the entry was skipped or refused
    problem: str | None


def _field(where: str, doc: Mapping[str, Any], name: str, kind: type, required: bool = True) -> Any:
    value = doc.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, kind):
        raise InvalidInput(f"{where}.{name} must be a {kind.__name__}, not {type(value).__name__}", target=name)
    return value


def read_export(path: Path) -> list[Entry]:
    """The export's entries; a file that is not a UKO managed-key export is bad input naming what is wrong."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"export {path}: cannot be read ({exc.strerror})", target="export") from None
    if len(raw) > MAX_EXPORT_BYTES:
        raise InvalidInput(f"export {path} is larger than {MAX_EXPORT_BYTES} bytes", target="export")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"export {path} is not JSON: {exc}"[:300], target="export") from None
    pages = doc if isinstance(doc, list) and all(isinstance(d, dict) and "managed_keys" in d for d in doc) else [doc]
    docs: list[Any] = []
    for page in pages:
        if isinstance(page, dict) and isinstance(page.get("managed_keys"), list):
            docs += page["managed_keys"]
        elif isinstance(page, list):
            docs += page
        else:
            raise InvalidInput(
                f'export {path} must be UKO\'s managed key list ({{"managed_keys": [...]}}) or a list of managed keys',
                target="export",
            )
    return [_entry(i, d) for i, d in enumerate(docs)]


def _entry(index: int, doc: Any) -> Entry:
    where = f"managed_keys[{index}]"
    if not isinstance(doc, dict):
        raise InvalidInput(f"{where} must be an object (a UKO ManagedKey)", target="managed_keys")
    tags = []
    for n, tag in enumerate(_field(where, doc, "tags", list, required=False) or []):
        if not isinstance(tag, dict) or not isinstance(tag.get("name"), str):
            raise InvalidInput(f"{where}.tags[{n}] must be {{name, value}}", target="tags")
        tags.append((tag["name"], str(tag.get("value") or "")))
    template = _field(where, doc, "template", dict, required=False) or {}
    keystores = _field(where, doc, "referenced_keystores", list)
    instances = _field(where, doc, "instances", list)
    for name, items in (("referenced_keystores", keystores), ("instances", instances)):
        if not all(isinstance(item, dict) for item in items):
            raise InvalidInput(f"{where}.{name} must list objects", target=name)
    return Entry(
        index=index,
        uko_id=str(doc.get("id") or ""),
        label=_field(where, doc, "label", str),
        state=_field(where, doc, "state", str),
        template=template.get("name") if isinstance(template.get("name"), str) else None,
        tags=tuple(tags),
        description=str(doc.get("description") or ""),
        keystores=tuple(keystores),
        instances=tuple(instances),
    )


async def migrate(ctx: ServiceContext, entries: list[Entry], request: UkoMigration) -> list[EntryOutcome]:
    """Adopt each entry's keys (one adoption per entry; each keystore scanned once for all of them)."""
    ks_map, tmpl_map, dry_run, marker = request.keystore_map, request.template_map, request.dry_run, request.marker
    async with ctx.store.read() as tx:
        found_vault = await tx.vault(request.vault)
        known = {k.name: k for k in await tx.list_keystores() if k.connected}
    scans: dict[str, Scan] = {}
    outcomes = []
    for entry in entries:
        try:
            adopting = await _request(ctx, entry, found_vault.id, known, ks_map, tmpl_map, scans, dry_run, marker)
            plan = await run_adoption(ctx, adopting, scans)
        except KeyorchError as exc:
            outcomes.append(EntryOutcome(entry, None, exc.message))
            continue
        problem = plan.conflicts[0].conflict if plan.conflicts else None
        outcomes.append(EntryOutcome(entry, plan, problem))
    return outcomes


async def _request(
    ctx: ServiceContext,
    entry: Entry,
    vault_id: str,
    known: Mapping[str, Keystore],
    ks_map: Mapping[str, str],
    tmpl_map: Mapping[str, str],
    scans: dict[str, Scan],
    dry_run: bool,
    marker: bool,
) -> AdoptRequest:
    state = key_state(entry.state)
    if state not in _ADOPTABLE:
        raise InvalidInput(
            f"UKO state {entry.state}: only active and deactivated keys are in keystores to be adopted", target="state"
        )
    if entry.template is None and not tmpl_map.get(""):
        raise InvalidInput(
            "the entry names no template (template.name), and no default template was given", target="template"
        )
    template = tmpl_map.get(entry.template or "", tmpl_map.get("", entry.template or ""))
    by_type: dict[str, list[Keystore]] = {}
    for ref in entry.keystores:
        name = str(ref.get("name") or "")
        keystore = known.get(ks_map.get(name, name))
        if keystore is None:
            raise InvalidInput(
                f"UKO keystore {name!r} ({ref.get('type')}) is not a connected keystore of keyorch (map it with "
                "--keystore-map UKO_NAME=KEYSTORE)",
                target="referenced_keystores",
            )
        by_type.setdefault(uko_type(keystore.type), []).append(keystore)
    pairs: list[tuple[str, str]] = []
    for n, instance in enumerate(entry.instances):
        where = instance.get("keystore")
        kind = str(where.get("type") or "") if isinstance(where, dict) else ""
        candidates = by_type.get(kind, [])
        label_in_keystore = instance.get("label_in_keystore")
        if len(candidates) != 1 or not isinstance(label_in_keystore, str):
            raise InvalidInput(
                f"instances[{n}] ({kind}, {label_in_keystore!r}) matches {len(candidates)} of the entry's keystores; "
                "keyorch needs exactly one per type and a label_in_keystore",
                target="instances",
            )
        keystore = candidates[0]
        if keystore.id not in scans:
            scans[keystore.id] = await unmanaged_keys(ctx, keystore)
        pairs.append((keystore.id, _find(scans[keystore.id], keystore, entry, label_in_keystore)))
    if not pairs:
        raise InvalidInput("the entry lists no instances in keystores", target="instances")
    return AdoptRequest(
        keystores=tuple(dict.fromkeys(ks for ks, _ in pairs)),
        vault=vault_id,
        template=template,
        selection=Selection(ids=tuple(pairs)),
        label=entry.label,
        state=_ADOPTABLE[state],
        marker=marker,
        dry_run=dry_run,
        tags=entry.tags,
        description=entry.description,
    )


def _find(scan: Scan, keystore: Keystore, entry: Entry, label_in_keystore: str) -> str:
    """The provider id of the entry's key in ``keystore``: by UKO's mark, else by its name there."""
    marked = [u for u in scan.unmanaged if entry.uko_id and u.uko_managed_key_id == entry.uko_id]
    wanted = label_in_keystore.removeprefix("alias/").lower()
    named = [u for u in scan.unmanaged if (u.key.name or "").removeprefix("alias/").lower() == wanted]
    found = marked or named
    if len(found) != 1:
        what = "no unmanaged key" if not found else f"{len(found)} unmanaged keys"
        raise InvalidInput(
            f"keystore {keystore.name} holds {what} named {label_in_keystore!r}"
            + (f" or marked with UKO's id {entry.uko_id}" if entry.uko_id else ""),
            target="label_in_keystore",
        )
    return found[0].key.key_id_in_keystore
