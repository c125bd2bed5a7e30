"""`keyorch init` and `keyorch master-key generate`."""

from __future__ import annotations

import asyncio

import click

from keyorch.cli.runtime import CliState, check_database_url, emit
from keyorch.crypto import generate_master_key
from keyorch.logs import configure_logging
from keyorch.store.engine import create_engine, migrate
from keyorch.urls import redact_url


@click.command(name="init")
@click.pass_obj
def init(state: CliState) -> None:
    """Local (no --server): create the database, or migrate it to the newest schema (safe to run again)."""
    url = state.settings.database_url
    path = check_database_url(url)

    async def run() -> tuple[str | None, str | None]:
        if path is not None and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        try:
            return await migrate(engine)
        finally:
            await engine.dispose()

    before, after = asyncio.run(run())
    doc = {"database": redact_url(url), "schema_before": before, "schema": after, "changed": before != after}
    if before is None:
        message = f"initialized {redact_url(url)} at schema revision {after}"
    elif before != after:
        message = f"migrated {redact_url(url)} from schema revision {before} to {after}"
    else:
        message = f"{redact_url(url)} is already at the newest schema revision {after}"
    emit(state, doc, lambda: message)


@click.group(name="master-key")
def master_key() -> None:
    """Local (no --server): the master key that encrypts stored keystore credentials."""


@master_key.command(name="generate")
@click.pass_obj
def generate(state: CliState) -> None:
    """Print a new random master key (base64, 32 bytes) for KEYORCH_MASTER_KEY."""
    key = generate_master_key()
    emit(state, {"master_key": key}, lambda: key)


@click.command(name="demo")
@click.pass_obj
def demo(state: CliState) -> int:
    """Local (no --server): a first look: four fake providers, a temporary database, a key's lifecycle."""
    from keyorch.demo import run_demo

    configure_logging(state.settings.log.format, "warning")
    return asyncio.run(run_demo(state.console()))
