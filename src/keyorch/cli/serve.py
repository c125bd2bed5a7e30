"""`keyorch serve`: the daemon."""

from __future__ import annotations

import asyncio
import contextlib

import click

from keyorch.cli.runtime import CliState
from keyorch.domain.clock import SystemClock
from keyorch.domain.errors import ConfigurationError, InvalidInput
from keyorch.logs import get_logger
from keyorch.store.audit_keys import check_master_key
from keyorch.store.engine import migrate, schema_revisions, sqlite_path
from keyorch.store.repository import Store
from keyorch.store.serve_lock import hold_serve_lock

DATABASE_RETRY_SECONDS = 2.0


@click.command(name="serve")
@click.option("--listen", default=None, help="HOST:PORT for the API, health and metrics (default: api.listen).")
@click.option(
    "--migrate/--no-migrate",
    "auto_migrate",
    default=True,
    show_default=True,
    help="Create or migrate the schema at start (like `keyorch init`); otherwise wait until it is current.",
)
@click.pass_obj
def serve(state: CliState, listen: str | None, auto_migrate: bool) -> int:
    """Local (no --server): run the reconciler, periodic resync and REST API until SIGTERM/SIGINT."""
    from keyorch.daemon import serve as run
    from keyorch.listen import parse_listen

    source = "--listen" if listen is not None else "setting api.listen"
    try:
        host, port = parse_listen(listen if listen is not None else state.settings.api.listen)
    except ValueError as exc:
        raise InvalidInput(f"{source}: {exc}", target="listen") from None
    settings = state.settings
    database = sqlite_path(settings.database_url)
    if database is not None:  # SQLite is single-daemon: refuse a second serve on the same file (exit 2)
        hold_serve_lock(database)
    log = get_logger(component="serve")

    master_key = settings.load_master_key()

    async def main() -> int:
        store = Store.from_url(settings.database_url)

        async def wait_for_database() -> None:
            """Until the schema is current; then a database whose master key is not configured here (or is
            another one) stops the daemon: it could record no change (ConfigurationError, exit 2)."""
            while True:
                try:
                    if auto_migrate:
                        await migrate(store.engine)
                    current, head = await schema_revisions(store.engine)
                    if current == head:
                        async with store.read() as tx:
                            await check_master_key(tx.conn, master_key, required=True)
                        return
                    log.warning("database schema not current; waiting", current=current, required=head)
                except ConfigurationError:
                    raise
                except Exception as exc:  # unreachable database: keep /readyz at 503 and retry
                    log.warning("database not ready", error=f"{type(exc).__name__}: {exc}"[:300])
                await asyncio.sleep(DATABASE_RETRY_SECONDS)

        def announce(url: str) -> None:
            click.echo(f"keyorch serving on {url}", err=True)

        try:
            from keyorch.api.app import create_api_app
        except ImportError:  # pragma: no cover - the API ships with keyorch
            create_api_app = None  # type: ignore[assignment]
        try:
            return await run(
                settings,
                store,
                SystemClock(),
                master_key,
                host,
                port,
                create_api_app,
                announce,
                wait_for_database,
            )
        finally:
            await store.close()

    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop

            return int(uvloop.run(main()))
        except ImportError:
            pass
        return asyncio.run(main())
    return 0
