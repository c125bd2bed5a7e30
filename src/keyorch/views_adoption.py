"""What an adoption (``keyorch key adopt``, ``POST /api/v4/managed_keys/adopt``) shows: per managed key made or
planned, its keys in each keystore, its state, and what keeps it from being adopted."""

from __future__ import annotations

from typing import Any

from keyorch.domain.uko import uko_state, uko_type
from keyorch.service.adoption import AdoptionPlan, Proposal
from keyorch.service.uko_migration import EntryOutcome
from keyorch.views import reference


def _proposal_json(plan: AdoptionPlan, p: Proposal) -> dict[str, Any]:
    if p.conflict is not None:
        outcome = "refused"
    elif p.key is not None:
        outcome = "adopted"
    else:
        outcome = "planned"
    doc: dict[str, Any] = {
        "label": p.label,
        "outcome": outcome,
        "instances": [
            {
                "keystore": reference("keystores", i.keystore.id, i.keystore.name, type=uko_type(i.keystore.type)),
                "key_id_in_keystore": i.key.key_id_in_keystore,
                "label_in_keystore": i.key.name,
                "state_in_keystore": i.key.raw_state,
                "made_by": i.found.made_by.value,
            }
            | ({"marker": p.markers[i.keystore.id]} if i.keystore.id in p.markers else {})
            for i in p.instances
        ],
    }
    if p.state is not None:
        doc["state"] = uko_state(p.state)
    if p.conflict is not None:
        doc["conflict"] = p.conflict
    if p.key is not None:
        doc["managed_key"] = reference("managed_keys", p.key.id, p.key.label)
        doc["template_aligned"] = p.key.template_aligned
    elif p.conflict is None and plan.marker:
        doc["markers_to_add"] = len(p.instances)
    return doc


def adoption_json(plan: AdoptionPlan) -> dict[str, Any]:
    """The plan (a dry run: nothing written) or its outcome."""
    docs = [_proposal_json(plan, p) for p in plan.proposals]
    return {
        "dry_run": plan.dry_run,
        "vault": reference("vaults", plan.vault.id, plan.vault.name),
        "template": reference("templates", plan.template.id, plan.template.name),
        "keystores": [reference("keystores", k.id, k.name, type=uko_type(k.type)) for k in plan.keystores],
        "marker": plan.marker,
        "managed_keys": docs,
        "adopted": sum(1 for d in docs if d["outcome"] == "adopted"),
        "planned": sum(1 for d in docs if d["outcome"] == "planned"),
        "refused": sum(1 for d in docs if d["outcome"] == "refused"),
    }


def migration_json(outcomes: list[EntryOutcome], dry_run: bool) -> dict[str, Any]:
    """``migrate uko``: per export entry what became of it (adopted, planned, refused or skipped, with why)."""
    entries = []
    for o in outcomes:
        doc: dict[str, Any] = {"index": o.entry.index, "label": o.entry.label, "uko_id": o.entry.uko_id}
        if o.plan is None:
            doc |= {"outcome": "skipped", "problem": o.problem}
        else:
            (shown,) = adoption_json(o.plan)["managed_keys"] or [{"outcome": "skipped", "conflict": "nothing matched"}]
            doc["outcome"] = shown["outcome"]
            if "conflict" in shown:
                doc["problem"] = shown["conflict"]
            for name in ("state", "managed_key", "instances", "template_aligned"):
                if name in shown:
                    doc[name] = shown[name]
        entries.append(doc)
    counts = {
        name: sum(1 for e in entries if e["outcome"] == name) for name in ("adopted", "planned", "refused", "skipped")
    }
    return {"dry_run": dry_run, "entries": entries, "counts": counts}
