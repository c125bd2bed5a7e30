"""`keyorch init`, `keyorch master-key generate|rotate` and `keyorch demo`."""

from __future__ import annotations

import asyncio

import click

from keyorch.cli.runtime import CliState, check_database_url, emit, open_context
from keyorch.crypto import MasterKey, generate_master_key, write_key_file
from keyorch.logs import configure_logging
from keyorch.service.master_key import record_master_key, rotate_master_key
from keyorch.store.engine import create_engine, migrate
from keyorch.urls import redact_url

_KEEP = (
    "keep that file for as long as the database lives, and a copy apart from the database's backups: without it the "
    "stored credentials cannot be decrypted and no change can be recorded"
)


def master_key_note(state: CliState, recorded: bool) -> str:
    """Where the master key must be kept (what `keyorch init` says)."""
    settings = state.settings
    status = "now" if recorded else "already"
    if settings.master_key is not None and settings.master_key.get_secret_value().strip():
        advice = "; put it in a file (`keyorch master-key generate --out FILE`) and use KEYORCH_MASTER_KEY_FILE"
        return f"the master key in KEYORCH_MASTER_KEY is {status} this database's; {_KEEP}{advice}"
    if settings.master_key_file:
        return f"the master key in {settings.master_key_file} is {status} this database's; {_KEEP}"
    return (
        "no master key is configured: create one with `keyorch master-key generate --out FILE`, set "
        "KEYORCH_MASTER_KEY_FILE to FILE and run `keyorch init` again to record it; " + _KEEP
    )


@click.command(name="init")
@click.pass_obj
def init(state: CliState) -> None:
    """Local (no --server): create the database, or migrate it to the newest schema (safe to run again); with a
    master key configured, record it as this database's."""
    url = state.settings.database_url
    path = check_database_url(url)

    async def run() -> tuple[tuple[str | None, str | None], bool]:
        if path is not None and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        try:
            revisions = await migrate(engine)
        finally:
            await engine.dispose()
        ctx = await open_context(state)  # refuses a master key that is not the database's
        try:
            return revisions, await record_master_key(ctx)
        finally:
            await ctx.store.close()

    (before, after), recorded = asyncio.run(run())
    note = master_key_note(state, recorded)
    doc = {
        "database": redact_url(url),
        "schema_before": before,
        "schema": after,
        "changed": before != after,
        "master_key": note,
    }
    if before is None:
        message = f"initialized {redact_url(url)} at schema revision {after}"
    elif before != after:
        message = f"migrated {redact_url(url)} from schema revision {before} to {after}"
    else:
        message = f"{redact_url(url)} is already at the newest schema revision {after}"
    emit(state, doc, lambda: f"{message}\n{note}")


@click.group(name="master-key")
def master_key() -> None:
    """Local (no --server): the master key that encrypts stored keystore credentials and seals the audit chain."""


@master_key.command(name="generate")
@click.option(
    "--out",
    "out",
    metavar="FILE",
    help="Write the key to this new file (mode 0600; an existing file is never overwritten) for "
    "KEYORCH_MASTER_KEY_FILE, instead of printing it.",
)
@click.pass_obj
def generate(state: CliState, out: str | None) -> None:
    """A new random master key (base64, 32 bytes): with --out, in a new file; else printed."""
    key = generate_master_key()
    if out is None:
        emit(state, {"master_key": key}, lambda: key)
        return
    write_key_file(out, key)
    note = f"wrote a new master key to {out} (mode 0600); set KEYORCH_MASTER_KEY_FILE={out}, then run `keyorch init`"
    emit(state, {"master_key_file": out}, lambda: note)


@master_key.command(name="rotate")
@click.option(
    "--new-key-file",
    required=True,
    metavar="FILE",
    help="The new master key (from `keyorch master-key generate --out FILE`); the current one is "
    "KEYORCH_MASTER_KEY_FILE (or KEYORCH_MASTER_KEY).",
)
@click.pass_obj
def rotate(state: CliState, new_key_file: str) -> None:
    """Re-encrypt every stored credential under a new master key and continue the audit chain with it, in one
    transaction; afterwards every keyorch (daemons too) must use the new key file."""
    new = MasterKey.from_file(new_key_file)

    async def run() -> tuple[int, int]:
        ctx = await open_context(state)
        try:
            rotated = await rotate_master_key(ctx, new)
        finally:
            await ctx.store.close()
        return rotated.credentials_reencrypted, rotated.seq

    count, seq = asyncio.run(run())
    doc = {"credentials_reencrypted": count, "audit_seq": seq, "new_master_key_file": new_key_file}
    emit(
        state,
        doc,
        lambda: (
            f"rotated the master key: re-encrypted {count} stored credential(s); audit record {seq} and every "
            f"later one are sealed with the new key. Point KEYORCH_MASTER_KEY_FILE at {new_key_file} everywhere "
            "(restart daemons) and keep the old key until no backup from before needs it."
        ),
    )


@click.command(name="demo")
@click.pass_obj
def demo(state: CliState) -> int:
    """Local (no --server): a first look: four fake providers, a temporary database, a key's lifecycle."""
    from keyorch.demo import run_demo

    configure_logging(state.settings.log.format, "warning")
    return asyncio.run(run_demo(state.console()))
