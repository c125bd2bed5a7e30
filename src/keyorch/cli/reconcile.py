"""`keyorch sync-key`, `keyorch reconcile --once` and `keyorch plan`."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from keyorch.cli.runtime import CliState, emit, make_table, with_service
from keyorch.reconcile.clients import ClientPool
from keyorch.reconcile.controller import EXIT_IN_SYNC, EXIT_OUT_OF_SYNC, EXIT_UNREACHABLE, Controller, PassSummary
from keyorch.reconcile.engine import KeyOutcome, TargetOutcome
from keyorch.reconcile.planner import DESTRUCTION_WINDOW_DAYS, UNDO, Action
from keyorch.service.context import ServiceContext

TARGET_COLUMNS = ["key", "keystore", "status", "sync", "reason", "actions", "error"]


def controller_for(state: CliState, ctx: ServiceContext) -> Controller:
    cfg = state.settings.reconcile
    pool = ClientPool(ctx.store, ctx.master_key, call_timeout_seconds=cfg.call_timeout_seconds)
    return Controller(
        ctx.store, pool, ctx.clock, workers=cfg.workers, listing_timeout_seconds=cfg.listing_timeout_seconds
    )


def target_json(key: KeyOutcome, t: TargetOutcome) -> dict[str, Any]:
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


def _rows(outcomes: list[KeyOutcome]) -> list[tuple[Any, ...]]:
    return [
        (
            o.label,
            t.keystore_name,
            t.target.status.value,
            t.target.sync_flag.value,
            t.target.reason.value if t.target.reason else "",
            ", ".join(a.value for a in t.actions_done),
            t.error or t.target.last_error or "",
        )
        for o in outcomes
        for t in o.targets
    ]


def exit_code_for(outcomes: list[KeyOutcome], keystores_down: bool = False) -> int:
    if keystores_down or any(o.unreachable for o in outcomes):
        return EXIT_UNREACHABLE
    return EXIT_IN_SYNC if all(o.in_sync for o in outcomes) else EXIT_OUT_OF_SYNC


@click.command(name="sync-key")
@click.argument("ref", metavar="KEY")
@with_service
async def sync_key(state: CliState, ctx: ServiceContext, ref: str) -> int:
    """Reconcile one key now, pushing its desired state to every keystore (UKO's "Sync key").

    Exit 0 if in sync, 1 if still out of sync, 4 if a keystore could not be reached.
    """
    controller = controller_for(state, ctx)
    try:
        summary = await controller.run_once(refs=[ref], push=True, use_listing=False)
    finally:
        await controller.pool.aclose()
    outcomes = list(summary.outcomes.values())
    doc = {"targets": [target_json(o, t) for o in outcomes for t in o.targets], **summary.as_json()}
    code = exit_code_for(outcomes)
    doc["exit_code"] = code
    emit(state, doc, lambda: make_table("sync-key", TARGET_COLUMNS, _rows(outcomes)))
    return code


@click.command(name="reconcile")
@click.option("--once", is_flag=True, required=True, help="One full pass over every connected keystore, then exit.")
@with_service
async def reconcile(state: CliState, ctx: ServiceContext, once: bool) -> int:
    """Bring every keystore in line with the desired state (drift is flagged, not overwritten).

    Exit 0 if all keys are in sync, 1 if some are flagged, 4 if a keystore could not be reached.
    """
    controller = controller_for(state, ctx)
    try:
        if sys.stderr.isatty() and state.output != "json":
            summary = await _with_progress(controller)
        else:
            summary = await controller.run_once()
    finally:
        await controller.pool.aclose()
    doc = summary.as_json()
    flagged = [o for o in summary.outcomes.values() if not o.in_sync]
    doc["flagged_keys"] = [target_json(o, t) for o in flagged for t in o.targets if not t.plan.in_sync]

    def render() -> Any:
        from rich.console import Group

        lines = [
            make_table(
                "reconcile summary",
                ["keys checked", "in sync", "flagged", "actions taken", "errors", "keystores down"],
                [
                    (
                        summary.keys_checked,
                        summary.in_sync,
                        summary.flagged,
                        summary.actions,
                        summary.errors,
                        "; ".join(summary.keystores_down.values()) or "none",
                    )
                ],
            )
        ]
        if flagged:
            lines.append(make_table("not in sync", TARGET_COLUMNS, [r for r in _rows(flagged) if r[3] != "in_sync"]))
        return Group(*lines)

    emit(state, doc, render)
    return summary.exit_code


async def _with_progress(controller: Controller) -> PassSummary:
    columns = (TextColumn("reconciling"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("keys", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return await controller.run_once(progress=progress)


def _undo(action: Action, keystore_type: str, now_iso: str) -> str:
    if action is Action.SCHEDULE_DESTRUCTION:
        days = DESTRUCTION_WINDOW_DAYS.get(keystore_type, 30)
        return f"{UNDO[action]} (about {days} days from when it runs, by the provider's default window)"
    return UNDO[action]


@click.command(name="plan")
@click.argument("refs", metavar="[KEY]...", nargs=-1)
@with_service
async def plan(state: CliState, ctx: ServiceContext, refs: tuple[str, ...]) -> None:
    """Show what a reconcile pass would do, per key and keystore. Changes nothing."""
    controller = controller_for(state, ctx)
    try:
        keystores = await controller.keystores()
        types = {ks.id: ks.type.value for ks in keystores}
        down = await controller.check_keystores(keystores)
        listing = await controller.gather_listing(keystores, down)
        outcomes = [
            await controller.reconciler.plan(key_id, listing=listing) for key_id in await controller.key_ids(refs)
        ]
    finally:
        await controller.pool.aclose()
    now = ctx.clock.now()
    steps: list[dict[str, Any]] = []
    for o in outcomes:
        for t in o.targets:
            steps.append(
                {
                    "key": o.key_id,
                    "label": o.label,
                    "desired": o.state,
                    "keystore": t.keystore_id,
                    "keystore_name": t.keystore_name,
                    "observed": t.plan.observed.value,
                    "actions": [a.value for a in t.plan.actions],
                    "undo": [_undo(a, types.get(t.keystore_id, ""), now.isoformat()) for a in t.plan.actions],
                    "destroy_undo_until": (
                        now + timedelta(days=DESTRUCTION_WINDOW_DAYS.get(types.get(t.keystore_id, ""), 30))
                    ).isoformat()
                    if Action.SCHEDULE_DESTRUCTION in t.plan.actions
                    else None,
                    "reason": t.target.reason.value if t.target.reason else None,
                    "drift": t.plan.drift,
                    "blocked": t.plan.blocked,
                }
            )
    emit(
        state,
        {"steps": steps, "keystores_down": down},
        lambda: make_table(
            "plan (nothing has been changed)",
            ["key", "keystore", "desired", "observed", "would do", "can be undone", "note"],
            [
                (
                    s["label"],
                    s["keystore_name"],
                    s["desired"],
                    s["observed"],
                    ", ".join(s["actions"]) or "nothing",
                    "; ".join(s["undo"]) if s["undo"] else "",
                    s["blocked"] or s["reason"] or "",
                )
                for s in steps
            ],
        ),
    )
