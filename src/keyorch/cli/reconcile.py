"""`keyorch sync-key`, `keyorch reconcile --once` and `keyorch plan`.

The documents come from :mod:`keyorch.reconcile.report`: built here on the database with ``--db``,
or by the daemon with ``--server``; the tables below are made from those documents alone.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from keyorch.cli.backend import Backend, Doc
from keyorch.cli.runtime import CliState, emit, make_table, with_backend

TARGET_COLUMNS = ["key", "keystore", "status", "sync", "reason", "actions", "error"]


def _rows(targets: list[Doc]) -> list[tuple[Any, ...]]:
    return [
        (
            t["label"],
            t["keystore_name"],
            t["status"],
            t["sync_flag"],
            t["reason"] or "",
            ", ".join(t["actions_taken"]),
            t["error"] or "",
        )
        for t in targets
    ]


@click.command(name="sync-key")
@click.argument("ref", metavar="KEY")
@with_backend
async def sync_key(state: CliState, backend: Backend, ref: str) -> int:
    """Reconcile one key now, pushing its desired state to every keystore (UKO's "Sync key").

    Exit 0 if in sync, 1 if still out of sync, 4 if a keystore could not be reached.
    """
    doc = await backend.sync_key(ref)
    emit(state, doc, lambda: make_table("sync-key", TARGET_COLUMNS, _rows(doc["targets"])))
    return int(doc["exit_code"])


@click.command(name="reconcile")
@click.option("--once", is_flag=True, required=True, help="One full pass over every connected keystore, then exit.")
@with_backend
async def reconcile(state: CliState, backend: Backend, once: bool) -> int:
    """Bring every keystore in line with the desired state (drift is flagged, not overwritten).

    Exit 0 if all keys are in sync, 1 if some are flagged, 4 if a keystore could not be reached.
    """
    if sys.stderr.isatty() and state.output != "json":
        doc = await _with_progress(backend)
    else:
        doc = await backend.reconcile_once(None)

    def render() -> Any:
        from rich.console import Group

        lines = [
            make_table(
                "reconcile summary",
                ["keys checked", "in sync", "flagged", "actions taken", "errors", "keystores down"],
                [
                    (
                        doc["keys_checked"],
                        doc["in_sync"],
                        doc["flagged"],
                        doc["actions_taken"],
                        doc["errors"],
                        "; ".join(doc["keystores_down"].values()) or "none",
                    )
                ],
            )
        ]
        flagged = [t for t in doc["flagged_keys"] if t["sync_flag"] != "in_sync"]
        if flagged:
            lines.append(make_table("not in sync", TARGET_COLUMNS, _rows(flagged)))
        return Group(*lines)

    emit(state, doc, render)
    return int(doc["exit_code"])


async def _with_progress(backend: Backend) -> Doc:
    from rich.console import Console

    columns = (TextColumn("reconciling"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    # On stderr, like the log lines it then shows above itself (they are written to sys.stderr, which the
    # live display redirects while it is shown): stdout keeps only the summary.
    with Progress(*columns, console=Console(stderr=True), transient=True, redirect_stderr=True) as bar:
        task = bar.add_task("keys", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return await backend.reconcile_once(progress)


@click.command(name="plan")
@click.argument("refs", metavar="[KEY]...", nargs=-1)
@with_backend
async def plan(state: CliState, backend: Backend, refs: tuple[str, ...]) -> None:
    """Show what a reconcile pass would do, per key and keystore, and the rotations scheduled next. Changes
    nothing."""
    doc = await backend.plan(refs)
    steps = doc["steps"]

    def render() -> Any:
        from rich.console import Group

        rotations = make_table(
            "rotations scheduled",
            ["key", "version", "at", "policy", "from", "note"],
            [
                (
                    r["label"],
                    r["version"],
                    r["next_rotation_at"],
                    r["rotation_policy"],
                    r["rotation_policy_from"],
                    "overdue: the next pass rotates it" if r["overdue"] else "",
                )
                for r in doc["rotations"]
            ],
        )
        return Group(steps_table(), rotations) if doc["rotations"] else steps_table()

    def steps_table() -> Any:
        return make_table(
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
        )

    emit(state, doc, render)
