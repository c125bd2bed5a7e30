"""The documents a sync, a reconcile pass and a plan produce, built once for the CLI and the daemon's API.

``keyorch sync-key``, ``reconcile --once`` and ``plan`` print these documents (or tables made from
them); with ``--server`` the daemon builds the same documents from its own controller, so both modes
print the same thing and exit with the same code (``exit_code``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from keyorch.domain.models import ManagedKey
from keyorch.domain.rotation import rotate
from keyorch.domain.rules import apply_state_change
from keyorch.domain.states import KeyAction
from keyorch.reconcile.controller import EXIT_IN_SYNC, EXIT_OUT_OF_SYNC, EXIT_UNREACHABLE, Controller, PassSummary
from keyorch.reconcile.engine import KeyOutcome, TargetOutcome
from keyorch.reconcile.planner import DESTRUCTION_WINDOW_DAYS, UNDO, Action
from keyorch.service.rotation import scheduled_rotations

Doc = dict[str, Any]


def target_json(key: KeyOutcome, t: TargetOutcome) -> Doc:
    record = t.target
    return {
        "key": key.key_id,
        "label": key.label,
        "keystore": t.keystore_id,
        "keystore_name": t.keystore_name,
        "observed": t.plan.observed.value,
        "status": record.status.value,
        "sync_flag": record.sync_flag.value,
        "reason": record.reason.value if record.reason else None,
        "actions_taken": [a.value for a in t.actions_done],
        "pending_destruction_until": record.pending_destruction_until.isoformat()
        if record.pending_destruction_until
        else None,
        "error": t.error or record.last_error,
        "drift": t.plan.drift,
    }


def _exit_code(outcomes: Sequence[KeyOutcome]) -> int:
    if any(o.unreachable for o in outcomes):
        return EXIT_UNREACHABLE
    return EXIT_IN_SYNC if all(o.in_sync for o in outcomes) else EXIT_OUT_OF_SYNC


async def sync_pass(controller: Controller, ref: str) -> PassSummary:
    """UKO's "Sync key": reconcile one key now, pushing its desired state to every keystore."""
    return await controller.run_once(refs=[ref], push=True, use_listing=False)


def sync_document(summary: PassSummary) -> Doc:
    """Every target of the synced key, the pass's counts, and the exit code (0 in sync, 1 not, 4 unreachable)."""
    outcomes = list(summary.outcomes.values())
    doc: Doc = {"targets": [target_json(o, t) for o in outcomes for t in o.targets], **summary.as_json()}
    doc["exit_code"] = _exit_code(outcomes)
    return doc


def reconcile_document(summary: PassSummary) -> Doc:
    """A full pass's counts and exit code, and the targets of every key left out of sync."""
    doc: Doc = summary.as_json()
    flagged = [o for o in summary.outcomes.values() if not o.in_sync]
    doc["flagged_keys"] = [target_json(o, t) for o in flagged for t in o.targets if not t.plan.in_sync]
    return doc


def _undo(action: Action, keystore_type: str) -> str:
    if action is Action.SCHEDULE_DESTRUCTION:
        days = DESTRUCTION_WINDOW_DAYS.get(keystore_type, 30)
        return f"{UNDO[action]} (about {days} days from when it runs, by the provider's default window)"
    return UNDO[action]


def _steps(outcomes: Sequence[KeyOutcome], types: dict[str, str], now: datetime) -> list[Doc]:
    """Per key and keystore: what a pass would do there, and how each step could be undone (and until when)."""
    steps: list[Doc] = []
    for o in outcomes:
        for t in o.targets:
            kind = types.get(t.keystore_id, "")
            steps.append(
                {
                    "key": o.key_id,
                    "label": o.label,
                    "desired": o.state,
                    "keystore": t.keystore_id,
                    "keystore_name": t.keystore_name,
                    "observed": t.plan.observed.value,
                    "actions": [a.value for a in t.plan.actions],
                    "undo": [_undo(a, kind) for a in t.plan.actions],
                    "destroy_undo_until": (now + timedelta(days=DESTRUCTION_WINDOW_DAYS.get(kind, 30))).isoformat()
                    if Action.SCHEDULE_DESTRUCTION in t.plan.actions
                    else None,
                    "reason": t.target.reason.value if t.target.reason else None,
                    "drift": t.plan.drift,
                    "blocked": t.plan.blocked,
                }
            )
    return steps


async def plan_document(controller: Controller, refs: Sequence[str], now: datetime) -> Doc:
    """What a pass would do per key and keystore, how each step could be undone, and the rotations scheduled
    next. Changes nothing."""
    keystores = await controller.keystores()
    types = {ks.id: ks.type.value for ks in keystores}
    down = await controller.check_keystores(keystores)
    listing = await controller.gather_listing(keystores, down)
    outcomes = [await controller.reconciler.plan(key_id, listing=listing) for key_id in await controller.key_ids(refs)]
    return {
        "steps": _steps(outcomes, types, now),
        "keystores_down": down,
        "rotations": await rotations_json(controller, refs),
    }


#: The actions whose effect in the keystores can be planned before they are taken (the console's confirmations)
PLANNED_ACTIONS = (
    KeyAction.ACTIVATE,
    KeyAction.DEACTIVATE,
    KeyAction.REACTIVATE,
    KeyAction.COMPROMISE,
    KeyAction.DESTROY,
    KeyAction.ROTATE,
)


def _after(key: ManagedKey, action: KeyAction, now: datetime, min_interval: timedelta) -> ManagedKey:
    """The key as ``action`` would leave it (the state table's and rotation's own rules: a refused action raises
    the refusal the action itself would give). Destroying with force, and dual authorization, change nothing of
    what is planned in the keystores, so they are left to the action itself."""
    if action is KeyAction.ROTATE:
        return rotate(key, now, None, min_interval)[0]
    return apply_state_change(key, action, now)


async def action_plan_document(
    controller: Controller, ref: str, action: KeyAction, now: datetime, rotation_min_interval: timedelta
) -> Doc:
    """What ``action`` on the key would do in each keystore, planned by the same planner as ``keyorch plan`` on the
    key as the action would leave it, with each keystore read now. Changes nothing."""
    if action not in PLANNED_ACTIONS:
        raise ValueError(f"{action} is not planned per keystore")
    loaded = await controller.reconciler.load(ref)
    after = _after(loaded.key, action, now, rotation_min_interval)
    outcome = await controller.reconciler.plan_loaded(loaded._replace(key=after))
    types = {ks_id: ks.type.value for ks_id, ks in loaded.keystores.items()}
    return {
        "key": after.id,
        "action": action.value,
        "desired": after.state.value,
        "steps": _steps([outcome], types, now),
    }


async def rotations_json(controller: Controller, refs: Sequence[str]) -> list[Doc]:
    """The upcoming scheduled rotations of every key (or those of ``refs``), soonest first: the version each
    makes, when, by which policy; ``overdue``: due now (the next pass makes it)."""
    return [
        {
            "key": s.key.id,
            "label": s.key.label,
            "version": s.key.current_version + 1,
            "rotation_policy": s.schedule.policy,
            "rotation_policy_from": s.schedule.source,
            "next_rotation_at": s.next_at.isoformat(),
            "overdue": s.due,
        }
        for s in await scheduled_rotations(controller.scheduler, refs)
    ]
